"""Deep Feature Factorization: concepts of a layer by non-negative matrix factorisation of its activations.

camlab factorises with its own :func:`nmf` in torch rather than scikit-learn's ``NMF`` (which pytorch-grad-cam
uses): no new runtime dependency, the same device as the model (GPU included), and a seeded ``torch.Generator``
for the initialisation (the global RNG is never touched). The algorithm is scikit-learn's default solver
(coordinate descent on the Frobenius loss, i.e. HALS, with the same update order and stopping rule), so from the same
initial factors the two give the same factors (checked in ``tests/test_methods_peers_score_family.py``).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from camlab.maps import scale, upsample
from camlab.methods.base import LayerMethod
from camlab.targets import Target


class _CoordinateSweep:
    r"""Coordinate descent on ``factor`` (k,a) for ``data`` (b,a) ~ ``other.T @ factor`` (``other`` (k,b)): each
    call updates one component (row of ``factor``) after the other, in place, by its exact non-negative minimiser
    :math:`f_t \leftarrow \max(0, f_t - g_t / G_{tt})` (:math:`G` = ``other @ other.T``, :math:`g_t` the row's
    gradient at that moment; skipped where :math:`G_{tt} = 0`), and leaves in ``gradients`` (k,a) each row's gradient
    at its update and in ``at_zero`` which entries were 0 before it (the projected gradient's inputs).

    Laid out for speed (the loop is short, so per-operation overhead counts): one row per component, so every product
    is a short-and-wide matrix times a contiguous one and every update touches a contiguous row; the Gram matrix, the
    gradients and the Hessian diagonal are written into buffers allocated once and the per-row views into them are
    taken once, so a component costs three in-place operations (gradient, step, clip), no indexing and no
    host-device synchronisation. A zero Hessian entry is replaced by infinity: that row's step :math:`g_t / \infty`
    is 0, i.e. the row is skipped."""

    def __init__(self, data: torch.Tensor, factor: torch.Tensor, other: torch.Tensor, gradients: torch.Tensor,
                 at_zero: torch.Tensor):
        self.data, self.factor, self.other, self.gradients, self.at_zero = data, factor, other, gradients, at_zero
        self.gram = factor.new_empty(factor.shape[0], factor.shape[0])
        self.hessians = factor.new_empty(factor.shape[0])
        # 0 and infinity as tensors: a Python number would be wrapped into a new tensor at every call
        self.zero, self.infinity = factor.new_tensor(0.0), factor.new_tensor(torch.inf)
        self.rows = list(zip(factor.unbind(), gradients.unbind(), self.gram.unbind(), self.hessians.unbind()))

    def __call__(self) -> None:
        factor, other, gram = self.factor, self.other, self.gram
        torch.mm(other, other.T, out=gram)
        torch.mm(other, self.data, out=self.gradients)  # g_t = (G f)_t - this row, completed at row t's turn
        torch.eq(factor, self.zero, out=self.at_zero)  # a row changes only at its own turn: its zeros can be taken now
        diagonal = gram.diagonal()
        torch.where(diagonal != self.zero, diagonal, self.infinity, out=self.hessians)
        columns = factor.T
        for row, gradient, gram_row, hessian in self.rows:
            gradient.addmv_(columns, gram_row, beta=-1)
            row.addcdiv_(gradient, hessian, value=-1).clamp_min_(0)


@contextmanager
def _one_cpu_thread(device: torch.device):
    """Run the block on one intra-op CPU thread (restored afterwards; nothing changes on other devices). NMF's
    products here are small (k x a by a x b with k = 5): a second thread gains about 10% on an idle CPU and loses
    several times that when another process holds a core (every product then waits for the descheduled thread)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    # both sweeps' gradients and zero masks side by side, so that the violation is one reduction per iteration
    split = n_components * rows
    gradients = data.new_empty(n_components * (rows + columns))
    at_zero = torch.empty(gradients.shape, dtype=torch.bool, device=data.device)
    sweeps = [_CoordinateSweep(transposed_data, weights_by_row, components, gradients[:split].view(n_components, -1),
                               at_zero[:split].view(n_components, -1)),
              _CoordinateSweep(data, components, weights_by_row, gradients[split:].view(n_components, -1),
                               at_zero[split:].view(n_components, -1))]
    zero, first = data.new_tensor(0.0), None
    with _one_cpu_thread(data.device):
        for _ in range(max_iter):
            for sweep in sweeps:
                sweep()
            # the projected gradient: min(g, 0) where the entry was 0, g elsewhere
            violation = float(torch.linalg.vector_norm(torch.where(at_zero, gradients.clamp_max(zero), gradients), 1))
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
