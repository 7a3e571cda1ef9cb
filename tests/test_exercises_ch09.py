"""Chapter 09's checks pass on the right answers (worked by hand in camlab/exercises/ch09.py) and fail on the
plausible mistakes: a grid without the permute, the prefix tokens kept, the grid's sides swapped; a rollout step
without the residual identity, without renormalisation, with the heads' maximum, or multiplied on the wrong side;
a relevance step with the positive part after the head mean, the product on the right, no residual term, or
renormalised rows; an experiment on the wrong seed, with its arrays swapped or on too few scenes."""
from __future__ import annotations

import pytest
import torch

import camlab

from camlab.exercises import ch09

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


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


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("wrong", [
    lambda t, p, g: t[:, 1:].reshape(len(t), g[0], g[1], -1).permute(0, 3, 1, 2),           # always one prefix token
    lambda t, p, g: t[:, p:].reshape(len(t), g[1], g[0], t.shape[-1]).permute(0, 3, 2, 1),  # columns first
])
def test_tokens_to_grid_hidden_cases_catch_the_chapters_edge_cases(wrong, hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold no class token, distillation and
    register tokens, and grids that are not square."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch09_tokens_to_grid", tokens_to_grid, hidden_seed=hidden_seed)
    assert not run_check_cell("ch09_tokens_to_grid", wrong, hidden_seed=hidden_seed)


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


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
def test_rollout_step_hidden_cases_need_the_mean_of_disagreeing_heads(hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold 2-4 heads that disagree, rows on a
    single token and an earlier product that is not the identity: one head instead of their mean fails."""
    from camlab.course.student import run_check_cell
    first_head = lambda a, r: _normalised(a[:, 0] + torch.eye(a.shape[-1])) @ r            # noqa: E731
    assert run_check_cell("ch09_rollout_step", rollout_step, hidden_seed=hidden_seed)
    assert not run_check_cell("ch09_rollout_step", first_head, hidden_seed=hidden_seed)


def relevance_step(attention, gradients, relevance):
    return relevance + (gradients * attention).clamp_min(0).mean(dim=1) @ relevance


def test_relevance_step_passes_on_positive_part_mean_left_product_plus_residual(check):
    assert check("ch09_relevance_step", relevance_step)


def test_relevance_steps_give_camlab_relevance():
    """Folding relevance_step over the blocks, from the identity, is camlab.chefer.relevance_from_attentions."""
    from camlab.chefer import relevance_from_attentions

    generator = torch.Generator().manual_seed(0)
    attentions = [torch.rand(2, 3, 5, 5, generator=generator).softmax(dim=-1) for _ in range(3)]
    gradients = [torch.randn(2, 3, 5, 5, generator=generator) for _ in range(3)]
    relevance = torch.eye(5).expand(2, 5, 5)
    for attention, gradient in zip(attentions, gradients):
        relevance = relevance_step(attention, gradient, relevance)
    assert torch.allclose(relevance, relevance_from_attentions(attentions, gradients), atol=1e-6)


@pytest.mark.parametrize("wrong", [
    lambda a, g, r: r + (g * a).mean(dim=1).clamp_min(0) @ r,                 # positive part after the mean
    lambda a, g, r: r + r @ (g * a).clamp_min(0).mean(dim=1),                 # multiplied on the right
    lambda a, g, r: (g * a).clamp_min(0).mean(dim=1) @ r,                     # no residual term
    lambda a, g, r: r + (g * a).abs().mean(dim=1) @ r,                        # magnitude instead of positive part
    lambda a, g, r: _normalised(r + (g * a).clamp_min(0).mean(dim=1) @ r),    # rows renormalised, as in rollout
])
def test_relevance_step_fails_on_wrong_answers(wrong, check):
    assert not check("ch09_relevance_step", wrong)


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("wrong", [
    lambda a, g, r: r + (g * a).mean(dim=1).clamp_min(0) @ r,                 # positive part after the mean
    lambda a, g, r: r + (g * a).clamp_min(0).mean(dim=1) @ r.transpose(1, 2),  # right only for a symmetric R
])
def test_relevance_step_hidden_cases_catch_the_chapters_edge_cases(wrong, hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold heads whose products cancel,
    gradients that are all negative and a relevance that is not symmetric."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch09_relevance_step", relevance_step, hidden_seed=hidden_seed)
    assert not run_check_cell("ch09_relevance_step", wrong, hidden_seed=hidden_seed)


@pytest.mark.parametrize("kinds", ["TOKENS_KINDS", "ROLLOUT_KINDS", "RELEVANCE_KINDS"])
def test_hidden_cases_change_with_the_hidden_seed(kinds):
    assert drawn_cases_differ_by_seed(getattr(ch09, kinds))


def discard_effect(model, seed):
    from camlab.analysis import peak_in_boxes
    from camlab.lab import make_scenes
    from camlab.rollout import attention_rollout

    scenes = make_scenes(120, seed=seed)
    inputs = camlab.preprocess(scenes.images, model)
    return (peak_in_boxes(attention_rollout(model, inputs, discard_ratio=0.9), scenes.boxes),
            peak_in_boxes(attention_rollout(model, inputs), scenes.boxes))


def test_discard_experiment_passes_when_done_on_the_seed_given(check):
    assert check("ch09_discard_effect", discard_effect)


def test_discard_experiment_needs_the_students_own_scenes(monkeypatch):
    """The check recomputes the reference for the seed it is given: the experiment done on seed 0 (or typed in)
    passes for seed 0 and fails for a student whose seed is 1."""
    from camlab.exercises.ch09 import check_discard_effect

    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    on_seed_zero = discard_effect(camlab.load_model("lab_vit"), 0)
    assert check_discard_effect(lambda model, seed: on_seed_zero, seed=0)
    assert not check_discard_effect(lambda model, seed: on_seed_zero, seed=1)


@pytest.mark.parametrize("wrong", [
    lambda m, s: tuple(reversed(discard_effect(m, s))),                                  # the arrays swapped
    lambda m, s: discard_effect(m, s + 1),                                                # not the seed given
    lambda m, s: (discard_effect(m, s)[0][:100], discard_effect(m, s)[1][:100]),          # not all 120 scenes
])
def test_discard_experiment_fails_on_wrong_answers(wrong, check):
    assert not check("ch09_discard_effect", wrong)
