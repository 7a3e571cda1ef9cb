"""Chapter 04's checks pass a right answer and fail plausible wrong ones."""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from camlab.exercises.ch04 import energy_in_box_reference, instances_found_reference, segment_boxes_reference
from camlab.metrics import box_from_map
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


def _segment_boxes(heat, threshold=0.15, min_pixels=1, structure=np.ones((3, 3)), strict=False, order="size",
                   minimum="at least"):
    region = heat > threshold * heat.max() if strict else heat >= threshold * heat.max()
    segments, count = ndimage.label(region, structure=structure)
    sizes = np.bincount(segments.ravel(), minlength=count + 1)[1:]
    labels = {"size": np.argsort(-sizes, kind="stable"), "label": np.arange(count),
              "unstable": np.argsort(-sizes + 0.5 * (np.arange(count) % 2))}[order] + 1
    keep = (lambda size: size >= min_pixels) if minimum == "at least" else (lambda size: size > min_pixels)
    boxes = []
    for label in labels:
        if keep(sizes[label - 1]):
            ys, xs = np.nonzero(segments == label)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return boxes


def test_segment_boxes_passes_every_segment_largest_first_and_fails_variants(check):
    assert check("ch04_segment_boxes", _segment_boxes)
    assert check("ch04_segment_boxes", segment_boxes_reference)
    # the paper's box alone is the first of them, not all of them
    assert not check("ch04_segment_boxes", lambda h, t, k: [tuple(box_from_map(h[None], t)[0].tolist())])
    assert not check("ch04_segment_boxes", lambda h, t, k: _segment_boxes(h, t, k, structure=None))  # 4-connected
    assert not check("ch04_segment_boxes", lambda h, t, k: _segment_boxes(h, t, k, strict=True))      # > not >=
    assert not check("ch04_segment_boxes", lambda h, t, k: _segment_boxes(h, t, k, order="label"))    # unsorted
    assert not check("ch04_segment_boxes", lambda h, t, k: _segment_boxes(h, t, k, minimum="more"))   # > min_pixels
    assert not check("ch04_segment_boxes", lambda h, t, k: _segment_boxes(h, t))                      # ignores both


def _instances(predicted, true, threshold=0.5, one_to_one=True, strict=False, iou=_iou):
    hit = (lambda v: v > threshold) if strict else (lambda v: v >= threshold)
    if not one_to_one:   # every predicted box that matches something, or every true box matched by anything
        return sum(any(hit(iou(p, t)) for t in true) for p in predicted)
    pairs = sorted((-iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(true) if hit(iou(p, t)))
    used_p, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_t)


def test_instances_found_passes_one_to_one_matching_and_fails_double_counting_strict_or_wrong_iou(check):
    assert check("ch04_instances_found", _instances)
    assert check("ch04_instances_found", instances_found_reference)
    assert not check("ch04_instances_found", lambda p, t: _instances(p, t, one_to_one=False))   # duplicates count
    assert not check("ch04_instances_found", lambda p, t: _instances(p, t, strict=True))        # IoU > 0.5
    assert not check("ch04_instances_found", lambda p, t: _instances(p, t, iou=lambda a, b: _iou(a, b, plus_one=True)))
    assert not check("ch04_instances_found", lambda p, t: min(len(p), len(t)))                   # counts boxes


def _energy(heat, box, clip=True, empty="area"):
    heat = np.asarray(heat, dtype=np.float64)
    heat = np.clip(heat, 0, None) if clip else heat
    x0, y0, x1, y1 = box
    if heat.sum() == 0:
        return {"area": (x1 - x0) * (y1 - y0) / heat.size, "zero": 0.0}[empty]
    return float(heat[y0:y1, x0:x1].sum() / heat.sum())


def test_energy_in_box_passes_the_share_inside_and_fails_without_clipping_or_with_zero_for_empty_maps(check):
    assert check("ch04_energy_in_box", _energy)
    assert check("ch04_energy_in_box", energy_in_box_reference)
    assert not check("ch04_energy_in_box", lambda h, b: _energy(h, b, clip=False))
    assert not check("ch04_energy_in_box", lambda h, b: _energy(h, b, empty="zero"))
    assert not check("ch04_energy_in_box", lambda h, b: _energy(h.T, b))                   # x and y swapped
    assert not check("ch04_energy_in_box", lambda h, b: float(np.clip(h, 0, None)[b[1]:b[3], b[0]:b[2]].mean()))


def test_hidden_cases_come_from_the_hidden_seed_and_hold_the_chapters_edge_cases():
    from camlab.exercises import ch04
    from camlab.exercises._checking import cases_from_kinds

    kinds = (ch04.SEGMENT_KINDS, ch04.INSTANCES_KINDS, ch04.ENERGY_KINDS)
    for kind in kinds:
        first, again, other = (cases_from_kinds(seed, kind) for seed in (0, 0, 1))
        assert repr(first) == repr(again) and repr(first) != repr(other)
    for seed in range(5):   # every seed draws every edge case
        segments, instances, energies = (cases_from_kinds(seed, kind) for kind in kinds)
        assert any(np.all(heat == heat.flat[0]) for (heat, _, _), _ in segments)            # a constant map
        assert any(box == (0, 0, 4, 4) for _, boxes in segments for box in boxes)           # blocks touching diagonally
        assert any(heat.flat[-1] == 0.15 and heat.max() == 1 for (heat, _, _), _ in segments)  # at the threshold
        assert any(not heat.any() for (heat, _), _ in energies)                            # an all-zero map
        assert any((heat < 0).any() for (heat, _), _ in energies)                          # negative values
        assert {len(true) for (_, true), _ in instances} == {1, 2, 3}


@functools.lru_cache(maxsize=None)
def _gradcam_maps(seed: int) -> tuple[np.ndarray, list]:
    """Grad-CAM of lab_gap at features for the label on make_scenes(60, seed, instances=2), with the instances' boxes."""
    from camlab.lab import make_scenes, normalise
    from camlab.methods import GradCAM
    from camlab.models import load_model

    scenes = make_scenes(60, seed=seed, instances=2)
    heat = GradCAM(load_model("lab_gap"), layer="features")(normalise(scenes.images), target=scenes.labels)
    return heat.numpy(), [[obj["box"] for obj in objects if obj["main"]] for objects in scenes.objects]


def _found_by_hand(seed: int, threshold: float, largest_only: bool = False) -> np.ndarray:
    heat, truth = _gradcam_maps(seed)
    boxes = (lambda h: _segment_boxes(h, threshold)[:1]) if largest_only else (lambda h: _segment_boxes(h, threshold))
    return np.array([_instances(boxes(h), b) for h, b in zip(heat, truth)])


def _threshold_experiment_by_hand(seed: int, choose_on: int | None = None, largest_only: bool = False):
    """A student's answer with their own boxes and matching (camlab's are trapped while grading); ``choose_on`` picks
    the scenes the threshold is chosen on (the student's seed when None)."""
    thresholds = [round(0.05 * k, 2) for k in range(1, 20)]
    found = [_found_by_hand(seed if choose_on is None else choose_on, t, largest_only).sum() for t in thresholds]
    best = thresholds[int(np.argmax(found))]
    return best, _found_by_hand(2024, best, largest_only)


def test_threshold_experiment_passes_a_choice_on_the_students_validation_seed_with_own_boxes(check):
    assert check("ch04_threshold_experiment", _threshold_experiment_by_hand)


def test_threshold_experiment_fails_a_tuned_or_borrowed_threshold_and_the_papers_single_box(check):
    assert not check("ch04_threshold_experiment", lambda seed: _threshold_experiment_by_hand(seed, choose_on=2024))
    assert not check("ch04_threshold_experiment", lambda seed: _threshold_experiment_by_hand(seed, choose_on=seed + 7))
    assert not check("ch04_threshold_experiment", lambda seed: _threshold_experiment_by_hand(seed, largest_only=True))
    assert not check("ch04_threshold_experiment", lambda seed: (_threshold_experiment_by_hand(seed)[0], np.full(60, 2)))
