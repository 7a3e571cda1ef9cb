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


_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def spatial_dims(tensor: torch.Tensor) -> tuple[int, ...]:
    """The spatial dimensions of an (N,K,h,w) or (N,K,d,h,w) tensor: all but batch and channel, ``(2, 3)`` or
    ``(2, 3, 4)``, the dimensions a channel weight averages or sums over."""
    return tuple(range(2, tensor.ndim))


def upsample(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``, as ``cv2.resize`` and the peers) of (N,h,w) or (N,C,h,w)
    maps to ``size`` = (H, W); trilinear for 3-D maps, (N,d,h,w) or (N,C,d,h,w) to ``size`` = (D, H, W).

    A constant map (one value at every position of an image or channel, a 1×1 map above all) stays exactly
    constant: bilinear weights do not sum to 1 exactly in float32, and min-max scaling would stretch that ripple to
    a map of {0, 0.5, 1}. Flatness is decided here, at the layer's own resolution."""
    size = tuple(size)
    if tuple(maps.shape[-len(size):]) == size:
        return maps
    if len(size) not in _MODES or maps.ndim not in (len(size) + 1, len(size) + 2):
        raise ValueError(f"cannot upsample maps of shape {tuple(maps.shape)} to size {size}")
    squeeze = maps.ndim == len(size) + 1
    batch = maps[:, None] if squeeze else maps
    out = F.interpolate(batch, size=size, mode=_MODES[len(size)], align_corners=False)
    flat_dims = tuple(range(2, batch.ndim))
    low = batch.amin(dim=flat_dims, keepdim=True)
    constant = low == batch.amax(dim=flat_dims, keepdim=True)
    if bool(constant.any()):
        out = torch.where(constant, low.expand_as(out), out)
    return out[:, 0] if squeeze else out


def _clip_infinities(flat: torch.Tensor) -> torch.Tensor:
    """Rows of ``flat`` with +inf / -inf replaced by the row's largest / smallest finite value (0 in a row without
    any finite value); NaN stays NaN."""
    finite = torch.isfinite(flat)
    highest = torch.where(finite, flat, float("-inf")).amax(dim=1, keepdim=True)
    lowest = torch.where(finite, flat, float("inf")).amin(dim=1, keepdim=True)
    clipped = torch.where(flat == float("inf"), highest, torch.where(flat == float("-inf"), lowest, flat))
    return torch.where(torch.isinf(clipped), torch.zeros_like(clipped), clipped)


def scale(maps: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Per-image scaling over all dimensions but the first.

    Unsigned maps go to [0, 1] by min-max: :math:`(M - \\min M) / (\\max M - \\min M)`;
    signed maps go to [-1, 1] by the largest magnitude. A flat (constant or all-zero) map gives all zeros, never NaN.
    Infinite values (a float16 overflow) count as the image's largest (+inf) or smallest (-inf) finite value, so they
    map to 1 (or 0 / -1) and the finite values keep their scaling; an image without finite values gives zeros.
    Float16 / bfloat16 maps are scaled in float32 (their span may overflow) and returned in their own dtype.
    """
    flat = maps.reshape(maps.shape[0], -1)
    flat = _clip_infinities(flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat)
    if signed:
        peak = flat.abs().amax(dim=1, keepdim=True)
        return safe_divide(flat, peak).reshape(maps.shape).to(maps.dtype)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    return safe_divide(flat - low, span).reshape(maps.shape).to(maps.dtype)
