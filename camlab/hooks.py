"""The one place where camlab touches a model: capturing activations, and restoring the model afterwards.

Every explainer runs its forward passes inside :func:`preserved_state`, which puts the model in eval mode and
guarantees that afterwards, also after an exception, the model has exactly the train/eval flags and
``requires_grad`` flags it had before, and none of camlab's hooks.
"""
from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

_POOLING = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity,
)


def model_name(model: nn.Module) -> str:
    info = getattr(model, "camlab", None)
    return getattr(info, "name", None) or type(model).__name__


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Turn a dotted name or a submodule into ``(name, module)``; a wrong name gets the closest valid ones."""
    names = {module: name for name, module in model.named_modules()}
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError(
                f"the module {type(layer).__name__} passed as layer is not part of {model_name(model)}; "
                "pass a submodule of this model or its dotted name (see camlab.layers(model))"
            )
        return names[layer], layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted name (str), an nn.Module or None, not {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        candidates = [name for name in modules if name]
        close = difflib.get_close_matches(layer, candidates, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(repr(c) for c in close)}; " if close else ""
        raise ValueError(
            f"layer {layer!r} not found in {model_name(model)}; {hint}list all with camlab.layers(model)"
        )
    return layer, modules[layer]


def trace_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Run one forward pass and return ``(name, module, output shape)`` for every module, in the order their
    forward calls finished (a container finishes after its children)."""
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []

    def recorder(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                seen.append((name, module, tuple(output.shape)))
        return hook

    with preserved_state(model):
        try:
            for name, module in model.named_modules():
                if name:
                    handles.append(module.register_forward_hook(recorder(name)))
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
    return seen


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The last module (in execution order) whose output is a 4-D feature map larger than 1x1,
    skipping pooling, flatten, dropout and identity layers."""
    for name, module, shape in reversed(trace_layers(model, x)):
        if len(shape) == 4 and shape[2] * shape[3] > 1 and not isinstance(module, _POOLING):
            return name, module
    raise ValueError(
        f"{model_name(model)} has no layer with a spatial (N,C,H,W) output; pass layer=... explicitly"
    )


@dataclass
class _SavedState:
    training: dict[nn.Module, bool]
    requires_grad: dict[torch.nn.Parameter, bool]


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode; restore every module's mode and every parameter's
    ``requires_grad`` flag afterwards, also after an exception."""
    saved = _SavedState(
        training={module: module.training for module in model.modules()},
        requires_grad={param: param.requires_grad for param in model.parameters()},
    )
    grad_mode = torch.is_grad_enabled()
    model.eval()
    try:
        yield
    finally:
        torch.set_grad_enabled(grad_mode)
        for module, training in saved.training.items():
            module.training = training
        for param, flag in saved.requires_grad.items():
            param.requires_grad_(flag)


@dataclass
class ActivationCapture:
    """A forward hook on one layer that keeps its output.

    With ``differentiable=True`` the output is stored as a fresh leaf tensor that requires grad, grad mode is
    switched on for the rest of the forward pass, and a *copy* of the leaf goes on into the network (so in-place
    ops after the layer cannot modify it). The forward pass can therefore run under ``torch.no_grad()``: nothing
    below the layer builds an autograd graph, and ``torch.autograd.grad(score, capture.activations)`` back-propagates
    only through the layers above it.
    """

    module: nn.Module
    differentiable: bool = False
    activations: list[torch.Tensor] = field(default_factory=list)
    _handle: object = None

    def _hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"the target layer returns {type(output).__name__}, not a tensor; choose a layer whose output is a "
                "(N,C,H,W) feature map (see camlab.layers(model))"
            )
        if self.differentiable:
            leaf = output.detach().requires_grad_(True)
            self.activations.append(leaf)
            torch.set_grad_enabled(True)
            return leaf.clone()
        self.activations.append(output.detach().clone())
        return None

    def __enter__(self) -> "ActivationCapture":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    @property
    def activation(self) -> torch.Tensor:
        if not self.activations:
            raise RuntimeError("the target layer was not called during the forward pass; is it part of forward()?")
        if len(self.activations) > 1:
            raise RuntimeError(
                f"the target layer ran {len(self.activations)} times in one forward pass (a shared module); "
                "choose a layer that runs once"
            )
        return self.activations[0]


@dataclass
class MultiActivationCapture:
    """Forward hooks on several layers, for methods that combine maps of several layers (LayerCAM's fusion).

    The first layer to run stores its output as a fresh leaf that requires grad and switches grad mode on (as
    :class:`ActivationCapture` with ``differentiable=True``); every later layer stores its output as it is (still
    part of the graph, so ``torch.autograd.grad(score, capture.activations)`` works for all of them) and passes a
    copy on, so that in-place ops after a layer cannot modify what was stored. ``activations`` follows the order of
    ``modules``; ``order`` lists the indices of ``modules`` in the order they ran.
    """

    modules: list[nn.Module]
    differentiable: bool = True
    outputs: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    _handles: list = field(default_factory=list)

    def _hook(self, index):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"a target layer returns {type(output).__name__}, not a tensor; choose layers whose output is a "
                    "(N,C,H,W) feature map (see camlab.layers(model))"
                )
            self.order.append(index)
            if not self.differentiable:
                self.outputs.setdefault(index, []).append(output.detach().clone())
                return None
            if not self.outputs:
                leaf = output.detach().requires_grad_(True)
                self.outputs.setdefault(index, []).append(leaf)
                torch.set_grad_enabled(True)
                return leaf.clone()
            self.outputs.setdefault(index, []).append(output)
            return output.clone()
        return hook

    def __enter__(self) -> "MultiActivationCapture":
        try:
            for index, module in enumerate(self.modules):
                self._handles.append(module.register_forward_hook(self._hook(index)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def activations(self) -> list[torch.Tensor]:
        result = []
        for index in range(len(self.modules)):
            captured = self.outputs.get(index, [])
            if len(captured) != 1:
                problem = "was not called" if not captured else f"ran {len(captured)} times (a shared module)"
                raise RuntimeError(f"target layer {index} {problem} during the forward pass; choose layers that run once")
            result.append(captured[0])
        return result
