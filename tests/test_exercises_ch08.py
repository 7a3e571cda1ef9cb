"""Chapter 08's capstone check: a subclass passes when it follows the contract and the task's formula."""
from __future__ import annotations

import pytest
import torch

import camlab
from camlab.exercises import ExerciseFailed, check_custom_method


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setenv("CAMLAB_STRICT_CHECKS", "1")


class MyXGradCAM(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return torch.where(total != 0, activations * gradients / torch.where(total != 0, total, 1.0), 0.0).sum((2, 3))


class MaxGradCAM(camlab.GradientMethod):
    def channel_weights(self, activations, gradients):
        return gradients.amax(dim=(2, 3))


def test_xgradcam_subclass_passes_and_camlab_xgradcam_too():
    assert check_custom_method(MyXGradCAM)
    assert check_custom_method(camlab.XGradCAM)


def test_maxgrad_task():
    assert check_custom_method(MaxGradCAM, task="maxgrad")
    with pytest.raises(ExerciseFailed):
        check_custom_method(MyXGradCAM, task="maxgrad")


def test_gradcam_is_not_xgradcam_on_a_head_without_gap():
    with pytest.raises(ExerciseFailed):
        check_custom_method(camlab.GradCAM)


class LeavesAHook(MyXGradCAM):
    def channel_weights(self, activations, gradients):
        self.model.register_forward_hook(lambda *args: None)
        return super().channel_weights(activations, gradients)


class Unscaled(MyXGradCAM):
    def __call__(self, x, target=None, raw=False):
        return super().__call__(x, target, raw=True) * 100


@pytest.mark.parametrize("broken", [LeavesAHook, Unscaled])
def test_contract_violations_fail(broken):
    with pytest.raises(ExerciseFailed):
        check_custom_method(broken)


def test_an_instance_instead_of_a_class_fails_with_a_clear_message(capsys, monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS")
    result = check_custom_method(MyXGradCAM(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1)), layer="0"))
    assert not result and "class itself" in result.message


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="tasks"):
        check_custom_method(MyXGradCAM, task="nope")
