"""Chapter 05's checks pass the right answers and fail plausible wrong ones."""
from __future__ import annotations

import pytest
import torch

from camlab.exercises import ch05

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


def ablation_drop(head, activations, target):
    with torch.no_grad():
        base = head(activations)[0, target]
        drops = []
        for k in range(activations.shape[1]):
            ablated = activations.clone()
            ablated[:, k] = 0
            drops.append(base - head(ablated)[0, target])
    return torch.stack(drops)


def first_order_drop(head, activations, target):
    """Gradient x activation: exact on a GAP + linear head, wrong on a non-linear one."""
    activations = activations.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(head(activations)[0, target], activations)
    return (gradient * activations).sum(dim=(0, 2, 3)).detach()


def test_channel_ablation_drop_check(check):
    assert check("ch05_channel_ablation_drop", ablation_drop)
    assert not check("ch05_channel_ablation_drop", first_order_drop)
    assert not check("ch05_channel_ablation_drop", lambda h, a, t: -ablation_drop(h, a, t))  # ablated - original


def test_cue_mass_check(check):
    assert check("ch05_cue_mass", lambda m, b: m[b[1]:b[3], b[0]:b[2]].sum() / m.sum())
    assert not check("ch05_cue_mass", lambda m, b: m[b[0]:b[2], b[1]:b[3]].sum() / m.sum())  # x and y swapped
    assert not check("ch05_cue_mass", lambda m, b: m[b[1]:b[3] + 1, b[0]:b[2] + 1].sum() / m.sum())  # inclusive edges
    assert not check("ch05_cue_mass", lambda m, b: m[b[1]:b[3], b[0]:b[2]].mean() / m.mean())  # mean, not sum


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
def test_channel_ablation_hidden_cases_catch_gradient_times_activation(hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold a head whose ReLU clips the logit
    when a channel is removed (the chapter's point: gradient x activation is not the removal's effect there) and a
    dead channel."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch05_channel_ablation_drop", ablation_drop, hidden_seed=hidden_seed)
    assert not run_check_cell("ch05_channel_ablation_drop", first_order_drop, hidden_seed=hidden_seed)


def last_row_dropped(heatmap, box):
    """``y1 - 1`` when the box reaches the map's last row (a "safe" index): right unless the box is on the border."""
    x0, y0, x1, y1 = box
    return heatmap[y0:min(y1, heatmap.shape[0] - 1), x0:x1].sum() / heatmap.sum()


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
def test_cue_mass_hidden_cases_hold_a_box_on_the_border(hidden_seed):
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch05_cue_mass", last_row_dropped, hidden=False)
    right = lambda m, b: m[b[1]:b[3], b[0]:b[2]].sum() / m.sum()                      # noqa: E731
    assert run_check_cell("ch05_cue_mass", right, hidden_seed=hidden_seed)
    assert not run_check_cell("ch05_cue_mass", last_row_dropped, hidden_seed=hidden_seed)


@pytest.mark.parametrize("kinds", ["ABLATION_KINDS", "CUE_KINDS"])
def test_hidden_cases_change_with_the_hidden_seed(kinds):
    assert drawn_cases_differ_by_seed(getattr(ch05, kinds))


def test_saturation_experiment_check_passes_the_students_seed_only(check):
    from camlab.exercises.ch05 import saturation_shift_reference

    assert check("ch05_saturation_shift", saturation_shift_reference)
    # an answer for another seed (copied from another student) fails, and so does one that forgets the truth
    assert not check("ch05_saturation_shift", lambda seed, gain: saturation_shift_reference(seed + 1, gain))
    forgets_truth = lambda seed, gain: saturation_shift_reference(seed, gain) + 0.5  # noqa: E731
    assert not check("ch05_saturation_shift", forgets_truth)


def test_saturation_shift_is_zero_for_a_linear_gate_and_large_for_a_saturated_one():
    from camlab.exercises.ch05 import saturation_shift_reference

    assert saturation_shift_reference(0, 1e-3).abs().max() < 1e-3
    assert saturation_shift_reference(0, 10.0).mean() < -0.3
