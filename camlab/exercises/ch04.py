"""Checks for chapter 04, evaluating explanations: box overlap, the paper's localization box, the pointing game, and a
box threshold chosen on validation scenes and reported on test scenes."""
from __future__ import annotations

import numpy as np

from camlab.exercises._checking import CheckResult, cases_for, close, run_check

#: worked examples: two 4x4 boxes overlapping in a 2x2 square: 4 / (16 + 16 - 4) = 1/7; boxes apart: 0
IOU = [(((0, 0, 4, 4), (2, 2, 6, 6)), 0.14286),
       (((0, 0, 2, 2), (3, 3, 5, 5)), 0.)]


def check_iou(student, hidden: list | None = None) -> CheckResult:
    """``student(box_a, box_b) -> float``: intersection over union of two ``(x0, y0, x1, y1)`` boxes with
    exclusive upper edges, :math:`|A \\cap B| / |A \\cup B|` (0 for boxes that do not overlap)."""
    name, cases = cases_for("iou", IOU, hidden)
    return run_check(name, lambda a, b: float(student(a, b)), cases,
                     hint="the intersection is a box too: its left edge is the larger of the two left edges, its "
                          "right edge the smaller of the right edges (and the same for y); a negative width or "
                          "height means no overlap (0); the union is area A + area B - intersection",
                     compare=lambda a, e: close(a, e, atol=1e-4))


#: worked examples: two 2x2 blocks touching at a corner are one 8-connected segment, larger than the single 6;
#: a column of values exactly 15% of the maximum is kept (>=) and is larger than the maximum's own segment
LOCALIZATION_BOX = [((np.array([[5., 5., 0., 0., 0., 0.], [5., 5., 0., 0., 0., 0.], [0., 0., 4., 4., 0., 0.], [0.,
    0., 4., 4., 0., 0.], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 6.]]),), (0, 0, 4, 4)),
                    ((np.array([[0.15, 0., 0., 0., 0., 0.], [0.15, 0., 0., 1., 0., 0.], [0.15, 0., 0., 1., 0., 0.],
                        [0.15, 0., 0., 0., 0., 0.]]),), (0, 0, 1, 4))]


def check_localization_box(student, hidden: list | None = None) -> CheckResult:
    """``student(heatmap) -> (x0, y0, x1, y1)``: the Grad-CAM paper's box for a non-negative (H,W) numpy map: keep
    pixels ``>= 0.15 * max``, find 8-connected segments (``scipy.ndimage.label`` with a 3x3 structure of ones),
    and return the tight box of the largest one, upper edges exclusive (x = column, y = row)."""
    name, cases = cases_for("localization_box", LOCALIZATION_BOX, hidden)
    return run_check(name, lambda heat: tuple(int(v) for v in student(heat)), cases,
                     hint="keep pixels at or above 15% of the maximum; label connected segments with diagonal "
                          "neighbours counting as connected; keep the segment with the most pixels (not the one "
                          "holding the maximum); upper edges are one past the last row/column",
                     compare=lambda a, e: tuple(a) == tuple(e))


#: the object's mask in the pointing cases: rows 1-2, columns 1-2 of a 6x6 image
POINTING_MASK = np.array([[False, False, False, False, False, False], [False, True, True, False, False, False],
    [False, True, True, False, False, False], [False, False, False, False, False, False], [False, False, False,
    False, False, False], [False, False, False, False, False, False]])
#: worked examples: the maximum at (row 2, column 4) is 2 pixels right of the mask: a miss with tolerance 1; at
#: (4, 4) it is sqrt(2^2 + 2^2) = 2.83 from the mask's corner (2, 2): a miss with tolerance 2; at (2, 4) with
#: tolerance 2: a hit
POINTING_HIT = [((np.array([[0., 0., 0., 0., 0., 0.5], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 1., 0.], [0., 0.,
    0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.]]), POINTING_MASK.copy(), 1), False),
                ((np.array([[0., 0., 0., 0., 0., 0.5], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.], [0., 0.,
                    0., 0., 0., 0.], [0., 0., 0., 0., 1., 0.], [0., 0., 0., 0., 0., 0.]]), POINTING_MASK.copy(), 2),
                    False),
                ((np.array([[0., 0., 0., 0., 0., 0.5], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 1., 0.], [0., 0.,
                    0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.]]), POINTING_MASK.copy(), 2),
                    True),
                # a tie: maxima at (0, 5), 3.16 px from the mask (first in raster order), and at (2, 3), 1 px from it:
                # half of the tied maxima hit with tolerance 1
                ((np.array([[0., 0., 0., 0., 0., 1.], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 1., 0., 0.], [0., 0.,
                    0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.], [0., 0., 0., 0., 0., 0.]]), POINTING_MASK.copy(), 1),
                    0.5)]


def check_pointing_hit(student, hidden: list | None = None) -> CheckResult:
    """``student(heatmap, mask, tolerance) -> float``: one round of the pointing game, camlab's tie rule: the share
    of the map's tied maxima that lie within ``tolerance`` pixels (Euclidean) of the bool ``mask`` (1.0 or 0.0 for a
    single maximum)."""
    name, cases = cases_for("pointing_hit", POINTING_HIT, hidden)
    return run_check(name, lambda h, m, t: float(student(h, m, t)), cases,
                     hint="find every pixel equal to the map's maximum; each hits when its Euclidean distance to the "
                          "NEAREST mask pixel is at most the tolerance (inside the mask the distance is 0); return "
                          "the share of them that hit",
                     compare=lambda a, e: abs(a - float(e)) < 1e-9)


#: the threshold experiment's protocol: the chapter's test scenes, and the size of a validation set
TEST_SEED, SCENES = 2024, 100


def threshold_experiment_reference(seed: int) -> tuple[float, np.ndarray]:
    """The experiment done right: Grad-CAM of ``lab_gap`` at ``features`` for the true class; the box threshold with
    the lowest GT-known localization error on the validation scenes ``make_scenes(100, seed=seed)``
    (:func:`camlab.metrics.localization_sweep`'s default thresholds, the smallest on ties), and, at that threshold,
    whether each of the chapter's test scenes ``make_scenes(100, seed=2024)`` is localized (IoU >= 0.5)."""
    from camlab.lab import make_scenes, normalise
    from camlab.methods import GradCAM
    from camlab.metrics import localization_sweep
    from camlab.models import load_model

    lab = load_model("lab_gap")
    explain = GradCAM(lab, layer="features")
    validation, test = make_scenes(SCENES, seed=seed), make_scenes(SCENES, seed=TEST_SEED)
    chosen = localization_sweep(explain(normalise(validation.images), target=validation.labels), validation.boxes).best
    on_test = localization_sweep(explain(normalise(test.images), target=test.labels), test.boxes, thresholds=(chosen,))
    return chosen, on_test.correct[0].numpy()


def _same_threshold_experiment(actual, seed) -> bool:
    """The same threshold (to 1e-9) and a per-scene outcome array whose share of localized scenes is within one scene
    of the reference's (a near-tie at the box's edge may be settled differently)."""
    chosen, outcomes = threshold_experiment_reference(seed)
    try:
        threshold, localized = float(actual[0]), np.asarray(actual[1], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, IndexError):
        return False
    return (abs(threshold - chosen) < 1e-9 and localized.shape == (SCENES,)
            and abs(localized.mean() - outcomes.mean()) <= 1 / SCENES + 1e-9)


def check_threshold_experiment(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed) -> (threshold, localized)``: the threshold chosen on the validation scenes of the student's
    own ``seed`` (``STUDENT_SEED``) and the (100,) per-scene outcomes on the chapter's test scenes at that threshold
    (:func:`threshold_experiment_reference`); ``hidden`` lists further seeds. The reference is computed after the
    student's function has returned. The student builds the boxes with their own ``localization_box`` and ``iou``
    (Exercises 1-2): while a submission is graded camlab's ``box_from_map`` and ``iou`` raise in its sandbox
    (:data:`camlab.exercises.OWN_WORK`), so ``localization_sweep`` is not available to it."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    name = "threshold experiment" if hidden is None else "threshold experiment (hidden seeds)"
    return run_check(
        name, student, [((s,), s) for s in seeds], compare=_same_threshold_experiment,
        hint="choose the threshold on make_scenes(100, seed=seed) only (thresholds 0.05, 0.10, ..., 0.95; the lowest "
             "GT-known error, the smallest threshold on ties), then apply that one threshold to the test scenes "
             "(seed 2024) and return it with the per-scene outcomes there")
