"""Chapter 07's checks pass on the paper's formulas and fail on the plausible mistakes (and on the peers' variants)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from camlab.exercises import ch07

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


def alpha_eq19(activations, gradients):
    g2 = gradients ** 2
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g2 * gradients
    return torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)


def alpha_torchcam_denominator(activations, gradients):
    """torchcam's intended formula: sum over positions of A * g^3 in the denominator."""
    g2 = gradients ** 2
    denominator = 2 * g2 + (activations * g2 * gradients).sum(dim=(2, 3), keepdim=True)
    return torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)


def test_gradcampp_alpha_passes_on_eq19(check):
    assert check("ch07_gradcampp_alpha", alpha_eq19)


@pytest.mark.parametrize("wrong", [
    alpha_torchcam_denominator,
    lambda A, g: torch.nan_to_num(g ** 2 / (g ** 2 + A.sum(dim=(2, 3), keepdim=True) * g ** 3)),  # forgot the 2
    lambda A, g: g ** 2,  # torchcam as it runs: the division never lands
])
def test_gradcampp_alpha_fails_on_wrong_answers(wrong, check):
    assert not check("ch07_gradcampp_alpha", wrong)


def scorecam_weights(model, x, activations, target):
    masks = F.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    low = masks.flatten(1).amin(1)[:, None, None]
    high = masks.flatten(1).amax(1)[:, None, None]
    weights = torch.zeros(masks.shape[0], dtype=x.dtype)
    for k in range(masks.shape[0]):
        if high[k] > low[k]:
            mask = (masks[k] - low[k]) / (high[k] - low[k])
            with torch.no_grad():
                weights[k] = model(x * mask).softmax(dim=1)[0, target]
    return weights


def test_scorecam_weights_pass_on_algorithm_1(check):
    assert check("ch07_scorecam_weights", scorecam_weights)


def scorecam_channel_softmax(model, x, activations, target):
    """pytorch-grad-cam: a softmax over channels of the masked inputs' raw logits."""
    masks = F.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=True)[0]
    low = masks.flatten(1).amin(1)[:, None, None]
    high = masks.flatten(1).amax(1)[:, None, None]
    masks = (masks - low) / (high - low + 1e-8)
    with torch.no_grad():
        logits = model(x * masks[:, None])[:, target]
    return logits.softmax(dim=0)


def scorecam_logit(model, x, activations, target):
    masks = F.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    low = masks.flatten(1).amin(1)[:, None, None]
    high = masks.flatten(1).amax(1)[:, None, None]
    masks = torch.where(high > low, (masks - low) / torch.where(high > low, high - low, 1.0), 0.0)
    with torch.no_grad():
        return model(x * masks[:, None])[:, target]


@pytest.mark.parametrize("wrong", [scorecam_channel_softmax, scorecam_logit])
def test_scorecam_weights_fail_on_the_channel_softmax_and_on_logits(wrong, check):
    assert not check("ch07_scorecam_weights", wrong)


def test_layercam_map_passes_and_fails_without_the_relu_on_gradients(check):
    assert check("ch07_layercam_map", lambda A, g: (g.clamp_min(0) * A).sum(1).clamp_min(0))
    assert not check("ch07_layercam_map", lambda A, g: (g * A).sum(1).clamp_min(0))  # HiResCAM: the signed gradient
    assert not check("ch07_layercam_map",  # Grad-CAM's spatial average
                     lambda A, g: (g.clamp_min(0).mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0))


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("exercise,right,wrong", [
    # a small epsilon instead of alpha = 0 where the denominator is 0: wrong only where 2 g^2 + S g^3 cancels
    ("ch07_gradcampp_alpha", alpha_eq19, lambda A, g: g ** 2 / (2 * g ** 2 + A.sum(dim=(2, 3), keepdim=True) * g ** 3
                                                               + 1e-7)),
    # activations clamped at 0 before the masks: wrong only for a channel with negative values
    ("ch07_scorecam_weights", scorecam_weights, lambda m, x, A, t: scorecam_weights(m, x, A.clamp_min(0), t)),
    # no final ReLU: wrong only where the activations are negative
    ("ch07_layercam_map", lambda A, g: (g.clamp_min(0) * A).sum(1).clamp_min(0),
     lambda A, g: (g.clamp_min(0) * A).sum(1)),
])
def test_hidden_cases_catch_the_chapters_edge_cases(exercise, right, wrong, hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold the edge cases: a denominator that
    cancels to 0, a channel of negative activations, signed activations. Each answer here is wrong only there: it
    passes the visible worked example and fails the hidden cases."""
    from camlab.course.student import run_check_cell
    assert run_check_cell(exercise, wrong, hidden=False)
    assert run_check_cell(exercise, right, hidden_seed=hidden_seed)
    assert not run_check_cell(exercise, wrong, hidden_seed=hidden_seed)


@pytest.mark.parametrize("kinds", ["ALPHA_KINDS", "SCORE_KINDS", "LAYERCAM_KINDS"])
def test_hidden_cases_change_with_the_hidden_seed(kinds):
    assert drawn_cases_differ_by_seed(getattr(ch07, kinds))


def test_checks_leave_the_global_rng_alone(check):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("ch07_scorecam_weights", scorecam_weights)
    assert torch.equal(torch.rand(3), expected)


def test_missed_instance_experiment_passes_the_students_seed_only(check):
    """The right outcomes for seed 0 pass; another student's seed, the wrong layer and swapped rows fail."""
    from camlab.exercises.ch07 import missed_instances_reference

    assert check("ch07_missed_instances", missed_instances_reference)
    assert not check("ch07_missed_instances", lambda seed: missed_instances_reference(seed + 1))
    assert not check("ch07_missed_instances", lambda seed: missed_instances_reference(seed, layer="features"))
    assert not check("ch07_missed_instances", lambda seed: missed_instances_reference(seed).flip(0))


def test_missed_instance_outcomes_are_zero_one_rows_for_two_methods_on_sixty_scenes():
    from camlab.exercises.ch07 import missed_instances_reference

    outcomes = missed_instances_reference(0)
    assert outcomes.shape == (2, 60) and set(outcomes.unique().tolist()) <= {0.0, 1.0}
    assert outcomes[1].sum() > outcomes[0].sum()  # at features.10 Grad-CAM misses more often than Grad-CAM++
