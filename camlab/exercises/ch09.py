"""Checks for chapter 09 (CAM on Vision Transformers): tokens to a grid, one step of attention rollout, one step of
Chefer's relevance, and an experiment on a per-student set of scenes (does rollout's ``discard_ratio`` move its
peak?)."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from camlab.exercises._checking import CheckResult, cases_for, integer, run_check, small_integers

#: worked examples. 1 prefix token, a 2x2 grid: tokens 1..4 = [[2, 3], [4, 5], [6, 7], [8, 9]] are cells (0, 0),
#: (0, 1), (1, 0), (1, 1), so channel 0 is [[2, 4], [6, 8]] and channel 1 is [[3, 5], [7, 9]]. 2 prefix tokens
#: (a class and a distillation token), a 2x3 grid of one channel: the patches 2..7 fill two rows of three.
TOKENS_TO_GRID = [
    ((torch.arange(10.).reshape(1, 5, 2), 1, (2, 2)), torch.tensor([[[[2., 4.], [6., 8.]], [[3., 5.], [7., 9.]]]])),
    ((torch.arange(8.).reshape(1, 8, 1), 2, (2, 3)), torch.tensor([[[[2., 3., 4.], [5., 6., 7.]]]])),
]


def tokens_to_grid_reference(tokens: torch.Tensor, num_prefix_tokens: int, grid_size) -> torch.Tensor:
    """Token ``P + w*i + j`` of (N, P + h*w, C) ``tokens`` is cell (i, j) of an (N, C, h, w) map."""
    height, width = grid_size
    grid = torch.empty(tokens.shape[0], tokens.shape[2], height, width, dtype=tokens.dtype)
    for i in range(height):
        for j in range(width):
            grid[:, :, i, j] = tokens[:, num_prefix_tokens + width * i + j]
    return grid


def _tokens_case(generator: torch.Generator, prefix: tuple = (0, 1, 2, 5), square: bool = False):
    """Random integer tokens: 1-3 images, 1-4 channels, a grid of 1-5 x 1-5 cells (``square``: h = w), ``prefix``
    the prefix counts to draw from (0: no class token; 2: class and distillation tokens; 5: a class token and
    four registers)."""
    height = integer(generator, 1, 5)
    width = height if square else integer(generator, 1, 5)
    if not square and height == width:
        width += 1                                            # a grid that is not square: rows and columns differ
    batch, channels, prefixes = integer(generator, 1, 3), integer(generator, 1, 4), prefix[integer(generator, 0,
                                                                                                    len(prefix) - 1)]
    tokens = small_integers(generator, (batch, prefixes + height * width, channels), -9, 9)
    args = (tokens, prefixes, (height, width))
    return args, tokens_to_grid_reference(*args)


#: the kinds of hidden case (``hidden_seed``): no class token, distillation and register tokens, grids that are not
#: square, one channel
TOKENS_KINDS = (_tokens_case, partial(_tokens_case, prefix=(0,)), partial(_tokens_case, prefix=(2, 5)),
                partial(_tokens_case, prefix=(1,), square=True))


def check_tokens_to_grid(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(tokens, num_prefix_tokens, grid_size) -> (N, C, h, w)``: drop the ``num_prefix_tokens`` first
    tokens of (N, P + h*w, C) ``tokens`` and lay the patch tokens out on the ``grid_size = (h, w)`` grid, row by row
    (token P + w*i + j is cell (i, j)), channels first. ``hidden_seed`` draws :data:`TOKENS_KINDS`."""
    name, cases = cases_for("tokens to grid", TOKENS_TO_GRID, hidden, hidden_seed, TOKENS_KINDS)
    return run_check(
        name, student, cases,
        hint="leave out the prefix tokens, lay the rest out on the grid with the channel dimension still last (the "
             "patches are stored row by row), and only then move the channels to the front; reshaping straight to "
             "channels-first mixes channels and positions")


#: worked example: two heads of one image with T = 2 tokens. Their mean is [[.5, .5], [.5, .5]]; + I gives
#: [[1.5, .5], [.5, 1.5]]; rows renormalised: [[.75, .25], [.25, .75]]. Times the earlier product
#: [[1, 0], [.5, .5]] on the left: [[.875, .125], [.625, .375]] (on the right it would be [[.75, .25], [.5, .5]]).
ROLLOUT_STEP = [((torch.tensor([[[[1., 0.], [.5, .5]], [[0., 1.], [.5, .5]]]]), torch.tensor([[[1., 0.], [.5, .5]]])),
                 torch.tensor([[[.875, .125], [.625, .375]]]))]


def rollout_step_reference(attention: torch.Tensor, rolled: torch.Tensor) -> torch.Tensor:
    r""":math:`A_l \tilde A_{l-1}`, :math:`A_l = (\bar W_l + I) / \text{row sums}` (in float64)."""
    layer = attention.double().mean(dim=1) + torch.eye(attention.shape[-1], dtype=torch.float64)
    return ((layer / layer.sum(dim=-1, keepdim=True)) @ rolled.double()).float()


def _attention(generator: torch.Generator, batch: int, heads: int, tokens: int, one_hot: bool = False):
    """(N, heads, T, T) attention probabilities (rows sum to 1); ``one_hot``: every row on a single token."""
    if one_hot:
        chosen = torch.randint(0, tokens, (batch, heads, tokens), generator=generator)
        return torch.nn.functional.one_hot(chosen, tokens).float()
    return (small_integers(generator, (batch, heads, tokens, tokens), -4, 4) / 2).softmax(dim=-1)


def _rollout_case(generator: torch.Generator, one_hot: bool = False, identity: bool = False):
    """1-3 images, 2-4 heads (mean, max and one head differ), 2-6 tokens; the earlier product ``rolled`` is an
    earlier rollout (rows sum to 1, not the identity) or, with ``identity``, the first block's identity."""
    batch, heads, tokens = integer(generator, 1, 3), integer(generator, 2, 4), integer(generator, 2, 6)
    attention = _attention(generator, batch, heads, tokens, one_hot)
    if identity:
        rolled = torch.eye(tokens).expand(batch, tokens, tokens).clone()
    else:
        rolled = rollout_step_reference(_attention(generator, batch, heads, tokens),
                                         torch.eye(tokens).expand(batch, tokens, tokens))
    return (attention, rolled), rollout_step_reference(attention, rolled)


#: the kinds of hidden case (``hidden_seed``): heads that disagree, an earlier product that is not the identity
#: (left or right matters), rows on a single token, the first block
ROLLOUT_KINDS = (_rollout_case, partial(_rollout_case, one_hot=True), partial(_rollout_case, identity=True))


def check_rollout_step(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    r"""``student(attention, rolled) -> (N, T, T)``: one step of attention rollout (Abnar & Zuidema 2020),
    :math:`A_l \tilde A_{l-1}` with :math:`A_l = (\bar W_l + I) / \text{row sums}`, :math:`\bar W_l` the mean over
    the heads of the (N, heads, T, T) ``attention``, ``rolled`` the (N, T, T) product of the earlier blocks.
    ``hidden_seed`` draws :data:`ROLLOUT_KINDS`."""
    name, cases = cases_for("rollout step", ROLLOUT_STEP, hidden, hidden_seed, ROLLOUT_KINDS)
    return run_check(
        name, student, cases,
        hint="average over the heads, add the identity (the residual connection), make every row sum to 1 again, "
             "and put this block's matrix to the LEFT of the earlier product (later blocks act last)")


#: worked example: two heads, two tokens. Head 1: A = [[.5, .5], [1, 0]], dA = [[2, 2], [1, 0]], product
#: [[1, 1], [1, 0]]. Head 2: A = .5 everywhere, dA = [[-2, 2], [2, 2]], product [[-1, 1], [1, 1]], positive part
#: [[0, 1], [1, 1]]. Abar = mean of the positive parts = [[.5, 1], [1, .5]] (the positive part of the mean would give
#: 0 at [0, 0]). With the earlier relevance R = [[2, 0], [0, 3]]: Abar R = [[1, 3], [2, 1.5]], and
#: R + Abar R = [[3, 3], [2, 4.5]] (R + R Abar, the wrong order, would give [[3, 2], [3, 4.5]]).
RELEVANCE_STEP = [((torch.tensor([[[[.5, .5], [1., 0.]], [[.5, .5], [.5, .5]]]]),
                    torch.tensor([[[[2., 2.], [1., 0.]], [[-2., 2.], [2., 2.]]]]),
                    torch.tensor([[[2., 0.], [0., 3.]]])),
                   torch.tensor([[[3., 3.], [2., 4.5]]]))]


def relevance_step_reference(attention: torch.Tensor, gradients: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    r""":math:`R + \bar A R`, :math:`\bar A = \mathrm{mean}_h[(\nabla A \odot A)^+]` (in float64)."""
    weighted = (gradients.double() * attention.double()).clamp_min(0).mean(dim=1)
    return (relevance.double() + weighted @ relevance.double()).float()


def _relevance_case(generator: torch.Generator, cancelling: bool = False, negative: bool = False,
                    identity: bool = False):
    """1-3 images, 2-4 heads, 2-6 tokens, integer gradients in [-3, 3]. ``cancelling``: the second head's gradient
    is minus the first's on equal attention (the mean of the products is 0 there, the mean of the positive parts is
    not); ``negative``: every gradient below 0 (nothing is added); ``identity``: the first block (R = I)."""
    batch, heads, tokens = integer(generator, 1, 3), integer(generator, 2, 4), integer(generator, 2, 6)
    attention = _attention(generator, batch, heads, tokens)
    gradients = small_integers(generator, (batch, heads, tokens, tokens), -3, 3)
    if cancelling:
        attention[:, 1], gradients[:, 1] = attention[:, 0], -gradients[:, 0]
    if negative:
        gradients = -gradients.abs() - 1
    relevance = (torch.eye(tokens).expand(batch, tokens, tokens).clone() if identity else
                 small_integers(generator, (batch, tokens, tokens), 0, 3) + torch.eye(tokens))
    return (attention, gradients, relevance), relevance_step_reference(attention, gradients, relevance)


#: the kinds of hidden case (``hidden_seed``): heads whose products cancel (the positive part comes before the
#: mean), gradients all negative, a relevance that is not the identity (left or right matters), the first block
RELEVANCE_KINDS = (_relevance_case, partial(_relevance_case, cancelling=True), partial(_relevance_case,
                                                                                         negative=True),
                   partial(_relevance_case, identity=True))


def check_relevance_step(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    r"""``student(attention, gradients, relevance) -> (N, T, T)``: one block of Chefer, Gur & Wolf's relevance
    (ICCV 2021, Eqs. 5-6), :math:`R + \bar A R` with :math:`\bar A = \mathrm{mean}_h[(\nabla A \odot A)^+]`, from
    the block's (N, heads, T, T) attention probabilities and their gradients and the (N, T, T) relevance so far.
    ``hidden_seed`` draws :data:`RELEVANCE_KINDS`."""
    name, cases = cases_for("relevance step", RELEVANCE_STEP, hidden, hidden_seed, RELEVANCE_KINDS)
    return run_check(
        name, student, cases,
        hint="weight each attention probability by its gradient, keep the positive part of each head's product "
             "BEFORE averaging over the heads, multiply the earlier relevance by that matrix from the left, and add "
             "the earlier relevance itself (the residual term, no renormalisation)")


#: the experiment's protocol: scenes per seed, and rollout's discard ratio
DISCARD_SCENES, DISCARD_RATIO = 120, 0.9


def discard_effect_reference(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The experiment done right: ``make_scenes(120, seed=seed)``, rollout maps of ``model`` with and without
    ``discard_ratio=0.9``, each scored by :func:`camlab.analysis.peak_in_boxes` against the object's box; returns
    (with discarding, without), one value per scene."""
    from camlab.analysis import peak_in_boxes
    from camlab.lab import make_scenes
    from camlab.preprocessing import preprocess
    from camlab.rollout import attention_rollout

    scenes = make_scenes(DISCARD_SCENES, seed=seed)
    x = preprocess(scenes.images, model)
    return (peak_in_boxes(attention_rollout(model, x, discard_ratio=DISCARD_RATIO), scenes.boxes),
            peak_in_boxes(attention_rollout(model, x), scenes.boxes))


def _same_experiment(actual, expected) -> bool:
    """Two per-scene arrays of the right length whose means are within 2 scenes of the reference's (another way
    of locating the peak, e.g. without rounding, may settle a near-tie differently)."""
    reference = expected()
    try:
        arrays = [np.asarray(values, dtype=np.float64) for values in actual]
    except (TypeError, ValueError):
        return False
    return (len(arrays) == 2 and all(a.shape == (DISCARD_SCENES,) for a in arrays)
            and all(abs(a.mean() - r.mean()) <= 2 / DISCARD_SCENES + 1e-9 for a, r in zip(arrays, reference)))


def check_discard_effect(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(model, seed) -> (with_discard, without)``: on ``make_scenes(120, seed=seed)``, the per-scene
    pointing score (:func:`camlab.analysis.peak_in_boxes`, the object's box) of ``lab_vit``'s rollout with
    ``discard_ratio=0.9`` and without. ``seed`` is the student's own (``STUDENT_SEED``); ``hidden`` lists further
    seeds, so that an answer copied from another student, or typed in, fails. The reference is recomputed for each
    seed, and only after the student's function has returned."""
    from camlab.models import load_model

    model = load_model("lab_vit")
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [((model, s), partial(discard_effect_reference, model, s)) for s in seeds]
    name = "discard experiment" if hidden is None else "discard experiment (hidden seeds)"
    return run_check(
        name, student, cases, compare=_same_experiment,
        hint="draw the scenes with the seed you are given, preprocess them for the model, compute rollout twice "
             "(with the discard ratio and without), score each map's peak against each scene's box, and return the "
             "two per-scene arrays, the one with discarding first")
