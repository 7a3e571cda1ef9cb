"""Comparing the maps of one scene, printed the same on every CPU: does a map change with the class asked about
(:func:`rank_correlations`), and does its peak land in a given box (:func:`peak_in_boxes`)?

Different CPUs, instruction sets and thread counts sum in different orders, so two nearly equal map values can swap
places from one machine to the next, and an argmax or a rank flips. Both functions therefore compare maps at a stated
precision: each map is min-max scaled to [0, 1] per image and rounded to ``decimals`` decimals, so values closer
than that are ties, and every tie has an explicit rule (average ranks; a shared peak)."""
from __future__ import annotations

import numpy as np
import torch

from camlab.maps import scale
from camlab.metrics import gt_masks, spearman


def rounded(maps: torch.Tensor, decimals: int = 3) -> torch.Tensor:
    """(N, H, W) maps min-max scaled to [0, 1] per image and rounded to ``decimals`` decimals (a flat map: zeros)."""
    maps = torch.as_tensor(maps).detach().double()
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    if not 0 <= int(decimals) <= 12:
        raise ValueError(f"decimals must be an integer from 0 to 12, got {decimals}")
    return torch.round(scale(maps) * 10 ** int(decimals))


def rank_correlations(maps_a: torch.Tensor, maps_b: torch.Tensor, decimals: int = 3) -> np.ndarray:
    """(N,) Spearman's rank correlation of ``maps_a[i]`` and ``maps_b[i]`` (two maps of one scene, e.g. for two
    classes), computed on :func:`rounded` maps with average ranks for ties; identical maps give exactly 1.0 and a
    flat map (no order at all) 0.0, as :func:`camlab.metrics.spearman` defines it."""
    a, b = rounded(maps_a, decimals), rounded(maps_b, decimals)
    if a.shape != b.shape:
        raise ValueError(f"maps to correlate differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return np.array([spearman(one, other) for one, other in zip(a, b)])


def peak_in_boxes(maps: torch.Tensor, boxes, decimals: int = 3) -> np.ndarray:
    """(N,) the pointing game with tolerance 0 and explicit ties: the peak of map i is every pixel at the maximum of
    its :func:`rounded` values, and the score is the share of those pixels inside box i (a peak wholly in the box
    scores 1, one half in it 0.5). A flat map has no peak and scores 0: it points nowhere (count such maps
    separately with :func:`flat`).

    Args:
        maps: (N, H, W) maps, any scale; ``boxes``: (N, 4) ``(x0, y0, x1, y1)`` in the maps' pixels, upper edges
            exclusive."""
    values = rounded(maps, decimals)
    masks = gt_masks(boxes, values.shape[0], tuple(values.shape[-2:]))
    peaks = values == values.flatten(1).amax(1)[:, None, None]
    share = (peaks & masks).flatten(1).sum(1).double() / peaks.flatten(1).sum(1).double()
    return torch.where(flat(maps, decimals), torch.zeros_like(share), share).numpy()


def flat(maps: torch.Tensor, decimals: int = 3) -> torch.Tensor:
    """(N,) bool: map i has no peak at ``decimals`` decimals (all its rounded values equal, e.g. an all-zero map)."""
    values = rounded(maps, decimals).flatten(1)
    return values.amax(1) == values.amin(1)
