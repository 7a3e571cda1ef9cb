"""The template every explainer follows.

:class:`Explainer` owns what all methods share: input checks, eval mode and state restoration, target handling,
ReLU, bilinear upsampling, per-image scaling. A layer method (:class:`LayerMethod`) states one thing: the weights
that combine the layer's channels, ``weights(forward) -> (N,K)`` per channel or ``(N,K,h,w)`` per position. The map is

.. math:: L = \\mathrm{ReLU}\\Big(\\sum_k w_k \\odot A^k\\Big)

Override points, from the smallest to the largest: ``channel_weights(activations, gradients)`` (gradient methods,
:class:`~camlab.methods.gradient.GradientMethod`), ``weights(forward)`` (any layer method, per channel or per
position), ``fuse(maps, forward)`` (a method that combines several layers), ``compute(x, target)`` (the whole map;
call ``self.forward_pass(x, target)`` for the captured layers). None of them needs to resolve the layer: that happens
in :meth:`LayerMethod.resolve_layers`, called by :meth:`LayerMethod.forward_pass`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from torch import nn

from camlab.hooks import check_hookable, preserved_state, resolve_layer
from camlab.layouts import last_spatial_layer
from camlab.maps import scale, upsample
from camlab.methods import _augment
from camlab.methods._projection import first_component
from camlab.methods.checks import LOW_PRECISION, check_finite, check_input, check_model_input  # noqa: F401
from camlab.methods.forward import ForwardPass, LayerOutput, capture, check_feature_map  # noqa: F401 (public here)
from camlab.methods.registry import METHODS, register  # noqa: F401 (public here)
from camlab.modelinfo import dummy_input  # noqa: F401 (public here)
from camlab.targets import Target, scores


class Explainer:
    """Base of every method: ``Method(model, ...)(x, target=None, raw=False)``."""

    name: ClassVar[str] = ""
    #: signed maps (no ReLU) are scaled to [-1, 1] instead of [0, 1]
    relu: bool = True
    #: whether the method explains 3-D inputs (N,C,D,H,W) as well as images (N,C,H,W)
    volumetric: ClassVar[bool] = False

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model

    def __call__(self, x: torch.Tensor, target: Target = None, raw: bool = False) -> torch.Tensor:
        x = self.checked_input(x)
        with preserved_state(self.model):
            maps = self.compute(x, target)
        return self.present(maps.detach(), x, raw)

    def checked_input(self, x) -> torch.Tensor:
        """``x`` after the checks every call runs before touching the model: type, shape and finite values
        (:func:`check_input`), and the model's device and dtype (:func:`check_model_input`)."""
        x = check_input(x, self.volumetric, type(self).__name__)
        check_model_input(self.model, x)
        return x

    def present(self, maps: torch.Tensor, x: torch.Tensor, raw: bool) -> torch.Tensor:
        """The computed maps as returned: ReLU (unless ``relu=False``), then, unless ``raw``, upsampled to the
        input (bilinear; trilinear for 3-D inputs) and scaled per image over all its positions to [0, 1] ([-1, 1] for
        signed maps)."""
        if self.relu:
            maps = maps.clamp_min(0)
        if raw:
            return maps
        return scale(upsample(maps, tuple(x.shape[2:])), signed=not self.relu)

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The unscaled map, before ReLU, at the method's own resolution; runs with the model in eval mode."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


class LayerMethod(Explainer):
    """A class activation map at one layer: :math:`\\mathrm{ReLU}(\\sum_k w_k \\odot A^k)`, shape (N,h,w)
    with ``raw=True``, else (N,H,W) upsampled to the input and scaled to [0, 1].

    ``layer`` is a dotted name (``"layer4"``, ``"features.28"``), a submodule, or ``None`` for the last layer with a
    spatial output (for a timm Vision Transformer, the last block's ``norm1``; see
    :func:`camlab.layouts.default_layer`); methods with ``multi_layer = True`` (LayerCAM) also take a list of layers,
    whose maps :meth:`fuse` combines. ``relu=False`` keeps the signed map (scaled to [-1, 1]).

    ``reshape_transform`` (as in pytorch-grad-cam and torchcam): a callable mapping the layer's raw output to an
    (N,C,h,w) feature map, e.g. ``lambda t: t[:, 1:].reshape(t.shape[0], 14, 14, -1).permute(0, 3, 1, 2)`` for a
    ViT's tokens. Without it camlab reads NCHW maps, channels-last (NHWC) maps and timm ViT tokens by itself, and
    raises an error for any output whose layout it cannot decide for certain (:mod:`camlab.layouts`).

    Two options of every layer method, as pytorch-grad-cam's ``aug_smooth`` and ``eigen_smooth``:

    * ``eigen_smooth=True``: the map is the first principal component score of the weighted activations
      :math:`w_k \\odot A^k` (N,K,h,w) instead of their sum over the channels,
      :math:`L = \\mathrm{ReLU}\\big((O - \\bar O)\\, v_1\\big)` with :math:`O` the (hw x K) matrix of :math:`w_k \\odot A^k`,
      :math:`\\bar O` its per-channel mean over the positions and :math:`v_1` the first right singular vector of
      :math:`O - \\bar O` (:func:`camlab.methods._projection.first_component`). The option has no paper: camlab follows
      pytorch-grad-cam's ``get_2d_projection``, centring included (without it the first direction of signed weighted
      activations is close to their mean and the map comes out one-signed: all zero after ReLU on random resnet18's
      layer4, measured), and fixes the sign the peer leaves to numpy's SVD: the projection correlates positively with
      the unsmoothed map :math:`\\sum_k w_k A^k`. Where the peer's SVD returns the other sign its map is inverted.
    * ``aug_smooth=True``: the mean of the maps of 6 augmented inputs (horizontal flip x intensity 0.9 / 1 / 1.1),
      each mapped back (:mod:`camlab.methods._augment`).
    """

    #: whether the map already is a first principal component (Eigen-CAM, Eigen-Grad-CAM, KPCA-CAM): ``eigen_smooth``
    #: is implied there, and accepted without changing the map
    principal: ClassVar[bool] = False

    #: whether ``weights`` needs d score / d activations
    uses_gradients: ClassVar[bool] = True
    #: whether ``weights`` also needs the Hessian-vector products :math:`H A` (``forward.hessian_products``)
    uses_hessian: ClassVar[bool] = False
    #: whether ``layer`` may be a list of layers (then :meth:`fuse` combines their maps)
    multi_layer: ClassVar[bool] = False
    #: whether the map depends on ``target`` (Eigen-CAM's does not: its pass never reads the model's output)
    uses_target: ClassVar[bool] = True

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False):
        super().__init__(model)
        check_hookable(model)
        if reshape_transform is not None and not callable(reshape_transform):
            raise TypeError("reshape_transform must be a callable mapping the layer's output to (N,C,h,w), not "
                            f"{type(reshape_transform).__name__}")
        for option, value in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if not isinstance(value, bool):
                raise TypeError(f"{option} must be True or False, not {type(value).__name__} {value!r}")
        self.relu, self.reshape_transform = relu, reshape_transform
        self.aug_smooth, self.eigen_smooth = aug_smooth, eigen_smooth
        self._layers: list[tuple[str, nn.Module]] | None = None
        if isinstance(layer, (list, tuple)):
            self._layers = self._layer_list(layer)
        elif layer is not None:
            self._layers = [resolve_layer(model, layer)]
        elif getattr(model, "camlab", None) is not None:
            self.resolve_layers(dummy_input(model))

    def _layer_list(self, layer) -> list[tuple[str, nn.Module]]:
        if not self.multi_layer:
            raise ValueError(f"{type(self).__name__} explains one layer; got a list of layers {list(layer)!r} "
                             "(LayerCAM fuses several)")
        if not layer:
            raise ValueError(f"{type(self).__name__} needs at least one layer; got an empty list")
        resolved = [resolve_layer(self.model, item) for item in layer]
        names = [name for name, _ in resolved]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__} got the same layer twice in {names}")
        return resolved

    def resolve_layers(self, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
        """The ``(name, module)`` layers this method explains; the one place a layer is resolved. ``layer=None``
        becomes the last layer with a spatial output (for a timm ViT ``blocks[-1].norm1``), found by one traced
        forward pass on ``x[:1]``: at construction for camlab models (their input size is known), otherwise at the
        first call."""
        if self._layers is None:
            self._layers = [last_spatial_layer(self.model, x[:1])]
        return self._layers

    @property
    def layer_names(self) -> list[str]:
        """Names of the layers explained (empty until ``layer=None`` is resolved)."""
        return [name for name, _ in self._layers or []]

    @property
    def layers(self) -> list[nn.Module]:
        return [module for _, module in self._layers or []]

    @property
    def layer_name(self) -> str | None:
        """The (last given) layer's dotted name; ``None`` until ``layer=None`` is resolved."""
        return self._layers[-1][0] if self._layers else None

    @property
    def layer(self) -> nn.Module | None:
        return self._layers[-1][1] if self._layers else None

    def forward_pass(self, x: torch.Tensor, target: Target) -> ForwardPass:
        """One forward pass with the layers' activations captured and, if the method uses them, the gradients
        of the target score with respect to those activations only (nothing below the layers builds a graph).

        Activations with NaN or inf raise a ``ValueError``. Float16 / bfloat16 activations and gradients are
        handed to the method in float32 (a weighted sum over hundreds of channels overflows float16's 65504), so the
        maps of a half-precision model are float32."""
        forward = capture(self.model, x, target, self.resolve_layers(x), differentiable=self.uses_gradients,
                          scored=self.uses_target, reshape_transform=self.reshape_transform,
                          second_order=self.uses_hessian)
        for layer in forward.layers:
            check_finite(layer.activations, f"the activations of layer {layer.name!r}")
        if forward.layers[0].activations.dtype not in LOW_PRECISION:
            return forward
        return replace(forward, layers=tuple(
            replace(layer, activations=layer.activations.float(),
                    gradients=None if layer.gradients is None else layer.gradients.float(),
                    hessian_products=None if layer.hessian_products is None else layer.hessian_products.float())
            for layer in forward.layers))

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        """(N,K) channel weights or (N,K,h,w) per-position weights for one layer (``forward.activations``)."""
        raise NotImplementedError(f"{type(self).__name__} must define weights(forward) (or channel_weights)")

    def layer_map(self, forward: ForwardPass) -> torch.Tensor:
        """(N,h,w) :math:`\\sum_k w_k \\odot A^k` for one layer, before ReLU ((N,d,h,w) for a 3-D input); with
        ``eigen_smooth`` the projection of :math:`w_k \\odot A^k` on its first principal direction instead."""
        weights = self.weights(forward).to(forward.activations.dtype)  # e.g. CAM's float16 classifier weights
        if self.eigen_smooth and not self.principal:
            return first_component(weighted_activations(weights, forward.activations))
        if weights.ndim == 2:
            return torch.einsum("nk,nk...->n...", weights, forward.activations)
        return (weights * forward.activations).sum(dim=1)

    def fuse(self, maps: list[torch.Tensor], forward: ForwardPass) -> torch.Tensor:
        """One map from the per-layer maps (in the order the layers were given) of a multi-layer method."""
        raise NotImplementedError(f"{type(self).__name__} must define fuse(maps, forward) to combine layers")

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        forward = self.forward_pass(x, target)
        maps = [self.layer_map(forward.at(i)) for i in range(len(forward.layers))]
        return maps[0] if len(maps) == 1 else self.fuse(maps, forward)

    def __call__(self, x: torch.Tensor, target: Target = None, raw: bool = False) -> torch.Tensor:
        if not self.aug_smooth:
            return super().__call__(x, target, raw)
        x = self.checked_input(x)
        with preserved_state(self.model):
            return _augment.smoothed(self, x, target, raw)

    def __repr__(self) -> str:
        layers = self.layer_names if len(self.layer_names) > 1 else self.layer_name
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={layers!r})"


def weighted_activations(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """(N,K,*spatial) :math:`w_k \\odot A^k` for (N,K) channel weights or (N,K,*spatial) per-position weights."""
    if weights.ndim == 2:
        return weights.reshape(*weights.shape, *[1] * (activations.ndim - 2)) * activations
    return weights * activations


def signed_display(images: torch.Tensor) -> torch.Tensor:
    """Per-image scaling of a signed image to [0, 1] for display: :math:`g / (2 \\max|g|) + 0.5`, so 0 maps to 0.5 and
    the sign is kept; an all-zero (flat) image gives 0.5 everywhere, never NaN."""
    return scale(images, signed=True) / 2 + 0.5


class InputMethod(Explainer):
    """A method whose result lives in input space, (N,C,H,W) like ``x``: vanilla gradient, deconvnet, guided
    backprop, Guided Grad-CAM. Built without a layer (subclasses may add one).

    ``raw=True`` returns the unscaled result (e.g. the gradient image itself); otherwise a display-ready image in
    [0, 1], per image: :math:`g / (2 \\max|g|) + 0.5` (0.5 is zero, see :func:`signed_display`)."""

    relu = False

    def present(self, images: torch.Tensor, x: torch.Tensor, raw: bool) -> torch.Tensor:
        return images if raw else signed_display(images)

    def input_gradient(self, x: torch.Tensor, target: Target, mode=None) -> torch.Tensor:
        """d score / d input for a copy of ``x``, with the forward pass run under the ``TorchFunctionMode``
        ``mode`` when given (guided backprop's rules). Works inside ``torch.no_grad()`` / ``inference_mode`` and on
        frozen models: only the input copy requires grad, no parameter gradient is accumulated."""
        with torch.inference_mode(False), torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            if mode is None:
                output = self.model(inputs)
            else:
                with mode:
                    output = self.model(inputs)
            target_scores = scores(output, target, n=x.shape[0])
            if not target_scores.requires_grad:
                raise RuntimeError("the target score does not depend on the input")
            (gradient,) = torch.autograd.grad(target_scores.sum(), inputs)
        return gradient
