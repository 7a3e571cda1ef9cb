r"""Noisy linear imputation (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022, Sec. 4): the removal operator of ROAD (:mod:`camlab.metrics.road`).

Every removed pixel :math:`p` takes the weighted mean of its (up to eight) neighbours :math:`q` inside the image,
removed or not, with weight :math:`w = 1/6` for the four direct neighbours and :math:`1/12` for the four diagonal
ones:

.. math:: \sum_{q \in N(p)} w_{pq}\, (x_p - x_q) = 0 \quad\text{for every removed } p.

The removed pixels :math:`R` are solved jointly, per channel: with :math:`K` the kept pixels this is the sparse
symmetric positive definite system :math:`(D_R - W_{RR})\, x_R = W_{RK}\, x_K`, :math:`D` the diagonal of the
weight sums (a graph Laplacian restricted to :math:`R`; positive definite because every connected group of removed
pixels touches a kept one, unless every pixel is removed, which is refused). Afterwards
:math:`x_p \leftarrow x_p + \sigma\,\varepsilon_p`, :math:`\varepsilon_p \sim \mathcal N(0, 1)`, so that the imputed
pixels carry no exactly linear pattern a model could detect (the paper's "noisy" imputation; :math:`\sigma = 0.01`
in its code and in pytorch-grad-cam's ``NoisyLinearImputer``, in the units of the tensor given).

The system is assembled vectorised (no per-pixel Python loop), its unknowns numbered in nested-dissection order
(:func:`nested_dissection`: a fill-reducing order for grids, about 20% faster than SuperLU's minimum-degree orderings
on 224x224 masks), and solved by one sparse LU factorisation (SuperLU through :func:`scipy.sparse.linalg.splu`,
symmetric mode, no pivoting: the matrix is symmetric positive definite) for all channels at once, in float64.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

#: (row offset, column offset, weight) of the eight neighbours (the paper's weights: 1/6 direct, 1/12 diagonal)
NEIGHBOUR_WEIGHTS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
                     (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


def nested_dissection(rows: np.ndarray, cols: np.ndarray, leaf: int = 64) -> np.ndarray:
    """An elimination order of pixels at (``rows``, ``cols``) (George's nested dissection): the middle row or column
    of the pixels' bounding box (the longer side) separates the rest into two halves with no neighbour in common
    (even diagonally); each half is ordered the same way, first, and the separator last. Groups of at most ``leaf``
    pixels keep their order. Returns a permutation of ``range(len(rows))``."""
    order: list[np.ndarray] = []

    def dissect(ids: np.ndarray) -> None:
        if ids.size <= leaf:
            order.append(ids)
            return
        row, col = rows[ids], cols[ids]
        key = row if np.ptp(row) >= np.ptp(col) else col
        middle = (int(key.min()) + int(key.max())) // 2
        dissect(ids[key < middle])
        dissect(ids[key > middle])
        order.append(ids[key == middle])

    dissect(np.arange(rows.size))
    return np.concatenate(order) if order else np.arange(0)


def imputation_system(removed: np.ndarray, image: np.ndarray) -> tuple[sparse.csc_matrix, np.ndarray, np.ndarray]:
    """The linear system of the removed pixels of one image.

    Args:
        removed: (H,W) boolean, True where a pixel is removed.
        image: (C,H,W) float64 values (those of removed pixels are ignored).

    Returns:
        ``(A, b, index)``: the (m,m) matrix :math:`D_R - W_{RR}`, the (m,C) right-hand side :math:`W_{RK} x_K` and the
        (m,) flat indices of the removed pixels, in :func:`nested_dissection` order (row ``i`` of ``A`` is pixel
        ``index[i]``).
    """
    height, width = removed.shape
    flat = removed.reshape(-1)
    index = np.flatnonzero(flat)
    rows, cols = np.divmod(index, width)
    order = nested_dissection(rows, cols)
    index, rows, cols = index[order], rows[order], cols[order]
    count = index.size
    variable = np.full(flat.size, -1, dtype=np.int64)
    variable[index] = np.arange(count)
    values = image.reshape(image.shape[0], -1)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, image.shape[0]))
    entries_row, entries_col, entries_value = [np.arange(count)], [np.arange(count)], []
    for d_row, d_col, weight in NEIGHBOUR_WEIGHTS:
        row, col = rows + d_row, cols + d_col
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        equation = np.flatnonzero(inside)
        neighbour = row[inside] * width + col[inside]
        diagonal[equation] += weight
        unknown = flat[neighbour]
        entries_row.append(equation[unknown])
        entries_col.append(variable[neighbour[unknown]])
        entries_value.append(np.full(int(unknown.sum()), -weight))
        rhs[equation[~unknown]] += weight * values[:, neighbour[~unknown]].T
    entries_value.insert(0, diagonal)
    matrix = sparse.csc_matrix((np.concatenate(entries_value), (np.concatenate(entries_row),
                                                                np.concatenate(entries_col))), shape=(count, count))
    return matrix, rhs, index


def linear_imputation(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """(C,H,W) ``image`` with the pixels where the (H,W) boolean ``removed`` is True replaced by the solution of the
    neighbour-mean system (module docstring), without noise; kept pixels are returned unchanged. Same dtype and
    device as ``image``."""
    if image.ndim != 3 or tuple(removed.shape) != tuple(image.shape[1:]):
        raise ValueError(f"linear_imputation needs a (C,H,W) image and an (H,W) mask, got {tuple(image.shape)} and "
                         f"{tuple(removed.shape)}")
    mask = removed.detach().cpu().numpy().astype(bool)
    if mask.all():
        raise ValueError(f"all {mask.size} pixels are removed, so there is nothing to impute them from; remove a "
                         "smaller share of the pixels")
    out = image.detach().clone()
    if not mask.any():
        return out
    matrix, rhs, index = imputation_system(mask, image.detach().cpu().double().numpy())
    solved = splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True}).solve(rhs)
    flat = out.view(out.shape[0], -1) if out.is_contiguous() else out.reshape(out.shape[0], -1)
    flat[:, torch.from_numpy(index).to(out.device)] = torch.from_numpy(solved.T).to(out)
    return flat.view_as(out)


def noisy_linear_imputation(image: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`linear_imputation` plus Gaussian noise of standard deviation ``noise`` on the imputed pixels only
    (drawn on the CPU from ``generator``, so a seeded generator gives the same images everywhere; the global random
    state is untouched when a generator is given)."""
    if not (noise >= 0 and np.isfinite(noise)):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}")
    out = linear_imputation(image, removed)
    if noise == 0:
        return out
    where = removed.to(device=out.device, dtype=torch.bool)
    count = int(where.sum())
    draws = torch.randn(out.shape[0], count, generator=generator, dtype=torch.float64, device="cpu")
    out[:, where] += (noise * draws).to(out)
    return out
