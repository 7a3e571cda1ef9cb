"""Seg-Eigen-CAM: Eigen-CAM on gradient-weighted activations, with a sign rule for the principal component."""
from __future__ import annotations

import torch

from camlab.methods.base import ForwardPass, LayerMethod, register


@register("segeigencam")
class SegEigenCAM(LayerMethod):
    r"""Seg-Eigen-CAM (Chung & Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation
    Models", Applied Sciences 15(13) 7562, 2025, https://doi.org/10.3390/app15137562).

    The activations are weighted element-wise by the absolute gradient of the target score (Eq. 10),
    :math:`\tilde A^k = |\partial y^c / \partial A^k| \odot A^k`; with :math:`\tilde O` the (hw x K) matrix of
    :math:`\tilde A` (one row per position) centred per channel, :math:`\tilde O - \mathbf 1 \bar o^\top`, and
    :math:`v_1` its first right singular vector (Eq. 11-12), the map is the projection

    .. math:: p = (\tilde O - \mathbf 1 \bar o^\top)\, v_1, \qquad
              L = \mathrm{ReLU}\big(s\, p\big), \quad s = -1 \text{ if } |\min p| > |\max p| \text{ else } 1

    (Eq. 13: the sign of a singular vector is arbitrary, so the map is flipped when its largest magnitude is
    negative; ties keep the sign). Unlike :class:`~camlab.methods.eigen.EigenCAM`, the map is class-dependent. The
    centring and the sign rule are those of pytorch-grad-cam's ``SegEigenCAM`` (same formula; camlab runs the SVD in
    float64 and batched, one per image). ``layer_map`` is the one step overridden.
    """

    volumetric = True

    def layer_map(self, forward: ForwardPass) -> torch.Tensor:
        weighted = (forward.gradients.abs() * forward.activations).double()
        matrix = weighted.flatten(2).transpose(1, 2)  # (N, positions, K)
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
        projection = torch.einsum("npk,nk->np", matrix, vh[:, 0, :])
        flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
        projection = torch.where(flip[:, None], -projection, projection)
        return projection.reshape(weighted.shape[:1] + weighted.shape[2:]).to(forward.activations.dtype)
