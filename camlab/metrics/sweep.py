r"""Localization error as a function of the box threshold: which fraction of the map's maximum should bound the box?

The Grad-CAM paper thresholds at 15% of the maximum, the CAM paper at 20%; both were chosen for ImageNet objects,
which often fill half the photo. For small objects (the lab's shapes cover 2-14% of the image) an upsampled 16x16 map
spreads beyond the object, so a low threshold draws boxes that are too big. :func:`localization_sweep` measures,
for each threshold :math:`t`, which images are localized: the box of the largest segment of
:math:`\{(i,j) : M_{ij} \ge t \max M\}` (:func:`~camlab.metrics.box_from_map`) has IoU :math:`\ge 0.5` with a
ground-truth box. This is the "GT-known" error of :func:`~camlab.metrics.localization_error` (maps of the true
class, no classification requirement), kept per image so that intervals can be put on it (:mod:`camlab.stats`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from camlab.metrics._common import refuses_nan_maps, saliency
from camlab.metrics.localization import box_from_map, gt_boxes, iou

__all__ = ["ThresholdSweep", "localization_sweep"]

#: 5%, 10%, ..., 95% of the map's maximum
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class ThresholdSweep:
    """``correct[t, n]``: image n is localized with box threshold ``thresholds[t]``."""

    thresholds: tuple[float, ...]
    correct: torch.Tensor

    @property
    def errors(self) -> list[float]:
        """Localization error (fraction of images not localized) at each threshold."""
        return [1.0 - float(row.float().mean()) for row in self.correct]

    @property
    def best(self) -> float:
        """The threshold with the lowest error (the smallest such threshold on ties)."""
        return self.thresholds[int(np.argmin(self.errors))]

    def __str__(self) -> str:
        rows = [f"threshold {t:.2f}: error {e:.3f}" for t, e in zip(self.thresholds, self.errors)]
        return "\n".join(rows + [f"best {self.best:.2f} (n={self.correct.shape[1]})"])


@refuses_nan_maps
def localization_sweep(maps, boxes, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *,
                       iou_threshold: float = 0.5) -> ThresholdSweep:
    """Which images are localized at each box threshold.

    Args:
        maps: (N,H,W) maps of the ground-truth class (or (N,3,H,W) input-space maps), at the boxes' resolution.
        boxes: ground-truth boxes in the maps' pixels: (N,4), (N,K,4) or a list of (K,4) per image (any one of
            the K may be matched, as in ILSVRC).
        thresholds: fractions of each map's maximum, in [0, 1].
        iou_threshold: the IoU a box needs to count as localized (0.5 in the papers).

    Example: the error at the paper's 15% and at the best threshold, with intervals::

        sweep = localization_sweep(heat, scenes.boxes)
        camlab.stats.proportion(sweep.correct[sweep.thresholds.index(0.15)])
    """
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"thresholds must be fractions of the map's maximum in [0, 1], got {thresholds}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    heat = saliency(maps)
    truth = gt_boxes(boxes, heat.shape[0])
    correct = torch.zeros(len(thresholds), heat.shape[0], dtype=torch.bool, device="cpu")
    for k, t in enumerate(thresholds):
        predicted = box_from_map(heat, t).double()
        for i, gt in enumerate(truth):
            correct[k, i] = bool(iou(predicted[i][None], gt).max() >= iou_threshold)
    return ThresholdSweep(thresholds, correct)
