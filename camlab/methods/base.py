"""The template every explainer follows.

:class:`Explainer` owns what all methods share: input checks, eval mode and state restoration, target handling,
ReLU, bilinear upsampling, per-image scaling. A layer method (:class:`LayerMethod`) states one thing: the weights
that combine the layer's channels, ``weights(forward) -> (N,K)`` per channel or ``(N,K,h,w)`` per position. The map is

.. math:: L = \\mathrm{ReLU}\\Big(\\sum_k w_k \\odot A^k\\Big)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from camlab.hooks import ActivationCapture, last_spatial_layer, preserved_state, resolve_layer
from camlab.maps import scale, upsample
from camlab.targets import Target, class_indices, scores

METHODS: dict[str, type["Explainer"]] = {}


def register(name: str):
    """Class decorator: make a method available as ``camlab.METHODS[name]`` and ``explain(..., method=name)``."""

    def decorator(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorator


def check_input(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"input must be a torch.Tensor of shape (N,C,H,W), not {type(x).__name__}; "
            "use camlab.preprocess(image, model) to turn a PIL image into one"
        )
    if x.ndim != 4:
        hint = " (add a batch dimension: x[None] or x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ValueError(f"input must be a 4-D (N,C,H,W) tensor, got shape {tuple(x.shape)}{hint}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"input must be a float tensor, got {x.dtype}; convert with x.float() / 255 and normalise, "
            "or use camlab.preprocess(image, model)"
        )
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    return x


def dummy_input(model: nn.Module) -> torch.Tensor:
    """A seeded random input of the model's size (its ``camlab`` info, else 3x224x224); global RNG untouched."""
    info = getattr(model, "camlab", None)
    height, width = getattr(info, "input_size", (224, 224))
    try:
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, height, width, generator=generator).to(device=device, dtype=dtype)


@dataclass
class ForwardPass:
    """What one forward (and, for gradient methods, backward) pass gives a method."""

    inputs: torch.Tensor       # (N,C,H,W) model input
    logits: torch.Tensor       # model output, detached
    scores: torch.Tensor       # (N,) target score per image, detached
    activations: torch.Tensor  # (N,K,h,w) the layer's output, detached
    gradients: torch.Tensor | None  # d score / d activations, or None for gradient-free methods
    target: Target             # as the caller gave it


class Explainer:
    """Base of every method: ``Method(model, ...)(x, target=None, raw=False)``."""

    name: ClassVar[str] = ""
    #: signed maps (no ReLU) are scaled to [-1, 1] instead of [0, 1]
    relu: bool = True

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model

    def __call__(self, x: torch.Tensor, target: Target = None, raw: bool = False) -> torch.Tensor:
        x = check_input(x)
        with preserved_state(self.model):
            maps = self.compute(x, target)
        maps = maps.detach()
        if self.relu:
            maps = maps.clamp_min(0)
        if raw:
            return maps
        return scale(upsample(maps, tuple(x.shape[-2:])), signed=not self.relu)

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The unscaled map, before ReLU, at the method's own resolution; runs with the model in eval mode."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


def check_feature_map(name: str, activations: torch.Tensor) -> None:
    if activations.ndim != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(activations.shape)}, not an (N,C,H,W) feature map; "
            "choose a convolutional layer (see camlab.layers(model))"
        )


def scored_forward(model: nn.Module, x: torch.Tensor, target: Target, capture, read, differentiable: bool,
                   where: str):
    """The forward (and backward) pass every layer method shares: run ``model`` on ``x`` with ``capture`` (an
    activation capture) hooked in, starting with grad mode off so that only the layers after the captured
    activations build a graph; ``read(capture)`` lists the captured activations. Returns ``(x, logits, scores,
    activations, gradients)``, with ``gradients`` (one per activation, ``None`` where the score does not depend
    on it) only when ``differentiable``. Works inside ``torch.inference_mode()``: the input is copied out of it."""
    with torch.inference_mode(False), capture:
        if x.is_inference():
            x = x.clone()
        torch.set_grad_enabled(False)
        logits = model(x)
        activations = read(capture)
        target_scores = scores(logits, target)
        gradients = None
        if differentiable:
            if target_scores.requires_grad:
                gradients = torch.autograd.grad(target_scores.sum(), activations, allow_unused=True)
            if gradients is None or all(gradient is None for gradient in gradients):
                raise RuntimeError(f"the target score does not depend on {where}; choose a layer on the path to "
                                   "the output")
    return x, logits, target_scores, activations, gradients


class LayerMethod(Explainer):
    """A class activation map at one layer: :math:`\\mathrm{ReLU}(\\sum_k w_k \\odot A^k)`, shape (N,h,w)
    with ``raw=True``, else (N,H,W) upsampled to the input and scaled to [0, 1].

    ``layer`` is a dotted name (``"layer4"``, ``"features.28"``), a submodule, or ``None`` for the last layer with a
    spatial output. ``relu=False`` keeps the signed map (scaled to [-1, 1]).
    """

    #: whether ``weights`` needs d score / d activations
    uses_gradients: ClassVar[bool] = True

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True):
        super().__init__(model)
        self.relu = relu
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = resolve_layer(model, layer)
        elif getattr(model, "camlab", None) is not None:
            self.prepare(dummy_input(model))

    def prepare(self, x: torch.Tensor) -> None:
        """Work that needs an example input, done once: finding the default layer (``layer=None``). It runs at
        construction for camlab models (their input size is known) and otherwise at the first call."""
        if self.layer is None:
            self.layer_name, self.layer = last_spatial_layer(self.model, x[:1])

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        """(N,K) channel weights or (N,K,h,w) per-position weights: the one thing a method defines."""
        raise NotImplementedError

    def forward_pass(self, x: torch.Tensor, target: Target) -> ForwardPass:
        """One forward pass with the layer's activations captured and, if the method uses them, the gradients
        of the target score with respect to those activations only (nothing below the layer builds a graph)."""
        capture = ActivationCapture(self.layer, differentiable=self.uses_gradients)
        x, logits, target_scores, (activations,), gradients = scored_forward(
            self.model, x, target, capture, lambda c: [c.activation], self.uses_gradients, f"layer {self.layer_name!r}")
        check_feature_map(self.layer_name, activations)
        gradient = gradients[0] if gradients is not None else None
        return ForwardPass(x, logits.detach(), target_scores.detach(), activations.detach(), gradient, target)

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        self.prepare(x)
        forward = self.forward_pass(x, target)
        weights = self.weights(forward)
        if weights.ndim == 2:
            return torch.einsum("nk,nkhw->nhw", weights, forward.activations)
        return (weights * forward.activations).sum(dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r})"


def target_indices(forward: ForwardPass) -> torch.Tensor:
    """The class index per image for methods that need one (CAM, Score-CAM, ...)."""
    return class_indices(forward.logits, forward.target)


def signed_display(images: torch.Tensor) -> torch.Tensor:
    """Per-image scaling of a signed image to [0, 1] for display: :math:`g / (2 \\max|g|) + 0.5`, so 0 maps to 0.5 and
    the sign is kept; an all-zero (flat) image gives 0.5 everywhere, never NaN."""
    flat = images.reshape(images.shape[0], -1)
    peak = flat.abs().amax(dim=1, keepdim=True)
    scaled = torch.where(peak > 0, flat / (2 * peak.clamp_min(torch.finfo(flat.dtype).tiny)), torch.zeros_like(flat))
    return (scaled + 0.5).reshape(images.shape)


class InputMethod(Explainer):
    """A method whose result lives in input space, (N,C,H,W) like ``x``: vanilla gradient, deconvnet, guided
    backprop, Guided Grad-CAM. Built without a layer (subclasses may add one).

    ``raw=True`` returns the unscaled result (e.g. the gradient image itself); otherwise a display-ready image in
    [0, 1], per image: :math:`g / (2 \\max|g|) + 0.5` (0.5 is zero, see :func:`signed_display`)."""

    relu = False

    def __call__(self, x: torch.Tensor, target: Target = None, raw: bool = False) -> torch.Tensor:
        x = check_input(x)
        with preserved_state(self.model):
            images = self.compute(x, target)
        images = images.detach()
        return images if raw else signed_display(images)

    def input_gradient(self, x: torch.Tensor, target: Target, mode=None) -> torch.Tensor:
        """d score / d input for a copy of ``x``, with the forward pass run under the ``TorchFunctionMode``
        ``mode`` when given (guided backprop's rules). Works inside ``torch.no_grad()`` / ``inference_mode`` and on
        frozen models: only the input copy requires grad, no parameter gradient is accumulated."""
        with torch.inference_mode(False), torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            if mode is None:
                logits = self.model(inputs)
            else:
                with mode:
                    logits = self.model(inputs)
            target_scores = scores(logits, target)
            if not target_scores.requires_grad:
                raise RuntimeError("the target score does not depend on the input")
            (gradient,) = torch.autograd.grad(target_scores.sum(), inputs)
        return gradient
