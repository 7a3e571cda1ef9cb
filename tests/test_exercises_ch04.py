"""Chapter 04's checks pass a right answer and fail plausible wrong ones."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from camlab.metrics import box_from_map, iou, pointing_game
from tests.exercise_checks import check  # noqa: F401 (the fixture)


def _iou(a, b, clamp=True, plus_one=False):
    extra = 1 if plus_one else 0
    w = min(a[2], b[2]) - max(a[0], b[0]) + extra
    h = min(a[3], b[3]) - max(a[1], b[1]) + extra
    if clamp:
        w, h = max(w, 0), max(h, 0)
    inter = w * h
    area = lambda r: (r[2] - r[0] + extra) * (r[3] - r[1] + extra)
    return inter / (area(a) + area(b) - inter)


def test_iou_passes_camlab_and_by_hand_and_fails_without_clamp_or_with_inclusive_edges(check):
    assert check("ch04_iou", iou)
    assert check("ch04_iou", _iou)
    assert not check("ch04_iou", lambda a, b: _iou(a, b, clamp=False))
    assert not check("ch04_iou", lambda a, b: _iou(a, b, plus_one=True))
    assert not check("ch04_iou", lambda a, b: _iou(a, b) * 2 / (1 + _iou(a, b)))  # Dice, not IoU


def _box(heat, threshold=0.15, structure=np.ones((3, 3)), pick="largest", strict=False):
    region = heat > threshold * heat.max() if strict else heat >= threshold * heat.max()
    segments, _ = ndimage.label(region, structure=structure)
    if pick == "largest":
        label = int(np.argmax(np.bincount(segments.ravel())[1:])) + 1
    else:  # the segment holding the maximum
        label = segments.flat[int(np.argmax(heat))]
    ys, xs = np.nonzero(segments == label)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_localization_box_passes_the_paper_protocol_and_fails_variants(check):
    assert check("ch04_localization_box", _box)
    assert check("ch04_localization_box", box_from_map)
    assert not check("ch04_localization_box", lambda h: _box(h, structure=None))       # 4-connectivity
    assert not check("ch04_localization_box", lambda h: _box(h, pick="peak"))          # the segment of the maximum
    assert not check("ch04_localization_box", lambda h: _box(h, strict=True))          # > instead of >=
    assert not check("ch04_localization_box", lambda h: _box(h, threshold=0.5))


def _hit(heat, mask, tolerance, metric="euclidean"):
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    rows, cols = np.nonzero(mask)
    if metric == "euclidean":
        distance = np.sqrt((rows - row) ** 2 + (cols - col) ** 2).min()
    else:
        distance = np.maximum(abs(rows - row), abs(cols - col)).min()
    return distance <= tolerance


def test_pointing_hit_passes_euclidean_and_camlab_and_fails_chessboard_or_no_tolerance(check):
    assert check("ch04_pointing_hit", _hit)
    assert check("ch04_pointing_hit", lambda h, m, t: pointing_game(h[None], m[None], tolerance=t) == 1.0)
    assert not check("ch04_pointing_hit", lambda h, m, t: _hit(h, m, t, metric="chessboard"))
    assert not check("ch04_pointing_hit", lambda h, m, t: _hit(h, m, 0))
    swapped = lambda h, m, t: m[np.unravel_index(np.argmax(h), h.shape)[::-1]]  # noqa: E731 (x and y swapped)
    assert not check("ch04_pointing_hit", swapped)


def test_threshold_experiment_passes_validation_choice_and_fails_test_set_tuning(check):
    from camlab.exercises.ch04 import threshold_experiment_reference

    assert check("ch04_threshold_experiment", threshold_experiment_reference)
    # another student's seed, or the threshold tuned on the test scenes themselves, fails
    assert not check("ch04_threshold_experiment", lambda seed: threshold_experiment_reference(seed + 1)
                     if threshold_experiment_reference(seed + 1)[0] != threshold_experiment_reference(seed)[0]
                     else (0.0, np.zeros(100)))


def test_threshold_tuned_on_the_test_scenes_is_not_the_validation_choice():
    """Choosing on the test seed (2024) instead of the student's seed gives another answer for some seed."""
    from camlab.exercises.ch04 import TEST_SEED, check_threshold_experiment, threshold_experiment_reference

    tuned_on_test = lambda seed: threshold_experiment_reference(TEST_SEED)  # noqa: E731
    assert any(not check_threshold_experiment(tuned_on_test, seed=s) for s in (0, 1, 2))
