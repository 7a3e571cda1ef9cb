"""What an explainer checks before it runs anything: the input's type, shape and values, and that the input and the
model live on one device with one dtype. Each check raises an error that says what was wrong and what would be
right; none copies or moves a tensor (camlab never moves data between devices behind your back)."""
from __future__ import annotations

import itertools

import torch
from torch import nn

from camlab.methods.registry import METHODS

#: dtypes whose maps camlab computes in float32 (a sum over hundreds of channels overflows float16 at 65504)
LOW_PRECISION = (torch.float16, torch.bfloat16)


def volumetric_methods() -> list[str]:
    """The registered methods that explain 3-D (N,C,D,H,W) inputs."""
    return [name for name, cls in METHODS.items() if getattr(cls, "volumetric", False)]


def _check_shape(x: torch.Tensor, volumetric: bool, method: str) -> None:
    if x.ndim == 4 or (x.ndim == 5 and volumetric):
        return
    if x.ndim == 5:
        raise ValueError(
            f"{method or 'this method'} explains 2-D images (N,C,H,W); for a 3-D input (N,C,D,H,W) of shape "
            f"{tuple(x.shape)} use one of the methods that support volumes: {', '.join(volumetric_methods())}"
        )
    expected = "a 4-D (N,C,H,W) or 5-D (N,C,D,H,W)" if volumetric else "a 4-D (N,C,H,W)"
    hint = " (add a batch dimension: x[None] or x.unsqueeze(0))" if x.ndim == 3 else ""
    raise ValueError(f"input must be {expected} tensor, got shape {tuple(x.shape)}{hint}")


def check_input(x, volumetric: bool = False, method: str = "") -> torch.Tensor:
    """``x`` if it is a non-empty float tensor of shape (N,C,H,W) (or (N,C,D,H,W) when ``volumetric``) whose values
    are all finite; a ``TypeError`` / ``ValueError`` saying what would be right otherwise. The finiteness check is one
    pass over the input (skipped on the ``meta`` device, which has no values): a NaN pixel would otherwise surface
    later as a misleading error (CAM: "no GAP head"; Eigen-CAM: an SVD failure) or as a NaN map."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"input must be a torch.Tensor of shape (N,C,H,W), not {type(x).__name__}; "
            "use camlab.preprocess(image, model) to turn a PIL image into one"
        )
    _check_shape(x, volumetric, method)
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"input must be a float tensor, got {x.dtype}; convert with x.float() / 255 and normalise, "
            "or use camlab.preprocess(image, model)"
        )
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    check_finite(x, "the input")
    return x


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Raise a ``ValueError`` if ``tensor`` holds NaN or infinite values (``what`` names it in the message)."""
    if tensor.device.type == "meta":
        return
    # one reduction instead of a boolean copy: NaN and inf propagate into the sum, so a finite sum means every value
    # is finite (a sum that overflows although every value is finite falls through to the exact check)
    if bool(torch.isfinite(tensor.sum(dtype=torch.float64 if tensor.dtype == torch.float64 else torch.float32))) \
            or bool(torch.isfinite(tensor).all()):
        return
    nan = int(torch.isnan(tensor).sum())
    inf = int(torch.isinf(tensor).sum())
    raise ValueError(
        f"{what} contain{'s' if what.startswith('the input') else ''} NaN or infinite values ({nan} NaN, {inf} inf); "
        "a map cannot be computed from them. Check the image and its preprocessing (for float16 models: an overflow; "
        "run the model in float32)"
    )


def check_model_input(model: nn.Module, x: torch.Tensor) -> None:
    """The input must be on the model's device and, outside autocast, have its floating dtype (read from the first
    parameter or buffer; a model without any is not checked). A mismatch raises a ``ValueError`` before anything
    runs, naming both and the fix (``x.to(device)`` / ``x.to(dtype)``); camlab does not move the input itself, so
    that the map is always computed where the model is."""
    reference = next(itertools.chain(model.parameters(), model.buffers()), None)
    if reference is None:
        return
    if reference.device != x.device:
        raise ValueError(
            f"the input is on device {x.device} but the model is on {reference.device}; move the input to the model: "
            f"x = x.to({str(reference.device)!r})"
        )
    floating = next((t for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()), None)
    if floating is None or x.dtype == floating.dtype or torch.is_autocast_enabled(x.device.type):
        return
    raise ValueError(
        f"the input is {x.dtype} but the model's parameters are {floating.dtype}; convert one to the other: "
        f"x = x.to({floating.dtype}) (or model.to({x.dtype}))"
    )
