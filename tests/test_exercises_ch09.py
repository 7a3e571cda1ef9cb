"""Chapter 09's checks pass on the right answers (worked by hand in camlab/exercises/ch09.py) and fail on the
plausible mistakes: a grid without the permute, the prefix tokens kept, the grid's sides swapped; a rollout step
without the residual identity, without renormalisation, with the heads' maximum, or multiplied on the wrong side."""
from __future__ import annotations

import pytest
import torch

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def tokens_to_grid(tokens, num_prefix_tokens, grid_size):
    height, width = grid_size
    return tokens[:, num_prefix_tokens:].reshape(len(tokens), height, width, tokens.shape[-1]).permute(0, 3, 1, 2)


def test_tokens_to_grid_passes_on_drop_reshape_permute(check):
    assert check("ch09_tokens_to_grid", tokens_to_grid)


def test_tokens_to_grid_is_what_the_lab_vit_patch_embedding_undoes():
    """The check's convention is timm's: patch_embed flattens an (N, C, h, w) map with flatten(2).transpose(1, 2)
    and prepends the prefix tokens, so tokens_to_grid recovers the map exactly."""
    grid = torch.randn(2, 5, 3, 4)
    tokens = torch.cat([torch.randn(2, 2, 5), grid.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(tokens_to_grid(tokens, 2, (3, 4)), grid)


@pytest.mark.parametrize("wrong", [
    lambda t, p, g: t[:, p:].reshape(len(t), t.shape[-1], g[0], g[1]),                      # no permute
    lambda t, p, g: t[:, p:].reshape(len(t), g[1], g[0], t.shape[-1]).permute(0, 3, 2, 1),  # columns first
    lambda t, p, g: t[:, 1:].reshape(len(t), g[0], g[1], -1).permute(0, 3, 1, 2),           # always one prefix token
    lambda t, p, g: t[:, p:].transpose(1, 2).reshape(len(t), t.shape[-1], g[0], g[1]).transpose(2, 3),  # transposed grid
])
def test_tokens_to_grid_fails_on_wrong_answers(wrong, check):
    assert not check("ch09_tokens_to_grid", wrong)


def rollout_step(attention, rolled):
    layer = attention.mean(dim=1) + torch.eye(attention.shape[-1])
    return (layer / layer.sum(dim=-1, keepdim=True)) @ rolled


def test_rollout_step_passes_on_mean_identity_renormalise_left_product(check):
    assert check("ch09_rollout_step", rollout_step)


def test_rollout_steps_give_camlab_rollout():
    """Folding rollout_step over the layers, from the identity, is camlab's rollout_from_attentions."""
    from camlab.rollout import rollout_from_attentions

    generator = torch.Generator().manual_seed(0)
    attentions = [torch.rand(2, 3, 5, 5, generator=generator).softmax(dim=-1) for _ in range(3)]
    rolled = torch.eye(5).expand(2, 5, 5)
    for attention in attentions:
        rolled = rollout_step(attention, rolled)
    assert torch.allclose(rolled, rollout_from_attentions(attentions), atol=1e-6)


def _normalised(matrix):
    return matrix / matrix.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("wrong", [
    lambda a, r: _normalised(a.mean(dim=1)) @ r,                                       # no residual identity
    lambda a, r: (a.mean(dim=1) + torch.eye(a.shape[-1])) @ r,                         # rows not renormalised
    lambda a, r: _normalised(a.amax(dim=1) + torch.eye(a.shape[-1])) @ r,              # max over heads
    lambda a, r: r @ _normalised(a.mean(dim=1) + torch.eye(a.shape[-1])),              # multiplied on the right
])
def test_rollout_step_fails_on_wrong_answers(wrong, check):
    assert not check("ch09_rollout_step", wrong)
