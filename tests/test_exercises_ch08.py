"""Chapter 08's capstone check: a subclass passes when its own channel_weights follow the task's formula (two variants
camlab does not ship) and it keeps the explainer contract; borrowing camlab's method, a different formula or a broken
contract fails. Hidden cases come from the grader's HIDDEN_SEED: another seed, other cases."""
from __future__ import annotations

import pytest
import torch

import camlab
from camlab.course.student import run_check_cell
from camlab.exercises import NOT_DONE, check_custom_method
from tests.exercise_checks import check  # noqa: F401 (the fixture)


class PositiveXGradCAM(camlab.GradientMethod):   # exercise 1, written another way than the instructor's
    def channel_weights(self, activations, gradients):
        total = activations.sum(dim=(2, 3))
        weighted = (activations * gradients.clamp(min=0)).sum(dim=(2, 3))
        return torch.where(total != 0, weighted / torch.where(total != 0, total, 1.0), 0.0)


class MaxGradCAM(camlab.GradientMethod):         # exercise 2
    def channel_weights(self, activations, gradients):
        active = activations > 0
        largest = gradients.masked_fill(~active, float("-inf")).amax(dim=(2, 3))
        return torch.where(active.any(dim=(2, 3)), largest, torch.zeros_like(largest))


class MyXGradCAM(camlab.GradientMethod):         # the old exercise: the negative gradients count too
    def channel_weights(self, activations, gradients):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return torch.where(total != 0, activations * gradients / torch.where(total != 0, total, 1.0), 0.0).sum((2, 3))


class PositiveProductFirst(camlab.GradientMethod):  # clamps the weight after summing, not each gradient
    def channel_weights(self, activations, gradients):
        return MyXGradCAM.channel_weights(self, activations, gradients).clamp(min=0)


class PlainMaxGradient(camlab.GradientMethod):   # the largest gradient anywhere, active or not
    def channel_weights(self, activations, gradients):
        return gradients.amax(dim=(2, 3))


class MaskedToZero(camlab.GradientMethod):       # zeroes the inactive positions: a negative maximum becomes 0
    def channel_weights(self, activations, gradients):
        return (gradients * (activations > 0)).amax(dim=(2, 3))


class MeanGradient(camlab.GradientMethod):  # Grad-CAM's weights, not the task's
    def channel_weights(self, activations, gradients):
        return gradients.mean(dim=(2, 3))


class ZeroSumIsNaN(camlab.GradientMethod):  # forgets the channels whose activations sum to 0
    def channel_weights(self, activations, gradients):
        return (activations * gradients.clamp(min=0)).sum((2, 3)) / activations.sum((2, 3))


class SubclassOfXGradCAM(camlab.XGradCAM):  # the reviewers' shortcut: camlab's own method
    pass


class CallsXGradCAM(camlab.XGradCAM):
    def channel_weights(self, activations, gradients):
        return super().channel_weights(activations, gradients)


class BorrowsTheFunction(camlab.GradientMethod):
    channel_weights = camlab.XGradCAM.channel_weights


class LeavesAHook(PositiveXGradCAM):
    def channel_weights(self, activations, gradients):
        self.model.register_forward_hook(lambda *args: None)
        return super().channel_weights(activations, gradients)


class Unscaled(PositiveXGradCAM):
    def __call__(self, x, target=None, raw=False):
        return super().__call__(x, target, raw=True) * 100


class Unfinished(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        raise NotImplementedError("not done yet")


def test_own_positive_xgradcam_passes(check):
    assert check("ch08_custom_xgradcam", PositiveXGradCAM)


@pytest.mark.parametrize("shortcut", [SubclassOfXGradCAM, CallsXGradCAM, BorrowsTheFunction, camlab.XGradCAM])
def test_camlabs_own_xgradcam_in_any_disguise_fails(shortcut, check):
    assert not check("ch08_custom_xgradcam", shortcut)


@pytest.mark.parametrize("wrong", [MyXGradCAM, PositiveProductFirst, MeanGradient, ZeroSumIsNaN, MaxGradCAM])
def test_other_formulas_fail_the_positive_xgradcam_task(wrong, check):
    assert not check("ch08_custom_xgradcam", wrong)


def test_active_maxgrad_task_passes_the_masked_maximum(check):
    assert check("ch08_custom_maxgrad", MaxGradCAM)


@pytest.mark.parametrize("wrong", [PlainMaxGradient, MaskedToZero, PositiveXGradCAM])
def test_other_formulas_fail_the_active_maxgrad_task(wrong, check):
    assert not check("ch08_custom_maxgrad", wrong)


def test_the_references_match_the_worked_examples_worked_by_hand():
    from camlab.exercises.ch08 import TASKS

    for task, (reference, examples, _) in TASKS.items():
        for (activations, gradients), expected in examples:
            assert torch.allclose(reference(activations, gradients), expected), task


@pytest.mark.parametrize("task", ["positive_xgradcam", "active_maxgrad"])
def test_hidden_cases_depend_on_the_seed_and_hold_the_edge_cases(task):
    """Two HIDDEN_SEEDs give different cases; for seeds 0-4 (and 11, 12), every case has a channel active nowhere
    (weight 0), one whose gradients are negative wherever it is active, and one whose largest gradient lies where it
    is inactive."""
    from camlab.exercises.ch08 import hidden_cases

    first, again, other = hidden_cases(task, 11), hidden_cases(task, 11), hidden_cases(task, 12)
    assert all(torch.equal(a[0][0], b[0][0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(a[0][0].shape != b[0][0].shape or not torch.equal(a[0][0], b[0][0]) for a, b in zip(first, other))
    for (activations, gradients), _ in first + other + [case for seed in range(5) for case in hidden_cases(task, seed)]:
        active = activations > 0
        assert (~active.any(dim=(2, 3))).any(dim=1).all()
        negative_where_active = (torch.where(active, gradients, -1.0) < 0).all(dim=(2, 3)) & active.any(dim=(2, 3))
        assert negative_where_active.any(dim=1).all()
        largest_inactive = gradients.amax(dim=(2, 3)) > torch.where(active, gradients, -99.0).amax(dim=(2, 3))
        assert (largest_inactive & active.any(dim=(2, 3))).any(dim=1).all()


def test_the_hidden_check_uses_the_graders_seed():
    """The check cell's hidden part draws its cases from HIDDEN_SEED: the right class passes under any seed."""
    assert run_check_cell("ch08_custom_maxgrad", MaxGradCAM, hidden_seed=123456789)
    assert not run_check_cell("ch08_custom_maxgrad", MaskedToZero, hidden_seed=123456789)


@pytest.mark.parametrize("broken", [LeavesAHook, Unscaled])
def test_contract_violations_fail(broken, check):
    assert not check("ch08_custom_xgradcam", broken)


def test_the_message_names_the_shortcut(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    result = check_custom_method(SubclassOfXGradCAM)
    assert not result and "subclass of camlab.XGradCAM" in result.message


def test_unfinished_class_is_not_done_yet_and_does_not_raise(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    result = check_custom_method(Unfinished)
    assert not result and result.message.startswith(NOT_DONE)


def test_an_instance_instead_of_a_class_fails_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    result = check_custom_method(PositiveXGradCAM(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1)), layer="0"))
    assert not result and "class itself" in result.message


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="tasks"):
        check_custom_method(PositiveXGradCAM, task="nope")


def test_capstone_experiment_passes_the_students_seed_only(check):
    """The right per-scene differences for seed 0 pass; another seed, the wrong sign and the wrong layer fail."""
    from camlab.exercises.ch08 import maxgrad_shift_reference

    assert check("ch08_maxgrad_shift", maxgrad_shift_reference)
    assert not check("ch08_maxgrad_shift", lambda seed: maxgrad_shift_reference(seed + 1))
    assert not check("ch08_maxgrad_shift", lambda seed: -maxgrad_shift_reference(seed))
    assert not check("ch08_maxgrad_shift", lambda seed: maxgrad_shift_reference(seed, layer="features"))


def test_capstone_shift_is_one_value_per_scene_and_zero_for_xgradcam_against_itself():
    import camlab
    from camlab.exercises.ch08 import maxgrad_shift_reference

    shift = maxgrad_shift_reference(0)
    assert shift.shape == (40,) and torch.isfinite(shift).all()
    # the outcome the model answer of question 5 reads (seed 0); the student's notebook does not assert it
    assert camlab.stats.verdict(shift.double().numpy(), delta=0.02).word == "lower"
    # behind lab_gap's GAP head (layer "features") the gradient is constant in space, so its maximum over the active
    # positions is its mean (a channel active nowhere adds nothing to the map) and MaxGradCAM's map is Grad-CAM's =
    # XGrad-CAM's: the shift vanishes there
    assert maxgrad_shift_reference(0, layer="features").abs().max() < 1e-5
    assert camlab.METHODS["xgradcam"] is camlab.XGradCAM


def test_grading_traps_the_references_but_leaves_the_experiments_baseline_usable():
    """While grading, camlab's own weights of exercises 1-2 raise in the sandbox; XGrad-CAM does not, because
    exercise 4 compares the student's MaxGradCAM with it (trapped, the instructor's own answer scored 0)."""
    from camlab.exercises._own_work import own_work_for

    trapped = own_work_for("08_summary")
    assert {"camlab.exercises.ch08:positive_xgradcam_weights",
            "camlab.exercises.ch08:active_max_gradient_weights"} <= set(trapped)
    assert "camlab.methods.gradient:XGradCAM.channel_weights" not in trapped
