"""Gradient-weighted class activation maps: Grad-CAM and the variants that change only its channel weights."""
from __future__ import annotations

import torch

from camlab.methods.base import ForwardPass, LayerMethod, register


class GradientMethod(LayerMethod):
    """A layer method whose weights come from the activations and the gradients of the target score with respect to
    them; subclasses define ``channel_weights(activations, gradients)``."""

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
        return gradients.mean(dim=(2, 3))
