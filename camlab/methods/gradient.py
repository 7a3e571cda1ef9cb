"""Gradient-weighted class activation maps: Grad-CAM and the variants that change only its channel weights."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camlab.maps import safe_divide, spatial_dims, upsample
from camlab.methods.base import ForwardPass, LayerMethod, register


class GradientMethod(LayerMethod):
    """A layer method whose weights come from the activations and the gradients of the target score with respect to
    them; subclasses define ``channel_weights(activations, gradients)``. Every gradient method explains 3-D inputs
    too: its sums and means run over all spatial dimensions, (h,w) or (d,h,w) (:func:`camlab.maps.spatial_dims`)."""

    volumetric = True

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        return self.channel_weights(forward.activations, forward.gradients)

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register("gradcam")
class GradCAM(GradientMethod):
    r"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017, https://arxiv.org/abs/1610.02391).

    .. math::
        \alpha_k^c = \frac{1}{Z}\sum_{i}\sum_{j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
        L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)

    The gradient is taken with ``torch.autograd.grad`` with respect to the captured activation only: no parameter
    gradients, and no graph below the layer. On a GAP + linear head at the last layer
    :math:`\alpha^c_k = w^c_k / Z`, so Grad-CAM equals ReLU(CAM) / Z.
    """

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return gradients.mean(dim=spatial_dims(gradients))


def gradcam_plus_plus_weights(activations: torch.Tensor, gradients_1: torch.Tensor, gradients_2: torch.Tensor,
                              gradients_3: torch.Tensor) -> torch.Tensor:
    r"""Grad-CAM++'s channel weights from the first, second and third powers of the gradient (or their averages,
    for Smooth Grad-CAM++): :math:`w_k = \sum_{ij} \alpha^k_{ij}\,\mathrm{ReLU}(g^1_{ij})` with
    :math:`\alpha^k_{ij} = g^2_{ij} / (2 g^2_{ij} + \sum_{ab} A^k_{ab}\, g^3_{ij})`, and
    :math:`\alpha = 0` where the denominator is 0."""
    dims = spatial_dims(activations)
    activation_sums = activations.sum(dim=dims, keepdim=True)
    alpha = safe_divide(gradients_2, 2 * gradients_2 + activation_sums * gradients_3)
    return (alpha * gradients_1.clamp_min(0)).sum(dim=dims)


@register("gradcam++")
class GradCAMPlusPlus(GradientMethod):
    r"""Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018, https://arxiv.org/abs/1710.11063).

    The closed form of the paper's Eq. 19, which assumes an exponential output :math:`Y^c = \exp(S^c)` so that the
    second and third derivatives are powers of the first, :math:`g = \partial S^c / \partial A^k_{ij}`:

    .. math::
        \alpha^{kc}_{ij} = \frac{g_{ij}^2}{2 g_{ij}^2 + \sum_{ab} A^k_{ab}\, g_{ij}^3}, \qquad
        w^c_k = \sum_{ij} \alpha^{kc}_{ij}\, \mathrm{ReLU}(g_{ij}), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)

    Positions where the denominator is 0 (zero gradient) get :math:`\alpha = 0`. pytorch-grad-cam implements the
    same formula (with an ``eps`` of 1e-6 added to the denominator); torchcam sums :math:`A_{ab}\, g_{ab}^3` over
    the positions instead of multiplying :math:`\sum_{ab} A_{ab}` by :math:`g_{ij}^3`, which is not the paper's Eq. 19.
    Multiple instances of a class get a larger share of the weight than with Grad-CAM's plain gradient average.
    """

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        squared = gradients.pow(2)
        return gradcam_plus_plus_weights(activations, gradients, squared, squared * gradients)


@register("xgradcam")
class XGradCAM(GradientMethod):
    r"""XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    BMVC 2020, https://arxiv.org/abs/2008.02312).

    .. math::
        w_k^c = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}}\, \frac{\partial y^c}{\partial A^k_{ij}}

    The gradient is averaged with the activation's own spatial distribution as weights instead of uniformly. A
    channel whose activations sum to 0 gets weight 0 (pytorch-grad-cam adds 1e-7 to the sum instead). On a layer
    followed only by GAP and a linear layer the gradient is spatially constant, so XGrad-CAM equals Grad-CAM up to
    scale.
    """

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        dims = spatial_dims(activations)
        total = activations.sum(dim=dims, keepdim=True)
        return safe_divide(activations * gradients, total).sum(dim=dims)


@register("hirescam")
class HiResCAM(GradientMethod):
    r"""HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
    neural networks", 2020, https://arxiv.org/abs/2011.08891).

    .. math:: L^c = \mathrm{ReLU}\Big(\sum_k \frac{\partial y^c}{\partial A^k} \odot A^k\Big)

    Per-position weights: the gradient itself instead of its spatial mean, so ``weights`` is (N,K,h,w). When the
    gradient is spatially constant (a layer followed by GAP + linear) the mean is the gradient itself, so HiResCAM
    equals Grad-CAM.
    Same formula as pytorch-grad-cam's ``HiResCAM``.
    """

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        return forward.gradients


def _max_normalise(maps: torch.Tensor) -> torch.Tensor:
    peak = maps.flatten(1).amax(dim=1).clamp_min(0)
    return safe_divide(maps, peak.view(-1, *[1] * (maps.ndim - 1)))


@register("layercam")
class LayerCAM(GradientMethod):
    r"""LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943).

    Per-position weights, the positive part of the gradient:

    .. math:: L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\Big(\frac{\partial y^c}{\partial A^k}\Big) \odot A^k\Big)

    ``layer`` may be a list of layers: then each layer's map :math:`M_l` is computed in the same forward and backward
    pass; the maps of the shallower layers (all but the one that runs last) are scaled as in the paper,
    :math:`\hat M_l = \tanh(\gamma M_l / \max M_l)` with :math:`\gamma` = ``gamma`` = 2, the deepest map is
    divided by its maximum, all are upsampled bilinearly to the resolution of the largest layer, and fused by the
    element-wise maximum. ``raw=True`` returns that fused map at the largest layer's resolution. torchcam fuses the
    same way but applies the tanh scaling to every layer, the deepest included; pytorch-grad-cam averages the
    min-max scaled maps of the layers instead.
    """

    multi_layer = True

    def __init__(self, model: nn.Module, layer: str | nn.Module | Sequence | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False, gamma: float = 2.0):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.gamma = gamma

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        return forward.gradients.clamp_min(0)

    def fuse(self, maps: list[torch.Tensor], forward: ForwardPass) -> torch.Tensor:
        deepest = forward.order[-1]
        size = max((tuple(m.shape[1:]) for m in maps), key=lambda spatial: torch.Size(spatial).numel())
        fused = None
        for index, layer_map in enumerate(maps):
            normalised = _max_normalise(layer_map.clamp_min(0))
            scaled = normalised if index == deepest else torch.tanh(self.gamma * normalised)
            scaled = upsample(scaled, size)
            fused = scaled if fused is None else torch.maximum(fused, scaled)
        return fused


@register("smoothgradcam++")
class SmoothGradCAMPlusPlus(GradientMethod):
    r"""Smooth Grad-CAM++ (Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique
    for Deep Convolutional Neural Network Models", 2019, https://arxiv.org/abs/1908.01224).

    Grad-CAM++ with the gradient terms averaged over ``n_samples`` noisy copies of the input
    :math:`x + \epsilon_s`, :math:`\epsilon_s \sim \mathcal N(0, \sigma^2)`, SmoothGrad style:

    .. math::
        \alpha^{kc}_{ij} = \frac{\overline{g^2}_{ij}}{2\overline{g^2}_{ij} + \sum_{ab} A^k_{ab}\,\overline{g^3}_{ij}},
        \qquad w^c_k = \sum_{ij} \alpha^{kc}_{ij}\, \overline{\mathrm{ReLU}(g)}_{ij}

    with :math:`\overline{\cdot}` the mean over the noisy samples and :math:`A` the activations of the clean
    input. :math:`\sigma` = ``noise_std`` times each image's value range (max - min), as SmoothGrad (0.15 by
    default). The noise comes from a local ``torch.Generator`` seeded with ``seed``: the global RNG is never touched,
    and the same call gives the same map. A ``None`` target is resolved to the clean input's top-1 class, so all
    samples explain the same class. torchcam's ``SmoothGradCAMpp`` uses an absolute std (0.3), its own Grad-CAM++
    denominator (see :class:`GradCAMPlusPlus`) and the clean input's ReLU(g) in the weight.
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False, n_samples: int = 8, noise_std: float = 0.15, seed: int = 0):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        self.n_samples, self.noise_std, self.seed = n_samples, noise_std, seed

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        x = forward.inputs.detach()
        target = forward.fixed_target()
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        value_range = (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)).view(-1, *[1] * (x.ndim - 1))
        sum_1 = torch.zeros_like(forward.activations)
        sum_2, sum_3 = torch.zeros_like(sum_1), torch.zeros_like(sum_1)
        for _ in range(self.n_samples):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noisy = self.forward_pass(x + noise * self.noise_std * value_range, target)
            gradients = noisy.gradients
            sum_1 += gradients.clamp_min(0)
            sum_2 += gradients.pow(2)
            sum_3 += gradients.pow(3)
        n = self.n_samples
        return gradcam_plus_plus_weights(forward.activations, sum_1 / n, sum_2 / n, sum_3 / n)
