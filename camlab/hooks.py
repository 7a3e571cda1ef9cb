"""The one place where camlab touches a model: capturing activations, and restoring the model afterwards.

Every explainer runs its forward passes inside :func:`preserved_state`, which puts the model in eval mode and
guarantees that afterwards, also after an exception, the model has exactly the train/eval flags and
``requires_grad`` flags it had before, and none of camlab's hooks. It also holds the model's lock
(:func:`model_lock`), so calls on one model from several threads run one after the other.
"""
from __future__ import annotations

import contextlib
import difflib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from camlab.targets.outputs import map_tensors

def check_hookable(model: nn.Module) -> None:
    """camlab reads layers through forward hooks, which TorchScript modules do not support: refuse them with what to
    do instead (before any layer advice, which would send the user looking for a layer that cannot work)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"{type(model).__name__} is a TorchScript model: camlab reads layers with forward hooks, which "
                        "TorchScript does not support; explain the original nn.Module (before torch.jit.script / "
                        "torch.jit.trace)")


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


@dataclass
class _SavedState:
    training: dict[nn.Module, bool]
    requires_grad: dict[torch.nn.Parameter, bool]


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that camlab holds on ``model`` for the whole of every call (:func:`preserved_state`).

    One lock per model, kept in a weak dictionary (it goes when the model goes). A thread that already holds it may
    enter again (CAM's classifier search runs inside an explainer's call); another thread waits. Hold it yourself
    (``with camlab.hooks.model_lock(model): ...``) around your own forward passes or training steps on a model that
    other threads explain: camlab's hooks are registered on the model's modules, so they would see your forward
    passes too, and a training step would see the model in eval mode."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode and its lock held; restore every module's mode and every parameter's
    ``requires_grad`` flag afterwards, also after an exception.

    Threads: the body runs with :func:`model_lock` held, so two threads explaining one model serialise: each sees the
    model in eval mode with only its own hooks, the train/eval flags come back as the *first* caller found them
    (never as another thread left them mid-call), BatchNorm statistics and parameters are untouched, and every map
    equals the single-threaded one. Grad mode and inference mode are thread-local in PyTorch, so the grad mode saved
    and restored here is the calling thread's own. Different models run in parallel."""
    with model_lock(model):
        saved = _SavedState(
            training={module: module.training for module in model.modules()},
            requires_grad={param: param.requires_grad for param in model.parameters()},
        )
        grad_mode = torch.is_grad_enabled()
        if any(saved.training.values()):
            model.eval()
        try:
            yield
        finally:
            torch.set_grad_enabled(grad_mode)
            # restore only what differs: setting an attribute of an nn.Module is slow, and a model in eval mode
            # with unchanged flags (the usual case) then costs nothing here
            for module, training in saved.training.items():
                if module.training != training:
                    module.training = training
            for param, flag in saved.requires_grad.items():
                if param.requires_grad != flag:
                    param.requires_grad_(flag)


def add_forward_hooks(handles: list, hooks) -> None:
    """Register each ``(module, hook)`` of ``hooks`` as a forward hook, appending the handles to ``handles``; if one
    registration fails, the hooks registered so far are removed before the error propagates."""
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
    except BaseException:
        remove_hooks(handles)
        raise


def remove_hooks(handles: list) -> None:
    """Remove every hook in ``handles`` and empty the list."""
    for handle in handles:
        handle.remove()
    handles.clear()


class ActivationCapture:
    """Forward hooks that keep the outputs of one layer or several (``modules``: a module or a list of them).

    With ``differentiable=True`` the first hooked layer to run stores its output as a fresh leaf tensor that requires
    grad and switches grad mode on for the rest of the forward pass; every later hooked layer stores its output as it
    is (part of the graph, so ``torch.autograd.grad(score, capture.activations)`` works for all of them), except
    one whose output is not part of that graph (a parallel branch of a frozen model, which does not depend on the
    first layer): it becomes a leaf of its own. Each layer
    passes a *copy* on into the network, so that in-place ops after it cannot modify what was stored. The forward
    pass can therefore start under ``torch.no_grad()``: nothing below the first layer builds an autograd graph.
    Without ``differentiable`` the outputs are stored detached. The hooks live inside the ``with`` block only and
    see only the forward passes of the thread that entered it (another thread's plain forward pass on the same model
    runs through them untouched).

    ``activations`` follows the order of ``modules``; ``order`` lists the indices of ``modules`` in the order they
    ran; ``activation`` is the output of a single hooked layer.
    """

    def __init__(self, modules, differentiable: bool = False, structured: bool = False):
        self.modules = list(modules) if isinstance(modules, (list, tuple)) else [modules]
        self.differentiable, self.structured = differentiable, structured
        self.outputs: dict[int, list[torch.Tensor]] = {}
        self.order: list[int] = []
        self._handles: list = []

    def _hook(self, index: int):
        def hook(module, inputs, output):
            if threading.get_ident() != self._thread:  # another thread's forward pass on the same model: not ours
                return None
            if not isinstance(output, torch.Tensor) and not self.structured:
                raise TypeError(
                    f"the target layer returns {type(output).__name__}, not a tensor; choose a layer whose output is "
                    "a (N,C,H,W) feature map (see camlab.layers(model)), or pass reshape_transform=... taking the "
                    f"layer's {type(output).__name__} and returning one (N,C,h,w) tensor"
                )
            self.order.append(index)
            stored = self.outputs.setdefault(index, [])
            if not self.differentiable:
                stored.append(map_tensors(output, lambda tensor: tensor.detach().clone()))
                return None
            first = len(self.order) == 1
            kept = map_tensors(output, lambda tensor: self._kept(tensor, first))
            stored.append(kept)
            return map_tensors(kept, torch.Tensor.clone)
        return hook

    @staticmethod
    def _kept(tensor: torch.Tensor, first: bool) -> torch.Tensor:
        """What a differentiable capture stores of one output tensor: a fresh leaf that requires grad for the first
        layer, or for one outside the graph built so far (a parallel branch of a frozen model); else the tensor."""
        if (first or not tensor.requires_grad) and tensor.is_floating_point():
            tensor = tensor.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
        return tensor

    def __enter__(self) -> "ActivationCapture":
        self._thread = threading.get_ident()
        add_forward_hooks(self._handles, ((module, self._hook(index)) for index, module in enumerate(self.modules)))
        return self

    def __exit__(self, *exc) -> None:
        remove_hooks(self._handles)

    @property
    def activations(self) -> list[torch.Tensor]:
        result = []
        for index in range(len(self.modules)):
            captured = self.outputs.get(index, [])
            if len(captured) != 1:
                which = "the target layer" if len(self.modules) == 1 else f"target layer {index}"
                problem = ("was not called during the forward pass; is it part of forward()?" if not captured else
                           f"ran {len(captured)} times in one forward pass (a shared module); choose a layer that "
                           "runs once")
                raise RuntimeError(f"{which} {problem}")
            result.append(captured[0])
        return result

    @property
    def activation(self) -> torch.Tensor:
        if len(self.modules) != 1:
            raise RuntimeError(f"{len(self.modules)} layers are hooked; read capture.activations")
        return self.activations[0]
