"""Deep Feature Factorization: concepts of a layer by non-negative matrix factorisation of its activations.

camlab factorises with its own :func:`nmf` in torch rather than scikit-learn's ``NMF`` (which pytorch-grad-cam
uses): no new runtime dependency, the same device as the model (GPU included), and a seeded ``torch.Generator``
for the initialisation (the global RNG is never touched). The algorithm is scikit-learn's default solver
(coordinate descent on the Frobenius loss, i.e. HALS, with the same update order and stopping rule), so from the same
initial factors the two give the same factors (checked in ``tests/test_methods_peers_score_family.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camlab.maps import scale, upsample
from camlab.methods.base import LayerMethod
from camlab.targets import Target


def _coordinate_pass(data: torch.Tensor, factor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """One sweep of coordinate descent on ``factor`` (k,a) for ``data`` (b,a) ~ ``other.T @ factor`` (``other``
    (k,b)), one component (row of ``factor``) after the other, each updated in place by its exact non-negative
    minimiser; returns the sweep's projected-gradient violation (the stopping measure).

    Laid out for speed (the loop is short, so per-operation overhead counts): factors are stored one row per
    component, so every product is a short-and-wide matrix times a contiguous one (about 3x faster than the
    tall-and-skinny orientation here) and every update touches a contiguous row; each row's gradient is kept, and the
    violation is summed once per sweep instead of once per component."""
    gram = other @ other.T
    gradients = other @ data
    at_zero = factor == 0  # a row is changed only at its own turn, so its mask can be taken before the sweep
    diagonal = gram.diagonal()
    for t, hessian in enumerate(diagonal.tolist()):
        row, gradient = factor[t], gradients[t]
        gradient.addmv_(factor.T, gram[t], beta=-1)
        if hessian != 0:
            row.sub_(gradient / diagonal[t]).clamp_min_(0)
    return torch.where(at_zero, gradients.clamp_max(0), gradients).abs_().sum()


def nmf(data: torch.Tensor, n_components: int, *, seed: int = 0, max_iter: int = 200, tol: float = 1e-4,
        init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Non-negative matrix factorisation :math:`X \approx W H`, :math:`W, H \ge 0`, minimising
    :math:`\|X - WH\|_F^2` by coordinate descent (HALS: Cichocki & Phan 2009; scikit-learn's ``solver="cd"``): each
    iteration updates every column of :math:`W`, then every row of :math:`H`, by its exact non-negative least-squares
    minimiser with the others fixed, and stops after ``max_iter`` iterations or when the projected-gradient violation
    falls to ``tol`` times the first iteration's. ``data`` (m,n) must be non-negative and finite.

    Initialisation: ``init`` = ``(W, H)``, or random (scikit-learn's ``init="random"``): :math:`|g|\sqrt{\bar X / k}`
    with :math:`g` standard normal from a ``torch.Generator`` seeded with ``seed``. Returns ``(W, H)``, (m,k) and (k,n).
    """
    if data.ndim != 2 or not torch.isfinite(data).all() or (data < 0).any():
        raise ValueError("nmf needs a finite, non-negative 2-D matrix; shift or clip negative values first")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    rows, columns = data.shape
    if init is None:
        generator = torch.Generator(device=data.device).manual_seed(seed)
        average = torch.sqrt(data.mean() / n_components)
        components = average * torch.randn(n_components, columns, generator=generator, device=data.device,
                                           dtype=data.dtype).abs()
        weights = average * torch.randn(rows, n_components, generator=generator, device=data.device,
                                        dtype=data.dtype).abs()
    else:
        weights, components = (tensor.to(data).clone() for tensor in init)
    weights_by_row, components = weights.T.contiguous(), components.contiguous()
    data, transposed_data = data.contiguous(), data.T.contiguous()
    first = None
    for _ in range(max_iter):
        violation = (_coordinate_pass(transposed_data, weights_by_row, components)
                     + _coordinate_pass(data, components, weights_by_row))
        first = violation if first is None else first
        if first == 0 or violation / first <= tol:
            break
    return weights_by_row.T.contiguous(), components


def nonnegative_shift(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(matrix - offset, offset)`` with ``offset`` (rows,1) the minimum of each row that has a negative value and
    0 for the others: only what NMF cannot take is moved."""
    offset = matrix.amin(dim=1, keepdim=True).clamp_max(0)
    return matrix - offset, offset


@dataclass(frozen=True)
class Concepts:
    """What :class:`DeepFeatureFactorization` finds: ``concepts`` (k,K), each concept's vector in the layer's channel
    space; ``maps`` (N,k,H,W), each concept's map per image, upsampled to the input and scaled to [0, 1];
    ``scores`` (k, classes), the head's output on each concept vector (``None`` without a head);
    ``error``, the relative reconstruction error :math:`\\|X - WH\\|_F / \\|X\\|_F` of the factorisation."""

    concepts: torch.Tensor
    maps: torch.Tensor
    scores: torch.Tensor | None
    error: float


class _Activations(LayerMethod):
    """A layer's (N,K,h,w) activations, read with camlab's layer resolution, layouts and state restoration."""

    uses_gradients = False
    uses_target = False

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return self.forward_pass(x, None).activations


class DeepFeatureFactorization:
    r"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, "Deep Feature Factorization For Concept
    Discovery", ECCV 2018, https://arxiv.org/abs/1806.10206). The activations of ``layer`` for a batch of N images,
    arranged as the matrix :math:`A` (K channels x N·h·w positions), are factorised into ``n_components`` = k
    concepts (Section 3, Eq. 1):

    .. math:: A \approx W H, \qquad W \in \mathbb R_{\ge 0}^{K \times k}, \; H \in \mathbb R_{\ge 0}^{k \times Nhw}

    Row :math:`j` of :math:`H` is concept :math:`j`'s heat map over all images' positions; column :math:`j` of
    :math:`W` is the concept in channel space. A ``head`` (the layers after the pooling, e.g. ``model.fc``) applied to
    each concept vector gives its per-class ``scores`` (pytorch-grad-cam's ``computation_on_concepts``). NMF needs
    :math:`A \ge 0`: a channel with negative values (a layer without ReLU) is shifted by its minimum before the
    factorisation and the shift added back to its concept entries (as pytorch-grad-cam, which however shifts every
    channel by its minimum, positive minima included, changing the factorisation of a post-ReLU layer; camlab
    shifts only channels that need it, so a non-negative layer is factorised as it is, as in the paper).

    ``DeepFeatureFactorization(model, layer)(x)`` returns :class:`Concepts`. Not a registered map method: it explains
    no target, and returns k maps per image. The model's state is restored as after any camlab call.
    """

    def __init__(self, model: nn.Module, layer=None, *, n_components: int = 5, head=None, seed: int = 0,
                 max_iter: int = 200, tol: float = 1e-4, reshape_transform=None):
        if head is not None and not callable(head):
            raise TypeError(f"head must be a callable (e.g. model.fc), not {type(head).__name__}")
        self._activations = _Activations(model, layer, relu=False, reshape_transform=reshape_transform)
        self.model, self.head, self.n_components = model, head, n_components
        self.seed, self.max_iter, self.tol = seed, max_iter, tol

    def __call__(self, x: torch.Tensor) -> Concepts:
        activations = self._activations(x, raw=True)
        # factorised in the activations' precision, at least float32 (as scikit-learn, and so the peer, do):
        # float64 would make the two products with the data per iteration ~3x slower for the same error
        activations = activations.to(torch.promote_types(activations.dtype, torch.float32))
        n, channels, *spatial = activations.shape
        matrix = activations.transpose(0, 1).reshape(channels, -1)
        shifted, offset = nonnegative_shift(matrix)
        weights, components = nmf(shifted, self.n_components, seed=self.seed, max_iter=self.max_iter, tol=self.tol)
        error = float(torch.linalg.norm((shifted - weights @ components).double())
                      / torch.linalg.norm(shifted.double()).clamp_min(1e-300))
        concepts = (weights + offset).T.to(x.dtype)
        maps = components.reshape(self.n_components, n, *spatial).transpose(0, 1).to(x.dtype)
        maps = upsample(maps, tuple(x.shape[2:]))
        maps = scale(maps.reshape(n * self.n_components, *maps.shape[2:])).reshape(maps.shape)
        scores = None
        if self.head is not None:
            with torch.no_grad():
                scores = self.head(concepts)
        return Concepts(concepts, maps, scores, error)

    def __repr__(self) -> str:
        return (f"DeepFeatureFactorization(model={type(self.model).__name__}, "
                f"layer={self._activations.layer_name!r}, n_components={self.n_components})")
