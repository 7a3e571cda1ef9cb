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

    ``image`` may be a PIL image (any mode: grayscale, RGBA and 16-bit are converted to RGB), an HxWx3 uint8 array,
    or a float tensor in [0, 1] of shape (3,H,W) or (N,3,H,W) (then the batch is kept)."""
    info = model_info(model)
    if isinstance(image, Image.Image):
        image = to_rgb(image).resize(info.input_size[::-1], Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an array image must be HxWx3, got shape {image.shape}")
        return preprocess(Image.fromarray(np.asarray(image, dtype=np.uint8)), model)
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


def unnormalize(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The inverse of :func:`preprocess`'s normalisation: model inputs back to [0, 1] RGB, (N,3,H,W)."""
    return model_info(model).unnormalize(x).clamp(0, 1)
