"""Checks for chapter 04, evaluating explanations: intersection over union, the Grad-CAM paper's box from a map
(15% of the maximum, largest connected segment) and one round of the pointing game."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from camlab.exercises._checking import CheckResult, close, run_check


def _iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_iou(student) -> CheckResult:
    """``student(box_a, box_b) -> float``: intersection over union of two ``(x0, y0, x1, y1)`` boxes with exclusive
    upper edges (area = (x1 - x0) * (y1 - y0)); 0.0 when they do not overlap."""
    cases = [(((0, 0, 10, 10), (5, 5, 15, 15)), 25 / 175),
             (((0, 0, 10, 10), (0, 0, 10, 10)), 1.0),
             (((0, 0, 4, 4), (6, 6, 9, 9)), 0.0),                  # apart: no negative "overlap"
             (((0, 0, 4, 4), (4, 0, 8, 4)), 0.0),                  # touching edges share no pixel
             (((2, 3, 12, 7), (4, 1, 6, 20)), _iou((2, 3, 12, 7), (4, 1, 6, 20)))]  # a cross: neither inside
    generator = np.random.default_rng(4)
    for _ in range(4):
        a = generator.integers(0, 30, 4)
        b = generator.integers(0, 30, 4)
        a = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]) + 1, max(a[1], a[3]) + 1)
        b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]) + 1, max(b[1], b[3]) + 1)
        cases.append(((tuple(map(int, a)), tuple(map(int, b))), _iou(a, b)))
    return run_check("iou", lambda a, b: float(student(a, b)), cases,
                     hint="intersection width = max(0, min(x1, x1') - max(x0, x0')), the same for the height; "
                          "union = area_a + area_b - intersection (clamp at 0 so boxes that miss give 0)",
                     compare=lambda a, e: close(a, e, atol=1e-9))


def _paper_box(heat: np.ndarray, threshold: float = 0.15) -> tuple[int, int, int, int]:
    region = heat >= threshold * heat.max()
    segments, count = ndimage.label(region, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(segments.ravel())[1:]
    ys, xs = np.nonzero(segments == int(np.argmax(sizes)) + 1)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _blob_maps() -> list[np.ndarray]:
    """Maps with a big weak blob and a small strong one (the box must go around the big one), blobs that touch only
    diagonally (8-connected: one segment) and a 15% edge case."""
    maps = []
    yy, xx = np.mgrid[0:32, 0:40]
    big = 0.5 * np.exp(-((yy - 20) ** 2 + (xx - 12) ** 2) / 40.0)
    small = 1.0 * np.exp(-((yy - 6) ** 2 + (xx - 33) ** 2) / 3.0)
    maps.append(big + small)
    diagonal = np.zeros((12, 12))
    diagonal[2:5, 2:5] = 1.0
    diagonal[5:9, 5:9] = 0.8   # touches the first block only at a corner
    diagonal[0, 11] = 0.9      # a single far pixel
    maps.append(diagonal)
    edge = np.zeros((10, 10))
    edge[4:6, 4:6] = 1.0
    edge[1:9, 1] = 0.15        # exactly 15% of the max: kept (>=), but a separate, larger segment
    maps.append(edge)
    generator = np.random.default_rng(7)
    for _ in range(2):
        low = generator.random((5, 5)) ** 3
        maps.append(torch.nn.functional.interpolate(torch.tensor(low)[None, None], size=(40, 40), mode="bilinear",
                                                    align_corners=False)[0, 0].numpy())
    return maps


def check_localization_box(student) -> CheckResult:
    """``student(heatmap) -> (x0, y0, x1, y1)``: the Grad-CAM paper's box for a non-negative (H,W) numpy map: keep
    pixels ``>= 0.15 * max``, find 8-connected segments (``scipy.ndimage.label`` with a 3x3 structure of ones),
    and return the tight box of the largest one, upper edges exclusive (x = column, y = row)."""
    cases = [((heat.copy(),), _paper_box(heat)) for heat in _blob_maps()]
    return run_check("localization_box", lambda heat: tuple(int(v) for v in student(heat)), cases,
                     hint="region = heat >= 0.15 * heat.max(); ndimage.label(region, structure=np.ones((3, 3))) "
                          "(diagonal neighbours connect); keep the segment with the most pixels (not the one holding "
                          "the maximum); box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)",
                     compare=lambda a, e: tuple(a) == tuple(e))


def _hit(heat: np.ndarray, mask: np.ndarray, tolerance: float) -> bool:
    near = ndimage.distance_transform_edt(~mask) <= tolerance
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(near[row, col])


def check_pointing_hit(student) -> CheckResult:
    """``student(heatmap, mask, tolerance) -> bool``: one round of the pointing game: does the map's maximum lie
    within ``tolerance`` pixels (Euclidean) of the bool ``mask``? (Maps here have one maximum.)"""
    cases = []
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:10] = True
    for (row, col), tolerance in [((7, 7), 0), ((7, 12), 2), ((7, 12), 3), ((12, 12), 3), ((12, 12), 4), ((12, 12), 5),
                                  ((15, 4), 4), ((0, 19), 15)]:
        heat = np.zeros((20, 20))
        heat[row, col] = 1.0
        heat[18, 1] = 0.5
        cases.append(((heat, mask.copy(), tolerance), _hit(heat, mask, tolerance)))
    return run_check("pointing_hit", lambda h, m, t: bool(student(h, m, t)), cases,
                     hint="find the maximum with np.unravel_index(heat.argmax(), heat.shape); it hits when the "
                          "Euclidean distance to the nearest mask pixel is <= tolerance "
                          "(scipy.ndimage.distance_transform_edt(~mask) gives that distance for every pixel)",
                     compare=lambda a, e: a == e)
