"""Chapter 08's capstone check: a subclass passes when its own channel_weights follow the task's formula and it keeps
the explainer contract; borrowing camlab's method, a different formula or a broken contract fails."""
from __future__ import annotations

import pytest
import torch

import camlab
from camlab.exercises import NOT_DONE, check_custom_method
from tests.exercise_checks import check  # noqa: F401 (the fixture)


class MyXGradCAM(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return torch.where(total != 0, activations * gradients / torch.where(total != 0, total, 1.0), 0.0).sum((2, 3))


class MaxGradCAM(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        return gradients.amax(dim=(2, 3))


class MeanGradient(camlab.GradientMethod):  # Grad-CAM's weights, not the task's
    def channel_weights(self, activations, gradients):
        return gradients.mean(dim=(2, 3))


class ZeroSumIsNaN(camlab.GradientMethod):  # forgets the channels whose activations sum to 0
    def channel_weights(self, activations, gradients):
        return (activations * gradients).sum((2, 3)) / activations.sum((2, 3))


class SubclassOfXGradCAM(camlab.XGradCAM):  # the reviewers' shortcut: camlab's own method
    pass


class CallsXGradCAM(camlab.XGradCAM):
    def channel_weights(self, activations, gradients):
        return super().channel_weights(activations, gradients)


class BorrowsTheFunction(camlab.GradientMethod):
    channel_weights = camlab.XGradCAM.channel_weights


class LeavesAHook(MyXGradCAM):
    def channel_weights(self, activations, gradients):
        self.model.register_forward_hook(lambda *args: None)
        return super().channel_weights(activations, gradients)


class Unscaled(MyXGradCAM):
    def __call__(self, x, target=None, raw=False):
        return super().__call__(x, target, raw=True) * 100


class Unfinished(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        raise NotImplementedError("not done yet")


def test_own_xgradcam_passes(check):
    assert check("ch08_custom_xgradcam", MyXGradCAM)


@pytest.mark.parametrize("shortcut", [SubclassOfXGradCAM, CallsXGradCAM, BorrowsTheFunction, camlab.XGradCAM])
def test_camlabs_own_xgradcam_in_any_disguise_fails(shortcut, check):
    assert not check("ch08_custom_xgradcam", shortcut)


@pytest.mark.parametrize("wrong", [MeanGradient, ZeroSumIsNaN, MaxGradCAM])
def test_other_formulas_fail_the_xgradcam_task(wrong, check):
    assert not check("ch08_custom_xgradcam", wrong)


def test_maxgrad_task_passes_the_largest_gradient_and_fails_xgradcam(check):
    assert check("ch08_custom_maxgrad", MaxGradCAM)
    assert not check("ch08_custom_maxgrad", MyXGradCAM)


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
    result = check_custom_method(MyXGradCAM(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1)), layer="0"))
    assert not result and "class itself" in result.message


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="tasks"):
        check_custom_method(MyXGradCAM, task="nope")


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
    # behind lab_gap's GAP head (layer "features") the gradient is constant in space, so max = mean and
    # MaxGradCAM's weights are Grad-CAM's = XGrad-CAM's: the shift vanishes there
    assert maxgrad_shift_reference(0, layer="features").abs().max() < 1e-5
    assert camlab.METHODS["xgradcam"] is camlab.XGradCAM
