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
from typing import Any

import torch
from torch import nn

from camlab.hooks import ActivationCapture
from camlab.layouts import Layout, LayoutReader, check_map
from camlab.targets import Target, class_indices, detach, fixed, logits_of, per_image, scores, tensors


@dataclass(frozen=True)
class LayerOutput:
    """One captured layer: its dotted ``name``, its (N,K,h,w) ``activations`` (detached; the layer's output read
    through its ``layout``, see :mod:`camlab.layouts`) and d score / d activations (``None`` for gradient-free
    methods). A layer the output does not depend on is refused, for every method."""

    name: str
    activations: torch.Tensor
    gradients: torch.Tensor | None
    layout: Layout | None = None
    #: (N,K,h,w) the Hessian-vector product :math:`H A` of the score with respect to the activations (``None`` unless
    #: the pass was run with ``second_order=True``)
    hessian_products: torch.Tensor | None = None


@dataclass(frozen=True)
class ForwardPass:
    """What one forward (and, for gradient methods, backward) pass gives a method."""

    inputs: torch.Tensor       # (N,C,H,W) model input
    output: Any                # the model's output as it returned it (tensor, tuple, dict, ...), tensors detached
    scores: torch.Tensor | None  # (N,) target score per image, detached; None for methods that ignore the target
    target: Target             # as the caller gave it
    layers: tuple[LayerOutput, ...]  # in the order the layers were given
    order: tuple[int, ...] = (0,)    # indices into ``layers`` in the order the layers ran (the last is the deepest)

    @property
    def logits(self) -> torch.Tensor:
        """The class logits in the output (:func:`camlab.targets.logits_of`; an error for an output without)."""
        return logits_of(self.output)

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
    def hessian_products(self) -> torch.Tensor | None:
        """(N,K,h,w) :math:`H A`, the Hessian of the score with respect to the activations times the activations
        (``second_order`` passes only; ``None`` otherwise)."""
        return self._single().hessian_products

    @property
    def layer_name(self) -> str:
        return self._single().name

    def at(self, index: int) -> "ForwardPass":
        """The same pass seen through layer ``index`` alone."""
        return replace(self, layers=(self.layers[index],), order=(0,))

    def class_indices(self) -> torch.Tensor:
        """(N,) the class explained in each image (for an index-like target; ``None`` = the top-1 class)."""
        return class_indices(self.output, self.target)

    def fixed_target(self) -> Target:
        """The target with ``None`` resolved to this pass's classes (a callable stays as it is), for further passes
        on changed inputs that must explain the same classes."""
        return fixed(self.output, self.target)

    def per_image_targets(self) -> list:
        """Each image's own target: its class index or callable (:func:`camlab.targets.per_image`)."""
        return per_image(self.output, self.target)


def check_feature_map(name: str, activations: torch.Tensor, ndim: int = 4) -> None:
    """An (N,C,H,W) feature map (``ndim`` 4), or (N,C,D,H,W) for a 3-D input (5), or a clear error (the check for
    maps that skip :mod:`camlab.layouts`)."""
    check_map(name, activations, activations.shape[0] if activations.ndim else 0, None, ndim)


def _off_path(what: str, names: list[str]) -> RuntimeError:
    where = f"layer {names[0]!r}" if len(names) == 1 else f"the layers {names}"
    return RuntimeError(f"{what} does not depend on {where} (a layer that runs but does not feed the output, e.g. an "
                        "auxiliary head); choose a layer on the path to the output (see camlab.layers(model))")


def _gradients(target_scores: torch.Tensor, activations: list[torch.Tensor], names: list[str],
               create_graph: bool = False) -> list[torch.Tensor]:
    """d score / d activations; a layer the score does not depend on at all (no autograd path) is refused.
    ``create_graph`` keeps the gradients differentiable (for Hessian-vector products)."""
    found = [None] * len(activations)
    if target_scores.requires_grad:
        found = torch.autograd.grad(target_scores.sum(), activations, allow_unused=True, create_graph=create_graph)
    missing = [name for name, gradient in zip(names, found) if gradient is None]
    if missing:
        raise _off_path("the target score", missing)
    return list(found)


def _tensors(output) -> list[torch.Tensor]:
    """The floating-point tensors in a model output (:func:`camlab.targets.tensors`)."""
    return [tensor for tensor in tensors(output) if tensor.is_floating_point()]


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
            differentiable: bool, scored: bool = True, reshape_transform=None,
            second_order: bool = False) -> ForwardPass:
    """Run ``model`` on ``x`` with the ``(name, module)`` ``layers`` captured, starting with grad mode off so that only
    the layers after the first captured one build a graph; with ``differentiable`` also the gradients of the target
    score with respect to the captured activations. ``scored=False`` (a method that ignores the target) never reads
    the model's output. Each layer's output is read as an (N,C,h,w) map through its layout (``reshape_transform``
    when given, else recorded in this same pass, see :class:`camlab.layouts.LayoutReader`); the gradient with respect
    to that map is the layout applied to d score / d output (exact for layouts that select and rearrange entries, see
    :mod:`camlab.layouts`). Works inside ``torch.inference_mode()`` (the input is copied out of it). The caller
    restores the model's state (:func:`camlab.hooks.preserved_state`). ``second_order`` (with ``differentiable``) also
    gives each layer's Hessian-vector product :math:`H A` (:func:`_hessian_products`)."""
    names = [name for name, _ in layers]
    verified = _ON_PATH.get(model, ())
    check = not differentiable and not all(module in verified for _, module in layers)
    with torch.inference_mode(False):
        with ActivationCapture([m for _, m in layers], differentiable or check) as hooks, \
                LayoutReader(model, x, layers, reshape_transform) as reader:
            if x.is_inference():
                x = x.clone()
            torch.set_grad_enabled(False)
            output = model(x)
            activations = hooks.activations
            target_scores = scores(output, target, n=x.shape[0]) if scored or differentiable else None
            gradients = (_gradients(target_scores, activations, names, create_graph=second_order) if differentiable
                         else [None] * len(layers))
        if check:  # after the hooks are gone, so that its NaN pass is neither captured nor recorded
            check_on_path(model, x, layers, activations, output)
        products = (_hessian_products(reader.layouts(), activations, gradients) if second_order
                    else [None] * len(layers))
        gradients = [None if g is None else g.detach() for g in gradients]
    outputs = tuple(_read_layers(names, reader.layouts(), activations, gradients, products, x, reshape_transform))
    detached = None if target_scores is None else target_scores.detach()
    output = detach(output) if target_scores is not None else output  # untouched where the target is ignored
    return ForwardPass(x, output, detached, target, outputs, tuple(hooks.order))


def _hessian_products(layouts, activations: list[torch.Tensor], gradients: list[torch.Tensor]) -> list:
    r"""Per layer, :math:`H_M M`: the Hessian of the score with respect to the layer's (N,C,h,w) map :math:`M`
    times :math:`M`, exactly, by one more backward pass through the (``create_graph``) gradients. With the layout
    :math:`M = L(R)` of the raw output :math:`R`, :math:`
abla_M = L(
abla_R)`, so the vector-Jacobian product of
    :math:`L(
abla_R)` with :math:`M` is :math:`H_R L^	op M` in raw space, and :math:`L` of it is
    :math:`L H_R L^	op M = H_M M` (any layout; for NCHW :math:`L` is the identity). A layer whose gradient does not
    depend on it (the score is linear in it) gets :math:`H M = 0`."""
    products = []
    with torch.enable_grad():
        for layout, activation, gradient in zip(layouts, activations, gradients):
            if layout is None or not gradient.requires_grad:  # not recorded (reported later), or a linear score
                products.append(None if layout is None else torch.zeros_like(layout.to_map(activation.detach())))
                continue
            gradient_map = layout.to_map(gradient)
            vector = layout.to_map(activation.detach())
            try:
                (product,) = torch.autograd.grad(gradient_map, activation, grad_outputs=vector, allow_unused=True)
            except RuntimeError as error:  # an op without a second derivative in torch (e.g. hardsigmoid)
                raise RuntimeError(f"this method needs second derivatives of the score, but torch cannot differentiate "
                                   f"twice through the model after this layer ({error}); choose a later layer, after "
                                   "that operation") from error
            product = torch.zeros_like(activation) if product is None else product
            products.append(layout.to_map(product.detach()))
    return products


def _read_layers(names, layouts, activations, gradients, products, x: torch.Tensor, reshape_transform):
    """Each captured layer's output (and gradient) read through its layout as a checked feature map."""
    for name, layout, activation, gradient, product in zip(names, layouts, activations, gradients, products):
        if layout is None:
            raise RuntimeError(f"layer {name!r} ran in this pass but not in the pass camlab recorded layouts in "
                               "(input-dependent control flow?); pass reshape_transform to say how to read it")
        feature_map = check_map(name, layout.to_map(activation.detach()), x.shape[0], reshape_transform, x.ndim)
        if gradient is not None:
            gradient = check_map(name, layout.to_map(gradient), x.shape[0], reshape_transform, x.ndim)
        yield LayerOutput(name, feature_map, gradient, layout, product)
