"""Images to model inputs and back, with the normalisation of the model's :class:`~camlab.modelinfo.ModelInfo`."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from camlab.images import to_rgb
from camlab.modelinfo import ModelInfo


def model_info(model: nn.Module) -> ModelInfo:
    info = getattr(model, "camlab", None)
    if not isinstance(info, ModelInfo):
        raise ValueError(
            f"{type(model).__name__} carries no camlab preprocessing information; load it with camlab.load_model, "
            "or attach one: model.camlab = camlab.ModelInfo(name, labels, input_size, mean, std)"
        )
    return info


def preprocess(image, model: nn.Module) -> torch.Tensor:
    """An image as the model's input: (1,3,H,W) float32, resized to ``model.camlab.input_size`` (the whole image,
    no crop, so that maps overlay the full picture) and normalised with its mean/std.

    ``image`` may be a PIL image (any mode: grayscale, RGBA and 16-bit are converted to RGB), an HxWx3 array, or a
    float tensor in [0, 1] of shape (3,H,W) or (N,3,H,W) (then the batch is kept). Arrays are read by their dtype
    (:func:`array_to_unit`): uint8 in [0, 255], uint16 in [0, 65535], other integers in [0, 255], floats in [0, 1]
    when their maximum is at most 1, else in [0, 255]; anything outside those ranges (or NaN) is an error."""
    info = model_info(model)
    if isinstance(image, Image.Image):
        image = to_rgb(image).resize(info.input_size[::-1], Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an array image must be HxWx3, got shape {image.shape}")
        if image.dtype == np.uint8:
            return preprocess(Image.fromarray(image), model)
        return preprocess(torch.from_numpy(array_to_unit(image)).permute(2, 0, 1), model)
    elif isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        if x.ndim != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
            raise ValueError(
                f"a tensor image must be float in [0, 1] with shape (3,H,W) or (N,3,H,W), got {tuple(image.shape)} "
                f"{image.dtype}"
            )
        if tuple(x.shape[-2:]) != tuple(info.input_size):
            x = F.interpolate(x.float(), size=info.input_size, mode="bilinear", align_corners=False, antialias=True)
    else:
        raise TypeError(f"cannot preprocess a {type(image).__name__}; pass a PIL image, an HxWx3 array or a tensor")
    return info.normalize(x.float()).contiguous()


def array_to_unit(image: np.ndarray) -> np.ndarray:
    """An image array as float32 in [0, 1], by its dtype: uint8 / 255, uint16 / 65535, other integers (and bools
    are refused) / 255 when in [0, 255]; floats as they are when their maximum is at most 1, else / 255 when in
    [0, 255]. Values outside the range the dtype implies, and NaN or inf, raise a ``ValueError`` saying which."""
    numeric = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if image.dtype == np.bool_ or not numeric:
        raise TypeError(f"an array image must hold integers or floats, not {image.dtype}")
    if image.dtype == np.uint16:
        return (image.astype(np.float64) / 65535.0).astype(np.float32)
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image array contains NaN or inf values; pass finite values in [0, 1] or [0, 255]")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if np.issubdtype(image.dtype, np.floating) and low >= 0 and high <= 1:
        return values.astype(np.float32)
    if low < 0 or high > 255:
        kind = "a float" if np.issubdtype(image.dtype, np.floating) else f"an {image.dtype}"
        raise ValueError(
            f"{kind} image array must have values in [0, 1] or [0, 255] (uint16: [0, 65535]); got values in "
            f"[{low:g}, {high:g}]. Rescale it first, e.g. (a - a.min()) / (a.max() - a.min())"
        )
    return (values / 255.0).astype(np.float32)


def unnormalize(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The inverse of :func:`preprocess`'s normalisation: model inputs back to [0, 1] RGB, (N,3,H,W)."""
    return model_info(model).unnormalize(x).clamp(0, 1)
