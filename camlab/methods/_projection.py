r"""Projections of a layer's (weighted) activations on their first (kernel) principal component, with a fixed sign.

Shared by ``eigen_smooth`` (every layer method, :meth:`camlab.methods.base.LayerMethod.layer_map`), Eigen-Grad-CAM
and KPCA-CAM. A layer's (N,K,h,w) tensor is read as N matrices :math:`O` of shape (positions x channels), one row
per position, centred per channel over the positions as principal component analysis does (and pytorch-grad-cam's
``get_2d_projection``; :class:`camlab.EigenCAM` alone follows its paper's uncentred formula). An SVD's or
eigendecomposition's vectors are defined only up to sign, so every projection here is flipped, if needed, to
correlate positively with the channel sum of the uncentred :math:`O` (the map the channels add up to; ties: the
direction's entries sum to >= 0), the rule of :class:`camlab.EigenCAM`: the map never flips at random (the peer keeps
whatever sign numpy's SVD returns).
"""
from __future__ import annotations

import torch

#: kernels of :func:`kernel_first_component`, with sklearn's ``KernelPCA`` defaults (``degree=3``, ``coef0=1``)
KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


def _signs(projection: torch.Tensor, reference: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
    """(N,) +1 or -1: the sign that makes ``projection`` (N,P) correlate positively with ``reference`` (N,P);
    ``tie`` (N,) decides where the correlation is exactly 0."""
    agreement = (projection * reference).sum(dim=1)
    agreement = torch.where(agreement == 0, tie, agreement)
    return torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)


def as_matrix(activations: torch.Tensor) -> torch.Tensor:
    """(N,K,*spatial) -> (N,P,K) in float64: one row per position (P = h*w, or d*h*w for a volume)."""
    return activations.flatten(2).transpose(1, 2).double()


def first_component(weighted: torch.Tensor) -> torch.Tensor:
    r"""(N,*spatial) the first principal component score of every position: the projection
    :math:`(O - \bar O)\, v_1` of the (N,K,*spatial) ``weighted`` activations, centred per channel over the positions,
    on the first right singular vector :math:`v_1` of :math:`O - \bar O` (sign-fixed against the channel sum of
    :math:`O`), in ``weighted``'s dtype."""
    matrix = as_matrix(weighted)
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    first = vh[:, 0, :]
    projection = torch.einsum("npk,nk->np", centred, first)
    projection = projection * _signs(projection, matrix.sum(dim=2), first.sum(dim=1))[:, None]
    return projection.reshape(weighted.shape[0], *weighted.shape[2:]).to(weighted.dtype)


def kernel_matrix(points: torch.Tensor, kernel: str, gamma: float) -> torch.Tensor:
    """(N,P,P) the kernel between the rows of (N,P,K) ``points``, with sklearn's parameters: ``linear``
    :math:`x^\\top y`, ``poly`` :math:`(\\gamma x^\\top y + 1)^3`, ``rbf`` :math:`\\exp(-\\gamma \\|x-y\\|^2)`,
    ``sigmoid`` :math:`\\tanh(\\gamma x^\\top y + 1)`, ``cosine`` :math:`x^\\top y / (\\|x\\| \\|y\\|)` (0 for a zero row)."""
    gram = points @ points.transpose(1, 2)
    if kernel == "linear":
        return gram
    if kernel == "poly":
        return (gamma * gram + 1).pow(3)
    if kernel == "sigmoid":
        return torch.tanh(gamma * gram + 1)
    if kernel == "rbf":
        squared = points.pow(2).sum(dim=2)
        return torch.exp(-gamma * (squared[:, :, None] + squared[:, None, :] - 2 * gram).clamp_min(0))
    if kernel == "cosine":
        norms = points.norm(dim=2)
        denominator = norms[:, :, None] * norms[:, None, :]
        return torch.where(denominator > 0, gram / torch.where(denominator > 0, denominator, 1.0), 0.0)
    raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}")


def kernel_first_component(activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None
                           ) -> torch.Tensor:
    r"""(N,*spatial) the first kernel principal component score of every position (Schölkopf et al. 1998).

    With :math:`X` the (P x K) activations centred per channel over the positions, :math:`K_{ij} = k(x_i, x_j)`,
    :math:`\tilde K = K - \mathbf{1}_P K - K \mathbf{1}_P + \mathbf{1}_P K \mathbf{1}_P` (centred in feature space;
    :math:`\mathbf{1}_P` the P x P matrix of 1/P) and :math:`\tilde K \alpha = \lambda \alpha`, :math:`\|\alpha\| = 1`
    for the largest :math:`\lambda`, position i's score is :math:`(\tilde K \alpha)_i / \sqrt{\lambda} =
    \sqrt{\lambda}\, \alpha_i` (sklearn's ``KernelPCA.fit_transform``). ``gamma=None`` is :math:`1/K`. Sign-fixed
    to correlate with the channel sum of the uncentred activations."""
    matrix = as_matrix(activations)
    n, positions, channels = matrix.shape
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    gram = kernel_matrix(centred, kernel, 1.0 / channels if gamma is None else float(gamma))
    gram = (gram - gram.mean(dim=1, keepdim=True) - gram.mean(dim=2, keepdim=True)
            + gram.mean(dim=(1, 2), keepdim=True))
    eigenvalues, eigenvectors = torch.linalg.eigh((gram + gram.transpose(1, 2)) / 2)
    largest, alpha = eigenvalues[:, -1].clamp_min(0), eigenvectors[:, :, -1]
    scores = alpha * largest.sqrt()[:, None]
    scores = scores * _signs(scores, matrix.sum(dim=2), alpha.sum(dim=1))[:, None]
    return scores.reshape(n, *activations.shape[2:]).to(activations.dtype)
