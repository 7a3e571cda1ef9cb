"""Operations on saliency maps shared by every method and metric: upsampling and scaling."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``, as ``cv2.resize`` and the peers) of (N,h,w) or (N,C,h,w)
    maps to ``size`` = (H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    squeeze = maps.ndim == 3
    batch = maps[:, None] if squeeze else maps
    out = F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False)
    return out[:, 0] if squeeze else out


def scale(maps: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Per-image scaling over all dimensions but the first.

    Unsigned maps go to [0, 1] by min-max: :math:`(M - \\min M) / (\\max M - \\min M)`;
    signed maps go to [-1, 1] by the largest magnitude. A flat (constant or all-zero) map gives all zeros, never NaN.
    """
    flat = maps.reshape(maps.shape[0], -1)
    if signed:
        peak = flat.abs().amax(dim=1, keepdim=True)
        out = torch.where(peak > 0, flat / peak.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
        return out.reshape(maps.shape)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.reshape(maps.shape)
