"""Where a map's mass lies and how many blobs it has. Boxes are ``(x0, y0, x1, y1)``, upper edges exclusive."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from camlab.metrics import gt_masks, mass_inside


def mass_in_boxes(maps: torch.Tensor, boxes) -> torch.Tensor:
    """Share of each map's mass inside boxes, in [0, 1].

    Args:
        maps: (N,H,W) or one (H,W) map; negative values are clipped to 0 first.
        boxes: one ``(x0, y0, x1, y1)`` box for all images, an (N,4) tensor (one box per image), or an (N,K,4)
            tensor (K boxes per image).

    Returns:
        (N,) shares for one box per image; (N,K) for K boxes per image (each box measured on its own). A map with
        no mass gets the box's area fraction (the share of a uniform map), never NaN.
    """
    maps = torch.as_tensor(maps)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    n, height, width = maps.shape
    boxes_t = torch.as_tensor(boxes, dtype=torch.float64)
    if boxes_t.ndim == 1:
        boxes_t = boxes_t.expand(n, 4)
    if boxes_t.shape[-1] != 4 or boxes_t.shape[0] != n or boxes_t.ndim not in (2, 3):
        raise ValueError(f"boxes must be (4,), (N,4) or (N,K,4) for N={n} maps, got shape {tuple(boxes_t.shape)}")
    if boxes_t.ndim == 2:
        shares = mass_inside(maps, gt_masks(boxes_t, n, (height, width))).float()
        return shares[0] if single else shares
    shares = torch.stack([mass_inside(maps, gt_masks(boxes_t[:, k], n, (height, width)))
                          for k in range(boxes_t.shape[1])], dim=1).float()
    return shares[0] if single else shares


def count_blobs(maps: torch.Tensor, threshold: float = 0.15) -> torch.Tensor:
    """Number of 8-connected segments of each map's pixels at or above ``threshold`` times its maximum (the
    Grad-CAM paper thresholds at 15% before drawing a box around the largest segment).

    Args:
        maps: (N,H,W) or one (H,W) map.
        threshold: a fraction of each map's maximum, in (0, 1].

    Returns:
        (N,) long counts (a 0-d tensor for one map). A map whose maximum is not positive has 0 segments.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the map's maximum in (0, 1], got {threshold}")
    maps = torch.as_tensor(maps).detach().double()
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    counts = []
    for heat in maps.cpu().numpy():
        peak = heat.max()
        if not peak > 0:
            counts.append(0)
            continue
        counts.append(ndimage.label(heat >= threshold * peak, structure=np.ones((3, 3), dtype=bool))[1])
    result = torch.tensor(counts, dtype=torch.long)
    return result[0] if single else result
