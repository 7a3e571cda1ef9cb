r"""Per-case outcomes of :mod:`camlab.metrics`, so that :mod:`camlab.stats` can put an interval on them.

The metrics return one number for a whole set (e.g. the localization error of 100 images). A 95% interval, or a
paired comparison of two methods on the same images, needs the outcome of every image. :func:`localization_outcomes`
gives it for the Grad-CAM paper's localization protocol (Selvaraju et al., ICCV 2017, Table 1) by running
:func:`camlab.metrics.localization_error` on one image at a time, so that both always agree::

    hits = localization_outcomes(model, x, camlab.GradCAM(model), labels, boxes, top=(1, 5))
    camlab.stats.proportion(~hits["top1"])        # top-1 localization error with its Wilson interval
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from camlab import metrics

__all__ = ["localization_outcomes"]


def _take(values, i: int):
    """Image ``i`` of a per-image argument (tensor, array or list), kept as a batch of one."""
    if values is None:
        return None
    if isinstance(values, (torch.Tensor, np.ndarray)):
        return values[i:i + 1]
    return [values[i]]


def localization_outcomes(model: nn.Module, x: torch.Tensor, explainer, labels=None, boxes=None, *,
                          top: Sequence[int] = (1, 5), threshold: float = 0.15,
                          iou_threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Whether each image is correctly localized, for each top-k and for GT-known.

    Arguments as :func:`camlab.metrics.localization_error` (``x`` a (N,C,H,W) tensor; ``labels`` and ``boxes`` one
    entry per image; ``explainer`` a callable, or precomputed (N,H,W) maps of the top-1 classes with
    ``top=(1,)``). An image counts as localized at k if one of its top-k classes is a ground-truth class and that
    class's box (the largest segment of the map at ``threshold`` of its maximum) has IoU >= ``iou_threshold``
    with a ground-truth box; GT-known uses the map of the ground-truth class and ignores the prediction.

    Returns:
        ``{"top1": (N,) bool, ..., "gt_known": (N,) bool}`` (``gt_known`` only with an explainer): True where the
        image is localized. ``1 - outcomes["top1"].float().mean()`` equals ``localization_error(...)["top1"]``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (N,C,H,W) tensor of model inputs, got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    precomputed = isinstance(explainer, (torch.Tensor, np.ndarray))
    rows: dict[str, list[bool]] = {}
    for i in range(x.shape[0]):
        explain = explainer[i:i + 1] if precomputed else explainer
        result = metrics.localization_error(model, x[i:i + 1], explain, _take(labels, i), _take(boxes, i),
                                            top=top, threshold=threshold, iou_threshold=iou_threshold)
        for key, error in result.items():
            if key != "n":
                rows.setdefault(key, []).append(error < 0.5)
    return {key: torch.tensor(values) for key, values in rows.items()}
