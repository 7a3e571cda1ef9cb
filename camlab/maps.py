"""Operations on saliency maps shared by every method and metric: safe division, upsampling and scaling."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def safe_divide(numerator: torch.Tensor, denominator) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is non-zero and 0 where it is 0 (never inf or NaN); the
    denominator broadcasts against the numerator. The one division camlab uses wherever a ratio may be 0 / 0."""
    denominator = torch.as_tensor(denominator, dtype=numerator.dtype, device=numerator.device)
    nonzero = denominator != 0
    quotient = numerator / torch.where(nonzero, denominator, torch.ones_like(denominator))
    return torch.where(nonzero, quotient, torch.zeros_like(quotient))


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
        return safe_divide(flat, peak).reshape(maps.shape)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    return safe_divide(flat - low, span).reshape(maps.shape)
