"""Input-space saliency: vanilla gradient, deconvnet, guided backpropagation and Guided Grad-CAM.

Each returns an (N,3,H,W) image like the input. The backward rules of deconvnet and guided backprop are applied to
every ReLU-like call in the forward pass: ``nn.ReLU`` (``inplace=True`` too), ``nn.ReLU6``, ``nn.Hardtanh``,
``F.relu``, ``torch.relu``, ``Tensor.relu``, their in-place forms, ``F.relu6`` and ``F.hardtanh``; and the calls that
are certainly a ReLU: ``nn.Threshold(0, 0)`` / ``F.threshold(x, 0, 0)`` / ``torch.threshold(x, 0, 0)`` and
``clamp(x, min=0)`` / ``clamp_min(x, 0)`` / ``clip(x, min=0)`` (torch function or tensor method, in-place forms too).
Other thresholds, and ReLU-like ops inside TorchScript submodules (whose code runs in C++, out of reach), keep their
plain gradient with a warning naming them; a TorchScript model as a whole is refused (``TypeError``). Other clamps
(``clamp_min(eps)`` before a division, ``clamp(0, 6)`` inside a hand-written hard-swish) are not activations and
keep their gradient silently. Two ways, the same rule:

* the model calls ReLU-like *functions* outside those modules (torchvision's DenseNet: ``F.relu(..., inplace=True)``
  in ``forward``): a ``torch.overrides.TorchFunctionMode``, active during that forward pass only, intercepts every
  torch call (correct everywhere, but each torch call pays a Python round trip);
* otherwise (ResNet, MobileNet, EfficientNet-Lite, ...): temporary hooks on the activation modules only, removed
  after the pass, also after an exception: the module runs its own clamp on a detached input and a node with the
  rule's backward is attached to its output (:class:`_RuleOnOutput`), so the forward pass costs what it costs
  without camlab.

Which applies is found once per model, during its first call (which runs the mode and records whether any ReLU-like
function ran outside an activation module), and remembered for as long as the model object lives.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from camlab.maps import upsample
from camlab.methods._backward_rules import rule_applied
from camlab.methods.base import InputMethod, register
from camlab.methods.gradient import GradCAM
from camlab.targets import Target

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
        mode = rule_applied(self.model, self.rule)
        gradient = self.input_gradient(x, target, mode)
        if mode.plain:
            warnings.warn(
                f"{type(self).__name__}: {', '.join(sorted(mode.plain))} in {type(self.model).__name__} "
                f"keep their plain gradient; the {self.rule} rule applies only to ReLU, ReLU6, hardtanh, "
                "threshold(0, 0) and clamp(min=0) run from Python (not inside TorchScript)",
                stacklevel=3,
            )
        return gradient


@register("deconvnet")
class Deconvnet(Gradient):
    r"""Deconvnet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    https://arxiv.org/abs/1311.2901), as a backward rule: at every ReLU the backward signal is rectified,
    :math:`R_l = \mathrm{ReLU}(R_{l+1})`, whatever the forward input was (the plain gradient would be
    :math:`R_{l+1} \cdot [x > 0]`). Applied to ReLU, ReLU6, hardtanh, ``threshold(0, 0)`` and ``clamp(min=0)``,
    module or functional (warns once per call, naming them, when other activations such as SiLU or GELU, or ReLUs
    inside TorchScript submodules, keep their plain gradient; see the module docstring). Same rule as Captum's
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
    functional calls inside ``forward`` (``F.relu(..., inplace=True)`` in torchvision's DenseNet): by a
    ``TorchFunctionMode`` for models with such functional calls, by temporary hooks on the activation modules
    otherwise (see the module docstring); nothing in the model is swapped. Captum's
    ``GuidedBackprop`` and pytorch-grad-cam's ``GuidedBackpropReLUModel`` rewrite only ``nn.ReLU`` modules, so they
    silently give plain gradients through ReLU6 and functional ReLUs. ``threshold(x, 0, 0)`` and ``clamp(x, min=0)``
    are ReLUs and get the rule too. Other activations (SiLU, GELU, Hardswish, ...) and ReLUs inside TorchScript
    submodules keep their plain gradient, with one warning per call naming them; a TorchScript model is refused.

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

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, reshape_transform=None):
        super().__init__(model)
        self.gradcam = GradCAM(model, layer, reshape_transform=reshape_transform)
        self.guided = GuidedBackprop(model)
        self.layer_name, self.layer = self.gradcam.layer_name, self.gradcam.layer

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        heatmap = self.gradcam(x, target=target)
        guided = self.guided.compute(x, target)
        return guided * upsample(heatmap, tuple(x.shape[-2:]))[:, None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={self.layer_name!r})"
