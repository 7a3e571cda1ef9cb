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
from camlab.layouts import NHWC, TOKENS, Layout, LayoutReader, check_map, layout_for
from camlab.targets import Target, class_indices, detach, fixed, logits_of, map_tensors, per_image, scores, tensors


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
    if all(isinstance(activation, torch.Tensor) for activation in activations):
        found = [None] * len(activations)
        if target_scores.requires_grad:
            found = torch.autograd.grad(target_scores.sum(), activations, allow_unused=True,
                                        create_graph=create_graph)
    else:
        found = _structured_gradients(target_scores, activations, create_graph)
    missing = [name for name, gradient in zip(names, found) if gradient is None]
    if missing:
        raise _off_path("the target score", missing)
    return list(found)


def _structured_gradients(target_scores: torch.Tensor, activations: list, create_graph: bool) -> list:
    """d score / d activations for layers whose outputs are structures (tuples, dicts, ... of tensors, read through
    a ``reshape_transform``): each gradient has the structure of its output (zeros for a tensor the score does not
    depend on), ``None`` for a layer the score depends on through none of its tensors."""
    leaves = [[t for t in _tensors(activation) if t.requires_grad] for activation in activations]
    flat = [t for layer in leaves for t in layer]
    grads = [None] * len(flat)
    if target_scores.requires_grad and flat:
        grads = torch.autograd.grad(target_scores.sum(), flat, allow_unused=True, create_graph=create_graph)
    by_id = {id(t): g for t, g in zip(flat, grads)}
    found = []
    for activation, layer in zip(activations, leaves):
        if all(by_id[id(t)] is None for t in layer):
            found.append(None)
            continue
        found.append(map_tensors(activation, lambda t: by_id.get(id(t)) if by_id.get(id(t)) is not None
                                 else torch.zeros_like(t)))
    return found


def _tensors(output) -> list[torch.Tensor]:
    """The floating-point tensors in a model output (:func:`camlab.targets.tensors`)."""
    return [tensor for tensor in tensors(output) if tensor.is_floating_point()]


#: model -> the layers already found to feed its output (checked once per model and layer)
_ON_PATH: "weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet]" = weakref.WeakKeyDictionary()


def _unchanged_by_nan(model: nn.Module, x: torch.Tensor, module: nn.Module, output) -> bool:
    """Whether the model's output stays the same when ``module``'s output is all NaN (one extra forward pass; a
    model that raises on it reacted, so it does not stay the same)."""
    def poison(_, inputs, result):
        return map_tensors(result, lambda t: torch.full_like(t, float("nan")) if t.is_floating_point() else t)

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
    if leaves and any(t.requires_grad for a in activations for t in _tensors(a)):
        total = sum(leaf.double().sum() for leaf in leaves)
        try:
            found = _structured_gradients(total, activations, create_graph=False)
        except RuntimeError:  # a backward the model does not support (e.g. an in-place op): the NaN pass decides
            pass
    for i in todo:
        name, module = layers[i]
        if found[i] is None and _tensors(activations[i]) and _unchanged_by_nan(model, x, module, output):
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
        with ActivationCapture([m for _, m in layers], differentiable or check,
                               structured=reshape_transform is not None) as hooks, \
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
        gradients = [None if g is None else detach(g) for g in gradients]
    outputs = tuple(_read_layers(names, reader.layouts(), activations, gradients, products, x, reshape_transform))
    if reshape_transform is not None:
        for (name, module), activation, read in zip(layers, activations, outputs):
            check_transform(model, x, name, module, reshape_transform, detach(activation), read.activations)
    detached = None if target_scores is None else target_scores.detach()
    output = detach(output) if target_scores is not None else output  # untouched where the target is ignored
    return ForwardPass(x, output, detached, target, outputs, tuple(hooks.order))


def check_transform(model: nn.Module, x: torch.Tensor, name: str, module: nn.Module, transform, raw,
                    feature_map: torch.Tensor) -> None:
    """Refuse a ``reshape_transform`` that cannot be right: one that mixes the images of the batch (image i's map
    must come from image i's output alone: the last image is transformed alone and compared), and the identity on
    a layer camlab traced as channels-last (N,H,W,C), which would read rows as channels."""
    n = x.shape[0]
    if n > 1 and all(t.ndim and t.shape[0] == n for t in _tensors(raw)):
        alone = transform(map_tensors(raw, lambda t: t[-1:]))
        if not (isinstance(alone, torch.Tensor) and alone.shape == feature_map[-1:].shape
                and torch.allclose(alone, feature_map[-1:], rtol=1e-5, atol=1e-6)):
            raise ValueError(f"reshape_transform at layer {name!r} mixes the images of the batch: the map of the last "
                             "image differs when its output is transformed alone; keep dim 0 as the batch (e.g. "
                             "t.permute(0, 3, 1, 2), never a permutation or reduction of dim 0)")
    if isinstance(raw, torch.Tensor) and raw.ndim == 4 and feature_map.shape == raw.shape \
            and torch.equal(feature_map, raw):
        try:
            traced = layout_for(model, x[:1], name, module)
        except ValueError:  # camlab cannot decide the layout itself: the user's transform decides
            return
        if traced is not None and traced.kind == NHWC:
            raise ValueError(f"layer {name!r} outputs (N,H,W,C) = {tuple(raw.shape)} (channels last), but "
                             "reshape_transform returns it unchanged, which reads its rows as channels; use "
                             "reshape_transform=lambda t: t.permute(0, 3, 1, 2), or leave reshape_transform out "
                             "(camlab reads this layout itself)")


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
            if not isinstance(activation, torch.Tensor):
                raise ValueError(f"this method needs second derivatives at the layer, which camlab computes for a "
                                 f"layer returning one tensor, not {type(activation).__name__}; choose such a layer")
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


def _check_patch_gradient(name: str, layout: Layout, raw_gradient, gradient: torch.Tensor) -> None:
    """Refuse a token layer whose patch tokens the score does not read (their gradient exactly zero, the prefix
    tokens' not): after a ViT's last attention (``blocks.11``, ``norm``) only the class token reaches the head, so
    every gradient method would return an all-zero map there."""
    if layout.kind != TOKENS or gradient.any() or not raw_gradient.any():
        return
    raise ValueError(f"the score does not depend on the patch tokens at layer {name!r} (their gradient is exactly 0; "
                     "only the class token reaches the head after it), so the map would be all zero; choose a layer "
                     "before the last attention, e.g. the last block's norm1 (blocks[-1].norm1, pytorch-grad-cam's "
                     "choice), or layer=None for camlab's default")


def _read_layers(names, layouts, activations, gradients, products, x: torch.Tensor, reshape_transform):
    """Each captured layer's output (and gradient) read through its layout as a checked feature map."""
    for name, layout, activation, gradient, product in zip(names, layouts, activations, gradients, products):
        if layout is None:
            raise RuntimeError(f"layer {name!r} ran in this pass but not in the pass camlab recorded layouts in "
                               "(input-dependent control flow?); pass reshape_transform to say how to read it")
        feature_map = check_map(name, layout.to_map(detach(activation)), x.shape[0], reshape_transform, x.ndim)
        if gradient is not None:
            raw_gradient, gradient = gradient, check_map(name, layout.to_map(gradient), x.shape[0], reshape_transform,
                                                         x.ndim)
            _check_patch_gradient(name, layout, raw_gradient, gradient)
        yield LayerOutput(name, feature_map, gradient, layout, product)
