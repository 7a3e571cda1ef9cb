"""Input-space saliency: vanilla gradient, deconvnet, guided backpropagation and Guided Grad-CAM.

Each returns an (N,3,H,W) image like the input. The backward rules of deconvnet and guided backprop are applied to
every ReLU-like call in the forward pass, modules and functional calls alike, by a ``torch.overrides.TorchFunctionMode``
active only during that forward pass: ``nn.ReLU`` (``inplace=True`` too), ``nn.ReLU6``, ``nn.Hardtanh``,
``F.relu``, ``torch.relu``, ``Tensor.relu``, their in-place forms, ``F.relu6`` and ``F.hardtanh``. Nothing in the
model is swapped or hooked.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from camlab.maps import upsample
from camlab.methods.base import InputMethod, register
from camlab.methods.gradient import GradCAM
from camlab.targets import Target

INF = float("inf")


class _RuleClamp(torch.autograd.Function):
    """``clamp(x, low, high)`` (ReLU: low 0, high inf; ReLU6: 0, 6; hardtanh) with a modified backward rule.

    ``guided``: :math:`\\partial = g \\cdot [low < x < high] \\cdot [g > 0]` (the plain clamp gradient, then only
    positive signals pass); ``deconvnet``: :math:`\\partial = \\mathrm{ReLU}(g)`, the forward mask ignored."""

    @staticmethod
    def forward(ctx, x, low, high, rule, inplace):
        inside = (x > low) & (x < high)
        ctx.save_for_backward(inside)
        ctx.rule = rule
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(low, None if high == INF else high)
        return x.clamp(low, None if high == INF else high)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        if ctx.rule == "guided":
            grad = grad * inside * (grad > 0)
        else:
            grad = grad.clamp_min(0)
        return grad, None, None, None, None


def _argument(args, kwargs, position, name, default):
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


# func -> (low, high, in-place) readers; each takes (args, kwargs)
_RELU_LIKE = {
    F.relu: lambda a, k: (0.0, INF, bool(_argument(a, k, 1, "inplace", False))),
    torch.relu: lambda a, k: (0.0, INF, False),
    torch.relu_: lambda a, k: (0.0, INF, True),
    torch.Tensor.relu: lambda a, k: (0.0, INF, False),
    torch.Tensor.relu_: lambda a, k: (0.0, INF, True),
    F.relu6: lambda a, k: (0.0, 6.0, bool(_argument(a, k, 1, "inplace", False))),
    F.hardtanh: lambda a, k: (float(_argument(a, k, 1, "min_val", -1.0)), float(_argument(a, k, 2, "max_val", 1.0)),
                              bool(_argument(a, k, 3, "inplace", False))),
    F.hardtanh_: lambda a, k: (float(_argument(a, k, 1, "min_val", -1.0)), float(_argument(a, k, 2, "max_val", 1.0)),
                               True),
}

# activations that keep their plain gradient (warned about)
_OTHER_ACTIVATIONS = {
    F.silu: "SiLU", F.gelu: "GELU", F.hardswish: "Hardswish", F.hardsigmoid: "Hardsigmoid", F.mish: "Mish",
    F.elu: "ELU", F.leaky_relu: "LeakyReLU", F.selu: "SELU", F.celu: "CELU", F.softplus: "Softplus",
    F.prelu: "PReLU", F.rrelu: "RReLU", F.logsigmoid: "LogSigmoid",
}


class BackwardRuleMode(TorchFunctionMode):
    """While active, every ReLU-like call (see the module docstring) gets the ``rule`` backward
    (``"guided"`` or ``"deconvnet"``); other activations run unchanged and are recorded in ``plain``."""

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.plain: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reader = _RELU_LIKE.get(func)
        if reader is not None and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            low, high, inplace = reader(args, kwargs)
            return _RuleClamp.apply(args[0], low, high, self.rule, inplace)
        name = _OTHER_ACTIVATIONS.get(func)
        if name is not None:
            self.plain.add(name)
        return func(*args, **kwargs)


@register("gradient")
class Gradient(InputMethod):
    r"""Vanilla gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop 2014, https://arxiv.org/abs/1312.6034).

    .. math:: G = \frac{\partial y^c}{\partial x}

    ``raw=True`` gives the signed gradient image (N,3,H,W); otherwise per image :math:`G / (2\max|G|) + 0.5` in
    [0, 1] (0.5 = zero gradient). The paper shows :math:`\max_{\text{channel}} |G|` instead; take
    ``raw.abs().amax(1)`` for that.
    """

    rule: str | None = None

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        if self.rule is None:
            return self.input_gradient(x, target)
        mode = BackwardRuleMode(self.rule)
        gradient = self.input_gradient(x, target, mode)
        if mode.plain:
            warnings.warn(
                f"{type(self).__name__}: {', '.join(sorted(mode.plain))} in {type(self.model).__name__} "
                f"keep their plain gradient; the {self.rule} rule applies only to ReLU, ReLU6 and hardtanh",
                stacklevel=3,
            )
        return gradient


@register("deconvnet")
class Deconvnet(Gradient):
    r"""Deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    https://arxiv.org/abs/1311.2901), as a backward rule: at every ReLU the backward signal is rectified,
    :math:`R_l = \mathrm{ReLU}(R_{l+1})`, whatever the forward input was (the plain gradient would be
    :math:`R_{l+1} \cdot [x > 0]`). Applied to ReLU, ReLU6 and hardtanh, module or functional (warns once per call,
    naming them, when other activations such as SiLU or GELU keep their plain gradient). Same rule as Captum's
    ``Deconvolution``, which only rewrites ``nn.ReLU`` modules. Output and scaling as :class:`Gradient`.
    """

    rule = "deconvnet"


@register("guided_backprop")
class GuidedBackprop(Gradient):
    r"""Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
    ICLR workshop 2015, https://arxiv.org/abs/1412.6806).

    At every ReLU only positive signals that also had a positive input pass:
    :math:`R_l = [x_l > 0] \cdot [R_{l+1} > 0] \cdot R_{l+1}`. For ReLU6 (MobileNet, EfficientNet-Lite) and hardtanh
    the forward mask is the clamp's own gradient, :math:`[0 < x < 6]`. The rule is applied to modules and to
    functional calls inside ``forward`` (``F.relu(..., inplace=True)`` in torchvision's DenseNet), by a
    ``TorchFunctionMode`` active during the forward pass only; nothing in the model is swapped. Captum's
    ``GuidedBackprop`` and pytorch-grad-cam's ``GuidedBackpropReLUModel`` rewrite only ``nn.ReLU`` modules, so they
    silently give plain gradients through ReLU6 and functional ReLUs. Other activations (SiLU, GELU, Hardswish, ...)
    keep their plain gradient, with one warning per call naming them.

    ``raw=True`` gives the guided gradient (N,3,H,W); otherwise per image :math:`G / (2\max|G|) + 0.5` in [0, 1].
    """

    rule = "guided"


@register("guided_gradcam")
class GuidedGradCAM(InputMethod):
    r"""Guided Grad-CAM (Selvaraju et al., ICCV 2017, https://arxiv.org/abs/1610.02391): the guided backprop image
    times the Grad-CAM map, upsampled bilinearly to the input and scaled to [0, 1] per image, as in the paper:

    .. math:: G^c_{\text{Guided Grad-CAM}} = G^c_{\text{guided}} \odot \mathrm{up}(L^c_{\text{Grad-CAM}})

    ``raw=True`` gives that product (N,3,H,W); otherwise :math:`G / (2\max|G|) + 0.5` per image. Captum's
    ``GuidedGradCam`` upsamples the Grad-CAM map with nearest-neighbour interpolation and does not scale it, and its
    guided backprop covers only ``nn.ReLU`` modules (see :class:`GuidedBackprop`).
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None):
        super().__init__(model)
        self.gradcam = GradCAM(model, layer)
        self.guided = GuidedBackprop(model)
        self.layer_name, self.layer = self.gradcam.layer_name, self.gradcam.layer

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        heatmap = self.gradcam(x, target=target)
        guided = self.guided.compute(x, target)
        return guided * upsample(heatmap, tuple(x.shape[-2:]))[:, None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r})"
