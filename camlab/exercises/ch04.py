"""Checks for chapter 04, evaluating explanations. The code exercises carry the chapter's protocol to what it does
not build: every segment's box (several instances), instances found one-to-one (IoU >= 0.5), the energy-based
pointing game; then the box threshold that finds the most instances of two, chosen on validation scenes and
reported on test scenes.

Hidden cases are drawn at grading time from ``hidden_seed`` (the grader's ``HIDDEN_SEED``, derived from the
instructor's secret), with the edge cases the chapter discusses (constant and all-zero maps, values exactly at the
threshold, segments touching at a corner, equal-sized segments, one box over two instances, IoU exactly 0.5); the
expected answers come from the references below, computed outside the student's code."""
from __future__ import annotations

import numpy as np
import torch

from functools import partial

from camlab.exercises._checking import CheckResult, cases_for, integer, run_check

# ---------------------------------------------------------------------------------------------------- segment boxes
def segment_boxes_reference(heatmap, threshold: float = 0.15, min_pixels: int = 1) -> list[tuple[int, int, int, int]]:
    """The box ``(x0, y0, x1, y1)`` (upper edges exclusive) of every 8-connected segment of the pixels
    ``>= threshold * max`` that holds at least ``min_pixels`` pixels, the largest segment first; segments of equal
    size in the raster order of their first pixel (``scipy.ndimage.label``'s numbering). The first box is the
    Grad-CAM paper's box (:func:`camlab.metrics.box_from_map`)."""
    from scipy import ndimage

    heat = np.asarray(heatmap, dtype=np.float64)
    segments, count = ndimage.label(heat >= threshold * heat.max(), structure=np.ones((3, 3)))
    sizes = np.bincount(segments.ravel(), minlength=count + 1)[1:]
    boxes = []
    for label in sorted(range(1, count + 1), key=lambda k: -sizes[k - 1]):   # stable: raster order on ties
        if sizes[label - 1] >= min_pixels:
            ys, xs = np.nonzero(segments == label)
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


#: worked examples: two 2x2 blocks touching at a corner are one segment (8 pixels), listed before the single 6
#: although the 6 comes first in raster order; the column
#: of values exactly 15% of the maximum is kept (>=) and holds more pixels than the maximum's own segment; with
#: ``min_pixels=3`` the two single pixels drop out
SEGMENT_BOXES = [
    ((np.array([[0., 0., 0., 0., 0., 6.], [0., 0., 0., 0., 0., 0.], [5., 5., 0., 0., 0., 0.], [5., 5., 0., 0., 0., 0.],
                [0., 0., 4., 4., 0., 0.], [0., 0., 4., 4., 0., 0.]]), 0.15, 1), [(0, 2, 4, 6), (5, 0, 6, 1)]),
    ((np.array([[0.15, 0., 0., 0., 0., 0.], [0.15, 0., 0., 1., 0., 0.], [0.15, 0., 0., 1., 0., 0.],
                [0.15, 0., 0., 0., 0., 0.]]), 0.15, 1), [(0, 0, 1, 4), (3, 1, 4, 3)]),
    ((np.array([[1., 0., 0., 0., 0.], [0., 0., 0., 0., 0.], [0., 0., 1., 1., 0.], [0., 0., 1., 0., 0.],
                [0., 0., 0., 0., 1.]]), 0.5, 3), [(2, 2, 4, 4)]),
]


def _segment_case(generator: torch.Generator, kind: int):
    """A random non-negative map holding one of the chapter's edge cases (``kind`` 0-4, below), and the reference's
    boxes."""
    height, width = integer(generator, 6, 9), integer(generator, 6, 9)
    heat = np.zeros((height, width))
    if kind == 0:                                  # a constant (or all-zero) map: one segment, the whole image
        heat[:] = float(integer(generator, 0, 3))
    elif kind == 1:                                # two blocks touching at a corner are one segment, a stray pixel
        heat[0:2, 0:2] = heat[2:4, 2:4] = float(integer(generator, 1, 3))
        heat[height - 1, width - 1] = 1.0
    else:
        for _ in range(integer(generator, 2, 4)):  # a few rectangular blobs, some touching or overlapping
            y, x = integer(generator, 0, height - 1), integer(generator, 0, width - 1)
            h, w = integer(generator, 1, 3), integer(generator, 1, 3)
            heat[y:y + h, x:x + w] = np.maximum(heat[y:y + h, x:x + w], float(integer(generator, 1, 20)) / 20)
        if kind == 2:                              # a value exactly at the threshold (kept) at a corner; the maximum
            heat /= heat.max()                     # 1.0, so that `heat >= 0.15 * max` and `heat / max >= 0.15` agree
            heat[height - 1, width - 1] = 0.15
        if kind == 3:                              # a single pixel holds the maximum: not the largest segment
            heat[height - 1, 0] = 2.0
    threshold = 0.15 if kind == 2 else (0.15, 0.3, 0.5)[integer(generator, 0, 2)]
    min_pixels = integer(generator, 1, 3)
    return (heat, threshold, min_pixels), segment_boxes_reference(heat, threshold, min_pixels)


#: every edge case in every hidden set: constant map, blocks touching at a corner, a value exactly at the threshold,
#: the maximum in a small segment, plain blobs
SEGMENT_KINDS = [partial(_segment_case, kind=kind) for kind in range(5)]


def _same_boxes(actual, expected) -> bool:
    try:
        return [tuple(int(v) for v in box) for box in actual] == [tuple(box) for box in expected]
    except (TypeError, ValueError):
        return False


def check_segment_boxes(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(heatmap, threshold, min_pixels) -> [(x0, y0, x1, y1), ...]``: the box of every 8-connected segment
    of the pixels ``>= threshold * max`` with at least ``min_pixels`` pixels, largest first (equal sizes in the
    raster order of their first pixel), upper edges exclusive (:func:`segment_boxes_reference`)."""
    name, cases = cases_for("segment_boxes", SEGMENT_BOXES, hidden, hidden_seed, SEGMENT_KINDS)
    return run_check(name, lambda heat, t, k: student(heat, t, k), cases,
                     hint="check three things against the task: whether a value exactly at the threshold is kept, "
                          "which neighbours make pixels one segment, and how segments of equal size are ordered",
                     compare=_same_boxes)


# -------------------------------------------------------------------------------------------------- instances found
def instances_found_reference(predicted_boxes, true_boxes, threshold: float = 0.5) -> int:
    """How many true boxes are matched one-to-one by a predicted box with IoU ``>= threshold``: every pair with
    IoU >= threshold, the highest IoU first (ties: lower predicted index, then lower true index), is matched when
    neither box is matched yet."""
    from camlab.metrics.localization import iou

    pairs = []
    for p, predicted in enumerate(predicted_boxes):
        for t, true in enumerate(true_boxes):
            overlap = float(iou(torch.tensor([predicted]), torch.tensor([true]))[0])
            if overlap >= threshold:
                pairs.append((-overlap, p, t))
    used_predicted, used_true = set(), set()
    for _, p, t in sorted(pairs):
        if p not in used_predicted and t not in used_true:
            used_predicted.add(p)
            used_true.add(t)
    return len(used_true)


#: worked examples: a box shifted by a quarter of its width still matches (IoU 12/20 = 0.6); one box over two
#: instances one column apart matches neither (IoU 16/36 each); two boxes on one instance count once; IoU exactly
#: 0.5 counts (>=); no predicted box finds nothing
INSTANCES_FOUND = [
    (([(1, 0, 5, 4)], [(0, 0, 4, 4)]), 1),
    (([(0, 0, 9, 4)], [(0, 0, 4, 4), (5, 0, 9, 4)]), 0),
    (([(0, 0, 4, 4), (0, 0, 4, 3), (20, 20, 24, 24)], [(0, 0, 4, 4)]), 1),
    (([(0, 0, 4, 2)], [(0, 0, 4, 4)]), 1),
    (([], [(0, 0, 4, 4)]), 0),
]


def _instances_case(generator: torch.Generator, count: int, half: bool):
    """``count`` random true boxes in a 40x40 image and predicted boxes around them: for the first one a box with IoU
    exactly 0.5 (``half``) or a near miss (IoU 3/7 or 5/11); shifted copies (matching or not), one box over two
    instances, duplicates, strays."""
    true_boxes = []
    for column in range(count):                          # side by side, apart or touching
        x0, y0 = 13 * column + integer(generator, 0, 2), integer(generator, 0, 20)
        true_boxes.append((x0, y0, x0 + integer(generator, 4, 10), y0 + 2 * integer(generator, 2, 5)))
    predicted = []
    for number, box in enumerate(true_boxes):
        if number == 0 and half:                         # the top half of the box: IoU exactly 0.5, found (>=)
            predicted.append((box[0], box[1], box[2], (box[1] + box[3]) // 2))
            continue
        if number == 0:                                  # a near miss: width 5 or 8 shifted by (width + 1) / 3 has
            width = (5, 8)[integer(generator, 0, 1)]    # IoU 3/7 or 5/11 (with inclusive edges it would be 0.5)
            true_boxes[0] = box = (box[0], box[1], box[0] + width, box[3])
            predicted.append((box[0] + (width + 1) // 3, box[1], box[2] + (width + 1) // 3, box[3]))
        for _ in range(integer(generator, 0, 2)):       # 0-2 shifted copies: duplicates of one instance
            dx, dy = integer(generator, -2, 2), integer(generator, -2, 2)
            predicted.append((box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy))
    if len(true_boxes) >= 2 and integer(generator, 0, 1):   # one box over the first two instances
        first, second = true_boxes[0], true_boxes[1]
        predicted.append((min(first[0], second[0]), min(first[1], second[1]), max(first[2], second[2]),
                          max(first[3], second[3])))
    if integer(generator, 0, 1):                             # a stray box far away
        predicted.append((30, 30, 40, 40))
    order = torch.randperm(len(predicted), generator=generator).tolist()
    predicted = [predicted[i] for i in order]
    return (predicted, true_boxes), instances_found_reference(predicted, true_boxes)


#: one to three instances, each with the IoU-exactly-0.5 box and with the near miss
INSTANCES_KINDS = [partial(_instances_case, count=count, half=half) for count in (1, 2, 3) for half in (True, False)]


def check_instances_found(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(predicted_boxes, true_boxes) -> int``: how many true boxes are found, each by its own predicted box
    with IoU >= 0.5 (:func:`instances_found_reference`); boxes ``(x0, y0, x1, y1)`` with exclusive upper edges."""
    name, cases = cases_for("instances_found", INSTANCES_FOUND, hidden, hidden_seed, INSTANCES_KINDS)
    return run_check(name, lambda predicted, true: int(student(predicted, true)), cases,
                     hint="write the IoU of two boxes first (the overlap is a box too; no overlap gives 0); a true box "
                          "is found when some predicted box not yet used for another true box reaches IoU >= 0.5; "
                          "match the best-overlapping pairs first",
                     compare=lambda actual, expected: actual == expected)


# --------------------------------------------------------------------------------------------------- energy in box
def energy_in_box_reference(heatmap, box) -> float:
    """The energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): the share of the map's total value
    inside the box ``(x0, y0, x1, y1)`` (upper edges exclusive), negative values counted as 0; a map with no mass
    has no preference and gets the box's area fraction (:func:`camlab.metrics.mass_inside`'s convention)."""
    from camlab.metrics.discrimination import mass_inside

    heat = torch.as_tensor(np.asarray(heatmap, dtype=np.float64))
    inside = torch.zeros(heat.shape, dtype=torch.bool)
    inside[box[1]:box[3], box[0]:box[2]] = True
    return float(mass_inside(heat[None], inside[None])[0])


#: worked examples: 6 of 10 units inside; a negative value counts as 0; the all-zero map gives the area fraction 4/16
ENERGY_IN_BOX = [
    ((np.array([[1., 2., 3., 0.], [0., 0., 0., 0.], [0., 0., 0., 0.], [0., 0., 0., 4.]]), (0, 0, 3, 1)), 0.6),
    ((np.array([[1., 0., 0., -5.], [0., 1., 0., 0.], [0., 0., 2., 0.], [0., 0., 0., 0.]]), (0, 0, 2, 2)), 0.5),
    ((np.zeros((4, 4)), (1, 1, 3, 3)), 0.25),
]


def _energy_case(generator: torch.Generator, kind: int):
    """A random map (``kind`` 0: all zeros, 1: constant, 2: non-negative, 3: with negative values) and a random box
    in it."""
    height, width = integer(generator, 4, 9), integer(generator, 4, 9)
    if kind == 0:
        heat = np.zeros((height, width))
    elif kind == 1:
        heat = np.full((height, width), float(integer(generator, 1, 5)))
    else:
        heat = torch.randint(-2 if kind == 3 else 0, 6, (height, width), generator=generator).double().numpy()
    x0, y0 = integer(generator, 0, width - 2), integer(generator, 0, height - 2)
    box = (x0, y0, integer(generator, x0 + 1, width), integer(generator, y0 + 1, height))
    return (heat, box), energy_in_box_reference(heat, box)


#: all-zero, constant, non-negative and signed maps
ENERGY_KINDS = [partial(_energy_case, kind=kind) for kind in range(4)]


def check_energy_in_box(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(heatmap, box) -> float``: the share of the map's mass inside the box, negative values as 0, the
    box's area fraction for a map with no mass (:func:`energy_in_box_reference`)."""
    name, cases = cases_for("energy_in_box", ENERGY_IN_BOX, hidden, hidden_seed, ENERGY_KINDS)
    return run_check(name, lambda heat, box: float(student(heat, box)), cases,
                     hint="clip negative values to 0, then divide the sum inside the box (rows y0:y1, columns x0:x1) by "
                          "the sum over the whole map; when the whole map sums to 0 there is no preference: return "
                          "the share of the image's pixels that the box covers",
                     compare=lambda actual, expected: abs(actual - float(expected)) < 1e-9)


#: the threshold experiment's protocol: scenes with two instances of the label class, the test scenes' seed, the
#: number of scenes in each set, the thresholds tried
TEST_SEED, SCENES, INSTANCES = 2024, 60, 2
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def _found_per_scene(explain, seed: int):
    """``threshold -> (SCENES,)`` instances found per scene (0, 1 or 2) by the boxes of every segment of Grad-CAM's
    map of the label class on ``make_scenes(SCENES, seed=seed, instances=2)``."""
    from camlab.lab import make_scenes, normalise

    scenes = make_scenes(SCENES, seed=seed, instances=INSTANCES)
    heat = explain(normalise(scenes.images), target=scenes.labels).numpy()
    truth = [[obj["box"] for obj in objects if obj["main"]] for objects in scenes.objects]
    return lambda t: np.array([instances_found_reference(segment_boxes_reference(h, t), boxes)
                               for h, boxes in zip(heat, truth)])


def threshold_experiment_reference(seed: int) -> tuple[float, np.ndarray]:
    """The experiment done right: Grad-CAM of ``lab_gap`` at ``features`` for the label class on two-instance scenes;
    the box threshold (0.05, 0.10, ..., 0.95) at which the boxes of every segment (:func:`segment_boxes_reference`)
    find the most instances (:func:`instances_found_reference`) on the validation scenes
    ``make_scenes(60, seed=seed, instances=2)``, the smallest on ties; and, at that threshold, the instances found
    in each of the test scenes ``make_scenes(60, seed=2024, instances=2)``."""
    from camlab.methods import GradCAM
    from camlab.models import load_model

    explain = GradCAM(load_model("lab_gap"), layer="features")
    on_validation, on_test = _found_per_scene(explain, seed), _found_per_scene(explain, TEST_SEED)
    found = [on_validation(t).sum() for t in THRESHOLDS]
    chosen = THRESHOLDS[int(np.argmax(found))]      # argmax: the smallest threshold on ties
    return chosen, on_test(chosen)


def _same_threshold_experiment(actual, seed) -> bool:
    """The same threshold (to 1e-9) and the same count in every test scene but at most one (a map value at a
    threshold's edge may be settled differently)."""
    chosen, found = threshold_experiment_reference(seed)
    try:
        threshold, counts = float(actual[0]), np.asarray(actual[1], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, IndexError):
        return False
    return abs(threshold - chosen) < 1e-9 and counts.shape == (SCENES,) and int((counts != found).sum()) <= 1


def check_threshold_experiment(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed) -> (threshold, found)``: the threshold that finds the most instances on the two-instance
    validation scenes of the student's own ``seed`` (``STUDENT_SEED``) and the (60,) instances found per test scene
    at it (:func:`threshold_experiment_reference`); ``hidden`` lists further seeds. The reference is computed after
    the student's function has returned. The student uses their own ``segment_boxes`` and ``instances_found``
    (Exercises 1-2): while a submission is graded camlab's boxes, IoU and these references raise in its sandbox
    (:data:`camlab.exercises.OWN_WORK`)."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    name = "threshold experiment" if hidden is None else "threshold experiment (hidden seeds)"
    return run_check(
        name, student, [((s,), s) for s in seeds], compare=_same_threshold_experiment,
        hint="choose the threshold on make_scenes(60, seed=seed, instances=2) only (thresholds 0.05, 0.10, ..., 0.95; "
             "the most instances found in total, the smallest threshold on ties), then apply that one threshold to "
             "the test scenes (seed 2024) and return it with the number found in each test scene")
