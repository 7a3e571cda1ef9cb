"""What a camlab model carries besides its weights: class names and the preprocessing it expects."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """Attached to every model from :func:`camlab.load_model` as ``model.camlab``.

    ``mean``/``std`` are per RGB channel for inputs scaled to [0, 1]; ``input_size`` is (height, width). The
    normalisation lives here and nowhere else: :meth:`normalize` maps [0, 1] images to model inputs,
    :math:`x = (p - \\mu) / \\sigma`, and :meth:`unnormalize` is its exact inverse, :math:`p = x \\sigma + \\mu`.
    """

    name: str
    labels: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str = ""

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) images in [0, 1] as model inputs: :math:`(p - \\mu) / \\sigma` per channel."""
        return normalize(images, self.mean, self.std)

    def unnormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) model inputs back to [0, 1] pixel space: :math:`x \\sigma + \\mu` (no clamping)."""
        mean, std = _channel_stats(inputs, self.mean, self.std)
        return inputs * std + mean


def _channel_stats(like: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(mean, dtype=like.dtype, device=like.device).view(-1, 1, 1),
            torch.as_tensor(std, dtype=like.dtype, device=like.device).view(-1, 1, 1))


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """:math:`(p - \\mu) / \\sigma` per channel of (3,H,W) or (N,3,H,W) images; the one normalisation formula."""
    mean, std = _channel_stats(images, mean, std)
    return (images - mean) / std


def info_of(model: nn.Module) -> ModelInfo | None:
    """``model.camlab`` when it is a :class:`ModelInfo`, else ``None``."""
    info = getattr(model, "camlab", None)
    return info if isinstance(info, ModelInfo) else None


def dummy_input(model: nn.Module) -> torch.Tensor:
    """A seeded random input of the model's size (its ``camlab`` info, else 3x224x224) on its device and dtype;
    the global RNG is untouched."""
    info = getattr(model, "camlab", None)
    height, width = getattr(info, "input_size", (224, 224))
    try:
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, height, width, generator=generator).to(device=device, dtype=dtype)
