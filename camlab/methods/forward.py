"""The forward (and backward) pass that every layer method shares, and what it gives a method.

:func:`capture` runs the model once with the layers' outputs captured (:class:`camlab.hooks.ActivationCapture`)
and, for gradient methods, takes :math:`\\partial y^c / \\partial A_l` of the target score with respect to those
activations only (``torch.autograd.grad``: no parameter gradients, no graph below the first captured layer). The
result, a :class:`ForwardPass`, holds one :class:`LayerOutput` per layer; :meth:`ForwardPass.at` views one layer,
so single- and multi-layer methods read ``forward.activations`` / ``forward.gradients`` the same way.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from camlab.hooks import ActivationCapture
from camlab.targets import Target, class_indices, fixed, per_image, scores


@dataclass(frozen=True)
class LayerOutput:
    """One captured layer: its dotted ``name``, its (N,K,h,w) ``activations`` (detached) and d score / d activations
    (``None`` for gradient-free methods). A layer the output does not depend on is refused, for every method."""

    name: str
    activations: torch.Tensor
    gradients: torch.Tensor | None


@dataclass(frozen=True)
class ForwardPass:
    """What one forward (and, for gradient methods, backward) pass gives a method."""

    inputs: torch.Tensor       # (N,C,H,W) model input
    logits: torch.Tensor       # model output, detached
    scores: torch.Tensor       # (N,) target score per image, detached
    target: Target             # as the caller gave it
    layers: tuple[LayerOutput, ...]  # in the order the layers were given
    order: tuple[int, ...] = (0,)    # indices into ``layers`` in the order the layers ran (the last is the deepest)

    def _single(self) -> LayerOutput:
        if len(self.layers) != 1:
            raise RuntimeError(f"this pass captured {len(self.layers)} layers; read forward.at(i) for layer i")
        return self.layers[0]

    @property
    def activations(self) -> torch.Tensor:
        """(N,K,h,w) the layer's output, detached (a single-layer pass, or one layer seen through :meth:`at`)."""
        return self._single().activations

    @property
    def gradients(self) -> torch.Tensor | None:
        """(N,K,h,w) d score / d activations, or ``None`` for gradient-free methods."""
        return self._single().gradients

    @property
    def layer_name(self) -> str:
        return self._single().name

    def at(self, index: int) -> "ForwardPass":
        """The same pass seen through layer ``index`` alone."""
        return replace(self, layers=(self.layers[index],), order=(0,))

    def class_indices(self) -> torch.Tensor:
        """(N,) the class explained in each image (for an index-like target; ``None`` = the top-1 class)."""
        return class_indices(self.logits, self.target)

    def fixed_target(self) -> Target:
        """The target with ``None`` resolved to this pass's classes (a callable stays as it is), for further passes
        on changed inputs that must explain the same classes."""
        return fixed(self.logits, self.target)

    def per_image_targets(self) -> list:
        """Each image's own target: its class index, or the caller's callable."""
        return per_image(self.logits, self.target)


def check_feature_map(name: str, activations: torch.Tensor) -> None:
    if activations.ndim != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(activations.shape)}, not an (N,C,H,W) feature map; "
            "choose a convolutional layer (see camlab.layers(model))"
        )


def _off_path(what: str, names: list[str]) -> RuntimeError:
    where = f"layer {names[0]!r}" if len(names) == 1 else f"the layers {names}"
    return RuntimeError(f"{what} does not depend on {where} (a layer that runs but does not feed the output, e.g. an "
                        "auxiliary head); choose a layer on the path to the output (see camlab.layers(model))")


def _gradients(target_scores: torch.Tensor, activations: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    """d score / d activations; a layer the score does not depend on at all (no autograd path) is refused."""
    found = [None] * len(activations)
    if target_scores.requires_grad:
        found = torch.autograd.grad(target_scores.sum(), activations, allow_unused=True)
    missing = [name for name, gradient in zip(names, found) if gradient is None]
    if missing:
        raise _off_path("the target score", missing)
    return list(found)


def _tensors(output) -> list[torch.Tensor]:
    """The floating-point tensors in a model output (a tensor, or lists / tuples / dicts of them)."""
    return [leaf for leaf in tree_leaves(output) if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()]


#: model -> the layers already found to feed its output (checked once per model and layer)
_ON_PATH: "weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet]" = weakref.WeakKeyDictionary()


def _unchanged_by_nan(model: nn.Module, x: torch.Tensor, module: nn.Module, output) -> bool:
    """Whether the model's output stays the same when ``module``'s output is all NaN (one extra forward pass; a
    model that raises on it reacted, so it does not stay the same)."""
    def poison(_, inputs, result):
        return torch.full_like(result, float("nan")) if isinstance(result, torch.Tensor) else None

    handle = module.register_forward_hook(poison)
    try:
        with torch.no_grad():
            poisoned = _tensors(model(x))
    except Exception:  # noqa: BLE001 - the model reacted to the layer (e.g. it checks for NaN): it depends on it
        return False
    finally:
        handle.remove()
    clean = _tensors(output)
    if not clean:  # an output camlab cannot look into: assume the layer feeds it
        return False
    return len(poisoned) == len(clean) and all(
        a.shape == b.shape and torch.equal(a.detach(), b) for a, b in zip(clean, poisoned))


def check_on_path(model: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]], activations, output) -> None:
    """Refuse layers that do not feed the model's output, for gradient-free methods (gradient methods get this from
    :func:`_gradients`), once per model and layer. A layer feeds the output when autograd finds a path from its
    ``activations`` (captured as leaves) to a float tensor of ``output``, or, for a head that autograd cannot follow
    (``detach``, ``no_grad``, integer ops), when setting the layer's output to NaN changes the output."""
    verified = _ON_PATH.setdefault(model, weakref.WeakSet())
    todo = [i for i, (_, module) in enumerate(layers) if module not in verified]
    if not todo:
        return
    found = [None] * len(activations)
    leaves = [leaf for leaf in _tensors(output) if leaf.requires_grad]
    usable = [a for a in activations if a.requires_grad]
    if leaves and usable:
        total = sum(leaf.double().sum() for leaf in leaves)
        try:
            grads = iter(torch.autograd.grad(total, usable, allow_unused=True))
            found = [next(grads) if a.requires_grad else None for a in activations]
        except RuntimeError:  # a backward the model does not support (e.g. an in-place op): the NaN pass decides
            pass
    for i in todo:
        name, module = layers[i]
        if found[i] is None and activations[i].is_floating_point() and _unchanged_by_nan(model, x, module, output):
            raise _off_path(f"the output of {type(model).__name__}", [name])
        verified.add(module)


def capture(model: nn.Module, x: torch.Tensor, target: Target, layers: list[tuple[str, nn.Module]],
            differentiable: bool) -> ForwardPass:
    """Run ``model`` on ``x`` with the ``(name, module)`` ``layers`` captured, starting with grad mode off so that only
    the layers after the first captured one build a graph; with ``differentiable`` also the gradients of the target
    score with respect to the captured activations. Works inside ``torch.inference_mode()`` (the input is copied out
    of it). The caller restores the model's state (:func:`camlab.hooks.preserved_state`)."""
    names = [name for name, _ in layers]
    verified = _ON_PATH.get(model, ())
    check = not differentiable and not all(module in verified for _, module in layers)
    with torch.inference_mode(False), ActivationCapture([m for _, m in layers], differentiable or check) as hooks:
        if x.is_inference():
            x = x.clone()
        torch.set_grad_enabled(False)
        logits = model(x)
        activations = hooks.activations
        target_scores = scores(logits, target)
        gradients = _gradients(target_scores, activations, names) if differentiable else [None] * len(layers)
        if check:
            check_on_path(model, x, layers, activations, logits)
    for name, activation in zip(names, activations):
        check_feature_map(name, activation)
    outputs = tuple(LayerOutput(name, a.detach(), g) for name, a, g in zip(names, activations, gradients))
    return ForwardPass(x, logits.detach(), target_scores.detach(), target, outputs, tuple(hooks.order))
