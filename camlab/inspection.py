"""Looking at a model: its top-k predictions and its layers with their output shapes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camlab.hooks import preserved_state, trace_layers
from camlab.methods.checks import check_model_input
from camlab.modelinfo import dummy_input
from camlab.preprocessing import model_info
from camlab.targets import logits_of


def predict(model: nn.Module, x: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """Top-``k`` predictions per image: ``[(class index, label, softmax probability), ...]`` (the logits found in the
    output as for class-index targets, :func:`camlab.targets.logits_of`). The model runs in eval mode and comes back
    with every submodule's own mode (:func:`camlab.hooks.preserved_state`); an input on another device or with
    another dtype than the model is refused first."""
    labels = model_info(model).labels
    check_model_input(model, x)
    with preserved_state(model), torch.no_grad():
        probabilities = logits_of(model(x)).softmax(dim=1)
    top = probabilities.topk(k, dim=1)
    return [[(int(i), labels[int(i)], float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name:<40} {self.kind:<24} {tuple(self.shape)}"


def layers(model: nn.Module, input_size: tuple[int, int] | None = None, spatial_only: bool = False) -> list[LayerRow]:
    """Every named layer with its output shape for one image, in execution order, to choose a target layer.

    ``spatial_only`` keeps the layers with an (N,C,H,W) output, the ones a CAM method can use."""
    x = dummy_input(model)
    if input_size is not None:
        x = torch.zeros(1, 3, *input_size, dtype=x.dtype, device=x.device)
    rows, seen = [], set()
    for name, module, shape in trace_layers(model, x):
        if name in seen:
            continue
        seen.add(name)
        if spatial_only and (len(shape) != 4 or shape[2] * shape[3] <= 1):
            continue
        rows.append(LayerRow(name, type(module).__name__, shape))
    return rows
