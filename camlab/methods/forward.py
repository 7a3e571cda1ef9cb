"""The forward (and backward) pass that every layer method shares, and what it gives a method.

:func:`capture` runs the model once with the layers' outputs captured (:class:`camlab.hooks.ActivationCapture`)
and, for gradient methods, takes :math:`\\partial y^c / \\partial A_l` of the target score with respect to those
activations only (``torch.autograd.grad``: no parameter gradients, no graph below the first captured layer). The
result, a :class:`ForwardPass`, holds one :class:`LayerOutput` per layer; :meth:`ForwardPass.at` views one layer,
so single- and multi-layer methods read ``forward.activations`` / ``forward.gradients`` the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from camlab.hooks import ActivationCapture
from camlab.layouts import Layout, LayoutReader, check_map
from camlab.targets import Target, class_indices, fixed, per_image, scores


@dataclass(frozen=True)
class LayerOutput:
    """One captured layer: its dotted ``name``, its (N,K,h,w) ``activations`` (detached; the layer's output read
    through its ``layout``, see :mod:`camlab.layouts`) and d score / d activations (``None`` for gradient-free
    methods; zeros for a layer the score does not depend on)."""

    name: str
    activations: torch.Tensor
    gradients: torch.Tensor | None
    layout: Layout | None = None


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
    """An (N,C,H,W) feature map, or a clear error (the check for maps that skip :mod:`camlab.layouts`)."""
    check_map(name, activations, activations.shape[0] if activations.ndim else 0, None)


def _gradients(target_scores: torch.Tensor, activations: list[torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    found = None
    if target_scores.requires_grad:
        found = torch.autograd.grad(target_scores.sum(), activations, allow_unused=True)
    if found is None or all(gradient is None for gradient in found):
        where = f"layer {names[0]!r}" if len(names) == 1 else f"the layers {names}"
        raise RuntimeError(f"the target score does not depend on {where}; choose a layer on the path to the output")
    return [torch.zeros_like(a) if g is None else g for a, g in zip(activations, found)]


def capture(model: nn.Module, x: torch.Tensor, target: Target, layers: list[tuple[str, nn.Module]],
            differentiable: bool, reshape_transform=None) -> ForwardPass:
    """Run ``model`` on ``x`` with the ``(name, module)`` ``layers`` captured, starting with grad mode off so that only
    the layers after the first captured one build a graph; with ``differentiable`` also the gradients of the target
    score with respect to the captured activations. Each layer's output is read as an (N,C,h,w) map through its
    layout (``reshape_transform`` when given, else recorded in this same pass, see
    :class:`camlab.layouts.LayoutReader`); the gradient with respect to that map is the layout applied to
    d score / d output (exact for layouts that select and rearrange entries, see :mod:`camlab.layouts`). Works inside ``torch.inference_mode()`` (the input is copied out of it). The caller
    restores the model's state (:func:`camlab.hooks.preserved_state`)."""
    names = [name for name, _ in layers]
    with torch.inference_mode(False), ActivationCapture([m for _, m in layers], differentiable) as hooks, \
            LayoutReader(model, x, layers, reshape_transform) as reader:
        if x.is_inference():
            x = x.clone()
        torch.set_grad_enabled(False)
        logits = model(x)
        activations = hooks.activations
        target_scores = scores(logits, target)
        gradients = _gradients(target_scores, activations, names) if differentiable else [None] * len(layers)
    outputs, layouts = [], reader.layouts()
    for name, layout, activation, gradient in zip(names, layouts, activations, gradients):
        if layout is None:
            raise RuntimeError(f"layer {name!r} ran in this pass but not in the pass camlab recorded layouts in "
                               "(input-dependent control flow?); pass reshape_transform to say how to read it")
        feature_map = check_map(name, layout.to_map(activation.detach()), x.shape[0], reshape_transform)
        if gradient is not None:
            gradient = check_map(name, layout.to_map(gradient), x.shape[0], reshape_transform)
        outputs.append(LayerOutput(name, feature_map, gradient, layout))
    return ForwardPass(x, logits.detach(), target_scores.detach(), target, tuple(outputs), tuple(hooks.order))
