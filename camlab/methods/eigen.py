"""Eigen-CAM: the first principal component of the layer's activations; no gradients, no target."""
from __future__ import annotations

import torch

from camlab.methods.base import ForwardPass, LayerMethod, register


@register("eigencam")
class EigenCAM(LayerMethod):
    r"""Eigen-CAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020,
    https://arxiv.org/abs/2008.00299).

    With :math:`O` the (hw x K) matrix of the layer's activations (one row per position) and its SVD
    :math:`O = U \Sigma V^\top`, the map is the projection on the first right singular vector,

    .. math:: L = \mathrm{ReLU}(O\, v_1) = \mathrm{ReLU}\Big(\sum_k v_{1k} A^k\Big),

    i.e. channel weights :math:`w = v_1`. As in the paper's formula :math:`O` is *not* centred (pytorch-grad-cam
    subtracts the per-channel mean before the SVD, which shifts its map by a constant and changes :math:`v_1`).
    Sign convention: an SVD's singular vectors are defined only up to sign, so :math:`v_1` is flipped if needed to
    make the projection correlate positively with the channel-mean activation map,
    :math:`\langle O v_1, O \mathbf{1}/K \rangle \ge 0` (ties: :math:`\sum_k v_{1k} \ge 0`): the map never flips at
    random. The map does not depend on ``target``, which is ignored (Eigen-CAM is not class-discriminative): the
    model's output is never read, so it may be anything (a detector's list of dicts, a dict, ...). For a 3-D input
    the rows of :math:`O` are the (d x h x w) positions.
    """

    uses_gradients = False
    uses_target = False
    volumetric = True
    principal = True  # eigen_smooth is implied: the map already is the first principal component

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        activations = forward.activations
        matrix = activations.flatten(2).transpose(1, 2).double()  # (N, hw, K)
        _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
        first = vh[:, 0, :]  # (N, K)
        projection = torch.einsum("npk,nk->np", matrix, first)
        agreement = (projection * matrix.mean(dim=2)).sum(dim=1)
        tie = agreement == 0
        agreement = torch.where(tie, first.sum(dim=1), agreement)
        sign = torch.where(agreement < 0, -1.0, 1.0).to(first.dtype)
        return (first * sign[:, None]).to(activations.dtype)
