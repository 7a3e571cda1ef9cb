"""Looking at a model: its top-k predictions and its layers with their output shapes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camlab.hooks import check_hookable, preserved_state
from camlab.layouts import positions, trace_layouts
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
    """One layer: dotted ``name``, module ``kind``, output ``shape`` for one image, and ``layout``: how camlab reads
    the output as a feature map (``NCHW``, ``NHWC``, ``tokens 1+8x8`` = one class token and an 8x8 grid of patch
    tokens), or ``""`` where it cannot tell (such a layer needs ``reshape_transform``, see :mod:`camlab.layouts`)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    layout: str = ""

    def __str__(self) -> str:
        return f"{self.name:<40} {self.kind:<24} {str(tuple(self.shape)):<22} {self.layout or '-'}"


def layers(model: nn.Module, input_size: tuple[int, int] | None = None, spatial_only: bool = False) -> list[LayerRow]:
    """Every named layer with its output shape and layout for one image, in execution order, to choose a target
    layer.

    ``spatial_only`` keeps the layers whose output camlab reads as a feature map with more than one position (NCHW,
    NHWC or tokens), the ones a CAM method can use without a ``reshape_transform``."""
    check_hookable(model)
    x = dummy_input(model)
    if input_size is not None:
        x = torch.zeros(1, 3, *input_size, dtype=x.dtype, device=x.device)
    rows, seen = [], set()
    try:
        records = trace_layouts(model, x)
    except Exception as error:  # the model's own check of its input, most often
        hint = "" if input_size is not None else "; pass the size it expects: camlab.layers(model, input_size=(H, W))"
        raise RuntimeError(f"{type(model).__name__} failed on the (1, 3, {x.shape[2]}, {x.shape[3]}) input that "
                           f"camlab.layers runs it on{hint} ({type(error).__name__}: {error})") from error
    for record in records:
        if record.name in seen:
            continue
        seen.add(record.name)
        if spatial_only and positions(record) <= 1:
            continue
        layout = str(record.layout) if record.layout is not None else ""
        rows.append(LayerRow(record.name, type(record.module).__name__, record.shape, layout))
    return rows
