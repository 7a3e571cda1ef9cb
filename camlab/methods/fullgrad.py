"""FullGrad: the input-gradient and every convolutional bias-gradient of the network, summed as maps."""
from __future__ import annotations

import torch
from torch import nn

from camlab.hooks import add_forward_hooks, remove_hooks
from camlab.maps import safe_divide, upsample
from camlab.methods.base import Explainer, register
from camlab.targets import Target, scores

_PLAIN_FORWARDS = (nn.Conv2d.forward, nn.BatchNorm2d.forward, nn.modules.batchnorm._BatchNorm.forward)


def _effective_bias(module: nn.Module) -> torch.Tensor | None:
    """The bias a module adds per channel: a convolution's ``bias``; an eval-mode BatchNorm's
    :math:`\\beta - \\gamma \\mu / \\sqrt{\\sigma^2 + \\epsilon}`."""
    if isinstance(module, nn.Conv2d):
        return None if module.bias is None else module.bias.detach()
    if module.running_mean is None:
        raise ValueError(f"FullGrad needs the running statistics of {type(module).__name__} to read its bias; this "
                         "one has track_running_stats=False")
    weight = torch.ones_like(module.running_mean) if module.weight is None else module.weight.detach()
    shift = torch.zeros_like(module.running_mean) if module.bias is None else module.bias.detach()
    return shift - weight * module.running_mean / torch.sqrt(module.running_var + module.eps)


def bias_sites(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    """``(module whose output is the biased tensor, per-channel bias)`` for every 2-D convolution with a bias and
    every BatchNorm2d of ``model``. A timm norm + activation layer (``BatchNormAct2d``: BatchNorm, then ``drop``,
    then ``act``) is read at the output of its ``drop`` step, which is the BatchNorm's output; any other BatchNorm
    subclass with a forward of its own is refused (where its bias enters cannot be known)."""
    sites = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            continue
        bias = _effective_bias(module)
        if bias is None:
            continue
        if type(module).forward in _PLAIN_FORWARDS:
            sites.append((module, bias))
        elif isinstance(getattr(module, "drop", None), nn.Module) and hasattr(module, "act"):
            sites.append((module.drop, bias))
        else:
            raise ValueError(f"FullGrad cannot tell where the bias of {name!r} ({type(module).__name__}, a "
                             "BatchNorm with its own forward) enters; it reads Conv2d, BatchNorm2d and timm's "
                             "BatchNormAct2d")
    return sites


def _psi(tensor: torch.Tensor) -> torch.Tensor:
    r"""The paper's post-processing :math:`\psi` before upsampling, for the input-gradient term: absolute value, then
    min-max scaling to [0, 1] per image over all its channels; a flat map gives 0."""
    flat = tensor.abs().flatten(1)
    low = flat.amin(dim=-1, keepdim=True)
    scaled = safe_divide(flat - low, flat.amax(dim=-1, keepdim=True) - low)
    return scaled.reshape(tensor.shape)


def _scaled_channel_sum(tensor: torch.Tensor) -> torch.Tensor:
    r"""(N,h,w) :math:`\sum_c \psi(t_c)` of an (N,C,h,w) tensor with :math:`\psi` (absolute value, min-max scaling
    to [0, 1]; 0 for a flat channel) per image and channel, computed without materialising the scaled tensor:
    with :math:`a = |t|` and :math:`l_c, u_c` its minimum and maximum, :math:`\sum_c (a_c - l_c) / (u_c - l_c) =
    \sum_c w_c a_c - \sum_c w_c l_c`, :math:`w_c = 1 / (u_c - l_c)` (0 for a flat channel): one pass for the
    extremes and one weighted channel sum, where the scaled tensor took five."""
    magnitude = tensor.abs().to(torch.promote_types(tensor.dtype, torch.float32))  # 1 / range overflows float16
    low, high = torch.aminmax(magnitude.flatten(2), dim=-1)
    weights = safe_divide(torch.ones_like(high), high - low)
    summed = torch.einsum("nc...,nc->n...", magnitude, weights) - (weights * low).sum(dim=1).view(
        -1, *([1] * (tensor.ndim - 2)))
    return summed.to(tensor.dtype)


@register("fullgrad")
class FullGrad(Explainer):
    r"""FullGrad (Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization", NeurIPS
    2019, https://arxiv.org/abs/1905.00780). The full-gradient decomposition :math:`f(x) = \nabla_x f(x)^\top x +
    \sum_l \sum_c \langle \nabla_{b} f(x), b \rangle` (Eq. 2-3) gives the saliency map of Eq. 6

    .. math::
        S_f(x) = \psi\big(\nabla_x f(x) \odot x\big) + \sum_{l \in L} \sum_{c \in c_l}
                 \psi\big(f^b(x)_{l,c}\big), \qquad f^b(x)_{l,c} = \nabla_{z_l} f(x)_c \odot b_{l,c}

    with :math:`z_l` the output of a layer that adds the bias :math:`b_l` (every 2-D convolution with a bias and
    every BatchNorm2d, whose eval-mode bias is :math:`\beta - \gamma\mu/\sqrt{\sigma^2+\epsilon}`; see
    :func:`bias_sites`) and :math:`\psi` = absolute value, min-max scaling to [0, 1], bilinear upsampling to the
    input (``align_corners=False``). As the equation (and the authors' code, github.com/idiap/fullgrad-saliency)
    writes it, :math:`\psi` scales each bias-gradient channel on its own and the input-gradient term once over its
    colour channels, which are then summed. Linear layers' biases are left out (the authors' code keeps
    convolutional ones only). The map is at the input's resolution; no layer is chosen.

    Peer: pytorch-grad-cam's ``FullGrad`` also scales each *colour channel* of the input-gradient term on its own
    (a difference of the input term only), adds 1e-7 to each scaling's denominator, and reads exact ``Conv2d`` /
    ``BatchNorm2d`` types only (it skips timm's ``BatchNormAct2d``, so on EfficientNet-Lite it sees no bias at all).
    """

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        sites = bias_sites(self.model)
        recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        handles: list = []

        def hook_for(bias):
            def hook(module, inputs, output):
                recorded.append((output, bias))
                return output.clone()  # in-place ops after the layer cannot touch the recorded tensor
            return hook

        with torch.inference_mode(False), torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            add_forward_hooks(handles, ((module, hook_for(bias)) for module, bias in sites))
            try:
                output = self.model(inputs)
            finally:
                remove_hooks(handles)
            target_scores = scores(output, target, n=x.shape[0])
            gradients = torch.autograd.grad(target_scores.sum(), [inputs] + [z for z, _ in recorded],
                                            allow_unused=True)
        size = tuple(x.shape[2:])
        saliency = _psi(gradients[0] * inputs.detach()).sum(dim=1)
        by_resolution: dict[tuple[int, ...], torch.Tensor] = {}
        for gradient, (_, bias) in zip(gradients[1:], recorded):
            if gradient is not None:
                layer_map = _scaled_channel_sum(gradient * bias.to(gradient.dtype).view(1, -1, 1, 1))
                resolution = tuple(layer_map.shape[1:])
                by_resolution[resolution] = by_resolution.get(resolution, 0) + layer_map
        # bilinear upsampling is linear: the layers of one resolution are summed first and upsampled once
        for layer_maps in by_resolution.values():
            saliency = saliency + upsample(layer_maps, size)
        return saliency
