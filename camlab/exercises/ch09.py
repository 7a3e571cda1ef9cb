"""Checks for chapter 09 (CAM on Vision Transformers): tokens to a grid, one step of attention rollout."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, cases_for, run_check

#: worked examples. 1 prefix token, a 2x2 grid: tokens 1..4 = [[2, 3], [4, 5], [6, 7], [8, 9]] are cells (0, 0),
#: (0, 1), (1, 0), (1, 1), so channel 0 is [[2, 4], [6, 8]] and channel 1 is [[3, 5], [7, 9]]. 2 prefix tokens
#: (a class and a distillation token), a 2x3 grid of one channel: the patches 2..7 fill two rows of three.
TOKENS_TO_GRID = [
    ((torch.arange(10.).reshape(1, 5, 2), 1, (2, 2)), torch.tensor([[[[2., 4.], [6., 8.]], [[3., 5.], [7., 9.]]]])),
    ((torch.arange(8.).reshape(1, 8, 1), 2, (2, 3)), torch.tensor([[[[2., 3., 4.], [5., 6., 7.]]]])),
]


def check_tokens_to_grid(student, hidden: list | None = None) -> CheckResult:
    """``student(tokens, num_prefix_tokens, grid_size) -> (N, C, h, w)``: drop the ``num_prefix_tokens`` first
    tokens of (N, P + h*w, C) ``tokens`` and lay the patch tokens out on the ``grid_size = (h, w)`` grid, row by row
    (token P + w*i + j is cell (i, j)), channels first."""
    name, cases = cases_for("tokens to grid", TOKENS_TO_GRID, hidden)
    return run_check(
        name, student, cases,
        hint="drop the prefix tokens (tokens[:, P:]), reshape to (N, h, w, C) — rows first, since the patches are "
             "stored row by row — and only then move the channels to the front with permute(0, 3, 1, 2); "
             "reshape(N, C, h, w) directly mixes channels and positions")


#: worked example: two heads of one image with T = 2 tokens. Their mean is [[.5, .5], [.5, .5]]; + I gives
#: [[1.5, .5], [.5, 1.5]]; rows renormalised: [[.75, .25], [.25, .75]]. Times the earlier product
#: [[1, 0], [.5, .5]] on the left: [[.875, .125], [.625, .375]] (on the right it would be [[.75, .25], [.5, .5]]).
ROLLOUT_STEP = [((torch.tensor([[[[1., 0.], [.5, .5]], [[0., 1.], [.5, .5]]]]), torch.tensor([[[1., 0.], [.5, .5]]])),
                 torch.tensor([[[.875, .125], [.625, .375]]]))]


def check_rollout_step(student, hidden: list | None = None) -> CheckResult:
    r"""``student(attention, rolled) -> (N, T, T)``: one step of attention rollout (Abnar & Zuidema 2020),
    :math:`A_l \tilde A_{l-1}` with :math:`A_l = (\bar W_l + I) / \text{row sums}`, :math:`\bar W_l` the mean over
    the heads of the (N, heads, T, T) ``attention``, ``rolled`` the (N, T, T) product of the earlier blocks."""
    name, cases = cases_for("rollout step", ROLLOUT_STEP, hidden)
    return run_check(
        name, student, cases,
        hint="average the heads (dim 1), add the identity (the residual connection), divide every row by its sum, "
             "and multiply this block's matrix ON THE LEFT of the earlier product: layer @ rolled")
