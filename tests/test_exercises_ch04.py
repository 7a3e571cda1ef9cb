"""Chapter 04's checks pass a right answer and fail plausible wrong ones."""
from __future__ import annotations

import functools

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


def _share(heat, mask, tolerance):
    """The share of the tied maxima that hit."""
    distance = ndimage.distance_transform_edt(~mask)
    return float((distance[heat == heat.max()] <= tolerance).mean())


def test_pointing_hit_passes_tie_shares_and_camlab_and_fails_chessboard_no_tolerance_or_first_maximum(check):
    assert check("ch04_pointing_hit", _share)
    assert check("ch04_pointing_hit", lambda h, m, t: pointing_game(h[None], m[None], tolerance=t))
    assert not check("ch04_pointing_hit", _hit)   # the first maximum in raster order only: wrong on ties
    assert not check("ch04_pointing_hit", lambda h, m, t: _hit(h, m, t, metric="chessboard"))
    assert not check("ch04_pointing_hit", lambda h, m, t: _hit(h, m, 0))
    swapped = lambda h, m, t: m[np.unravel_index(np.argmax(h), h.shape)[::-1]]  # noqa: E731 (x and y swapped)
    assert not check("ch04_pointing_hit", swapped)


@functools.lru_cache(maxsize=None)
def _gradcam_maps(seed: int) -> tuple[np.ndarray, list]:
    """Grad-CAM of lab_gap at features for the true class on make_scenes(100, seed), with the true boxes."""
    from camlab.lab import make_scenes, normalise
    from camlab.methods import GradCAM
    from camlab.models import load_model

    scenes = make_scenes(100, seed=seed)
    heat = GradCAM(load_model("lab_gap"), layer="features")(normalise(scenes.images), target=scenes.labels)
    return heat.numpy(), scenes.boxes.tolist()


def _localized_by_hand(seed: int, threshold: float) -> np.ndarray:
    heat, boxes = _gradcam_maps(seed)
    return np.array([_iou(_box(h, threshold), b) >= 0.5 for h, b in zip(heat, boxes)])


def _threshold_experiment_by_hand(seed: int, choose_on: int | None = None):
    """A student's answer with their own box and IoU (camlab's are trapped while grading); ``choose_on`` picks the
    scenes the threshold is chosen on (the student's seed when None)."""
    thresholds = [round(0.05 * k, 2) for k in range(1, 20)]
    errors = [1 - _localized_by_hand(seed if choose_on is None else choose_on, t).mean() for t in thresholds]
    best = thresholds[int(np.argmin(errors))]
    return best, _localized_by_hand(2024, best)


def test_threshold_experiment_passes_a_choice_on_the_students_validation_seed_with_own_boxes(check):
    assert check("ch04_threshold_experiment", _threshold_experiment_by_hand)


def test_threshold_experiment_fails_a_threshold_tuned_on_the_test_scenes_or_another_students_seed(check):
    assert not check("ch04_threshold_experiment", lambda seed: _threshold_experiment_by_hand(seed, choose_on=2024))
    assert not check("ch04_threshold_experiment", lambda seed: _threshold_experiment_by_hand(seed, choose_on=seed + 7))
    assert not check("ch04_threshold_experiment", lambda seed: (_threshold_experiment_by_hand(seed)[0], np.ones(100)))
