"""What a camlab model carries besides its weights: class names and the preprocessing it expects."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """Attached to every model from :func:`camlab.load_model` as ``model.camlab``.

    ``mean``/``std`` are per RGB channel for inputs scaled to [0, 1]; ``input_size`` is (height, width).
    """

    name: str
    labels: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str = ""
