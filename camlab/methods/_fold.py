r"""An inference-only private copy of a model with eval-mode BatchNorm folded into the convolution before it.

In eval mode a BatchNorm layer is a per-channel affine map, so a convolution followed directly by one equals a
single convolution with

.. math::
    s = \frac{\gamma}{\sqrt{\sigma^2 + \varepsilon}}, \qquad W' = s \cdot W, \qquad b' = s\,(b - \mu) + \beta

(Ioffe & Szegedy 2015, Eq. in Alg. 2; the standard inference-time fusion, e.g. ``torch.ao.nn.intrinsic``). This saves
one pass over every BatchNorm output, about a third of an EfficientNet's CPU inference time. The copy is made with
:func:`copy.deepcopy`; the caller's model is never modified. Pairs are found by running the copy once on an example
and hooking every ``nn.Conv2d`` and ``nn.BatchNorm2d``: a BatchNorm whose input *is* a convolution's output tensor
is folded. A convolution output that also feeds something else would be changed for that other consumer too, so
:func:`folded_copy` checks the copy's output against the original's on the example and returns ``None`` (use the
original) when they differ by more than float rounding.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def _replacement(norm: nn.BatchNorm2d) -> nn.Module | None:
    """What is left of ``norm`` once its affine map lives in the convolution: nothing for a plain BatchNorm2d,
    dropout + activation for timm's ``BatchNormAct2d``; ``None`` for other subclasses (not folded)."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    if type(norm).__name__ == "BatchNormAct2d" and hasattr(norm, "act") and hasattr(norm, "drop"):
        return nn.Sequential(norm.drop, norm.act)
    return None


def _conv_batchnorm_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Conv2d, str]]:
    """(convolution, dotted name of the BatchNorm2d) for every BatchNorm whose input is a convolution's output."""
    names = {module: name for name, module in model.named_modules()}
    produced: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[nn.Conv2d, str]] = []
    seen: set[nn.Module] = set()

    def conv_hook(module, inputs, output):
        produced[id(output)] = (module, output)  # keep the tensor alive so its id is not reused

    def norm_hook(module, inputs):
        entry = produced.get(id(inputs[0]))
        if entry is not None and entry[1] is inputs[0] and module not in seen:
            seen.add(module)
            pairs.append((entry[0], names[module]))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(norm_hook))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    calls = {}
    for conv, name in pairs:
        calls[conv] = calls.get(conv, 0) + 1
    return [(conv, name) for conv, name in pairs if calls[conv] == 1]


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold ``norm`` (eval mode, running statistics) into ``conv``'s weight and bias, in place (on the copy)."""
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, *([1] * (conv.weight.ndim - 1))), requires_grad=False)
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def folded_copy(model: nn.Module, example: torch.Tensor, expected: torch.Tensor | None = None,
                tolerance: float = 1e-4) -> nn.Module | None:
    """A private eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded and its weights in
    channels-last format, or ``None`` when nothing can be folded, the model cannot be copied, or the copy's output
    on ``example`` differs from ``expected`` (the original's output) by more than ``tolerance`` times its largest
    magnitude."""
    if not any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        return None
    try:
        twin = copy.deepcopy(model)
    except Exception:  # noqa: BLE001 - e.g. a model holding an open file or a lock: run the original
        return None
    twin.eval().requires_grad_(False)
    try:
        return _folded(twin, example, expected, tolerance)
    except Exception:  # noqa: BLE001 - the copy is only an optimisation: on any failure run the original
        return None


def _folded(twin: nn.Module, example: torch.Tensor, expected: torch.Tensor | None,
            tolerance: float) -> nn.Module | None:
    with torch.no_grad():
        pairs = _conv_batchnorm_pairs(twin, example)
        folded = 0
        for conv, name in pairs:
            norm = twin.get_submodule(name)
            replacement = _replacement(norm)
            if replacement is None or norm.running_var is None or conv.out_channels != norm.num_features:
                continue
            _fold(conv, norm)
            _set_submodule(twin, name, replacement)
            folded += 1
    if folded == 0:
        return None
    twin = twin.to(memory_format=torch.channels_last)
    if expected is not None:
        with torch.inference_mode():
            got = twin(example.contiguous(memory_format=torch.channels_last))
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return None
        peak = float(expected.abs().max())
        if not torch.allclose(got, expected, rtol=0, atol=tolerance * max(peak, 1e-12)):
            return None
    return twin
