"""Gradient-free layer methods of pytorch-grad-cam 1.5.7 that read only the activations: KPCA-CAM (kernel PCA of the
positions) and FEM (channels weighted by how often they fire far above their mean). Neither reads the target."""
from __future__ import annotations

import torch
from torch import nn

from camlab.maps import spatial_dims
from camlab.methods._projection import KERNELS, kernel_first_component
from camlab.methods.base import ForwardPass, LayerMethod, register


@register("kpcacam")
class KPCACAM(LayerMethod):
    r"""KPCA-CAM (Karmani, Sivakaran, Prasad, Ali, Yang & Tang, "KPCA-CAM: Visual Explainability of Deep Computer
    Vision Models using Kernel PCA", IEEE MMSP 2024, https://arxiv.org/abs/2410.00267; its code is pytorch-grad-cam's
    ``KPCA_CAM``). Eigen-CAM with kernel PCA (Schölkopf, Smola & Müller 1998) in place of PCA: each position's
    (K,) activation vector, centred per channel over the positions, is a sample; the map is every position's score on
    the first kernel principal component,

    .. math::
        \tilde K \alpha = \lambda_1 \alpha, \qquad L = \mathrm{ReLU}\big(\sqrt{\lambda_1}\, \alpha\big)

    with :math:`\tilde K` the feature-space-centred kernel matrix of the positions
    (:func:`camlab.methods._projection.kernel_first_component`). ``kernel``: ``"sigmoid"`` (default, as the peer:
    :math:`\tanh(\gamma x^\top y + 1)`), ``"rbf"``, ``"poly"``, ``"linear"`` (= centred PCA) or ``"cosine"``;
    ``gamma=None`` is :math:`1/K` (sklearn's default). The eigendecomposition is exact (``torch.linalg.eigh`` in
    float64, no scikit-learn). Sign: the component is flipped to correlate positively with the channel sum of the
    activations, the rule of :class:`camlab.EigenCAM`; pytorch-grad-cam (scikit-learn's ``svd_flip``) makes the
    position with the largest magnitude positive instead, so where the two rules disagree its map is the inverse of
    camlab's (pinned by a test). The target is ignored. ``eigen_smooth`` is implied (accepted, changes nothing).
    """

    uses_gradients = False
    uses_target = False
    principal = True

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False, kernel: str = "sigmoid",
                 gamma: float | None = None):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}")
        if gamma is not None and not gamma > 0:
            raise ValueError(f"gamma must be positive (or None for 1/channels), got {gamma!r}")
        self.kernel, self.gamma = kernel, gamma

    def layer_map(self, forward: ForwardPass) -> torch.Tensor:
        return kernel_first_component(forward.activations, self.kernel, self.gamma)


@register("fem")
class FEM(LayerMethod):
    r"""FEM, the feature explanation method (Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, "Features
    Understanding in 3D CNNs for Actions Recognition in Video", IPTA 2020, https://hal.science/hal-02963298; as
    pytorch-grad-cam's ``FEM``). A channel counts by how much of the layer it fires strongly in, by the k-sigma rule:

    .. math::
        w_k = \frac{1}{Z}\sum_{ij} \mathbb 1\big[A^k_{ij} > \mu_k + k\,\sigma_k\big], \qquad
        L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    with :math:`\mu_k`, :math:`\sigma_k` the mean and the (population) standard deviation of channel :math:`k` over
    its positions and ``k`` = 2. No gradients; the target is ignored. Same formula as pytorch-grad-cam.
    """

    uses_gradients = False
    uses_target = False
    volumetric = True

    def __init__(self, model: nn.Module, layer=None, *, relu: bool = True, reshape_transform=None,
                 aug_smooth: bool = False, eigen_smooth: bool = False, k: float = 2.0):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform, aug_smooth=aug_smooth,
                         eigen_smooth=eigen_smooth)
        self.k = float(k)

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        activations = forward.activations
        dims = spatial_dims(activations)
        mean = activations.mean(dim=dims, keepdim=True)
        std = activations.std(dim=dims, keepdim=True, unbiased=False)
        return (activations > mean + self.k * std).to(activations.dtype).mean(dim=dims)
