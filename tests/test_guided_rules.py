"""Guided backprop and deconvnet apply their rule to every spelling of a ReLU, and never fall back to the plain
gradient silently: a threshold or clamp that is certainly a ReLU gets the rule, an activation camlab cannot see
(inside TorchScript) or that is not a ReLU gets a warning naming it, a TorchScript model is refused.

Each test failed on main at e3ff581 unless its docstring says it guards a behaviour that already held."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlab


class TwoConvs(nn.Module):
    """conv -> act -> conv -> act -> GAP -> fc, with ``act`` a module or a function of the feature map."""

    def __init__(self, act):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)
        self.act = act

    def forward(self, x):
        return self.fc(self.act(self.conv2(self.act(self.conv1(x)))).mean((2, 3)))


RELU_SPELLINGS = {
    "nn.Threshold(0, 0)": lambda: nn.Threshold(0, 0),
    "nn.Threshold(0, 0, inplace=True)": lambda: nn.Threshold(0.0, 0.0, inplace=True),
    "F.threshold(x, 0, 0)": lambda: (lambda x: F.threshold(x, 0, 0)),
    "F.threshold_(x, 0, 0)": lambda: (lambda x: F.threshold_(x.clone(), 0, 0)),
    "torch.clamp(x, min=0)": lambda: (lambda x: torch.clamp(x, min=0)),
    "x.clamp(0)": lambda: (lambda x: x.clamp(0)),
    "x.clamp_(min=0)": lambda: (lambda x: x.clone().clamp_(min=0)),
    "x.clip(min=0)": lambda: (lambda x: x.clip(min=0)),
    "torch.clamp_min(x, 0)": lambda: (lambda x: torch.clamp_min(x, 0)),
    "x.clamp_min(0.0)": lambda: (lambda x: x.clamp_min(0.0)),
}


def network(act, seed: int = 0) -> TwoConvs:
    torch.manual_seed(seed)
    return TwoConvs(act).eval()


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("spelling", list(RELU_SPELLINGS))
def test_every_spelling_of_relu_gets_the_rule_exactly_as_nn_relu(spelling, method):
    """Failed on main for every spelling here: the plain gradient came back, without a warning."""
    x = torch.randn(2, 3, 8, 8)
    expected = camlab.build(method, network(nn.ReLU()))(x, target=1, raw=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "keeps its plain gradient" warning either
        got = camlab.build(method, network(RELU_SPELLINGS[spelling]()))(x, target=1, raw=True)
    torch.testing.assert_close(got, expected)
    plain = camlab.Gradient(network(nn.ReLU()))(x, target=1, raw=True)
    assert not torch.allclose(got, plain)  # the rule made a difference on this input


@pytest.mark.parametrize("act, name", [
    (lambda: nn.Threshold(0.1, 0.0), "Threshold"),
    (lambda: (lambda x: F.threshold(x, 0.1, -1.0)), "Threshold"),
])
def test_a_threshold_that_is_not_a_relu_keeps_its_gradient_with_a_warning_naming_it(act, name):
    with pytest.warns(UserWarning, match=rf"{name} in TwoConvs keep their plain gradient"):
        camlab.GuidedBackprop(network(act()))(torch.randn(1, 3, 8, 8), target=0)


def test_other_clamps_are_not_activations_and_pass_silently():
    """A clamp with another bound (``clamp_min(eps)`` before a division) is not a ReLU: its gradient is its own,
    without a warning. Guards a behaviour that held on main."""
    def relu_then_normalise(x):
        x = F.relu(x)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)

    x = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        camlab.GuidedBackprop(network(relu_then_normalise))(x, target=0)


class ScriptedActivation(TwoConvs):
    def __init__(self):
        super().__init__(torch.jit.script(nn.ReLU()))


def test_relus_inside_a_torchscript_submodule_are_named_in_a_warning():
    """Hooks and the function mode cannot reach code that TorchScript runs; the warning says so."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"ReLU-like ops inside the TorchScript module 'act'.*plain gradient"):
        camlab.Deconvnet(ScriptedActivation().eval())(torch.randn(1, 3, 8, 8), target=0)


def test_a_torchscript_submodule_without_relus_is_not_warned_about():
    model = network(nn.ReLU())
    model.conv1 = torch.jit.script(model.conv1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        camlab.GuidedBackprop(model)(torch.randn(1, 3, 8, 8), target=0)


def test_a_torchscript_model_is_refused_with_what_to_pass_instead():
    scripted = torch.jit.script(network(nn.ReLU()))
    with pytest.raises(TypeError, match=r"TorchScript model.*pass the nn.Module before torch.jit.script"):
        camlab.GuidedBackprop(scripted)(torch.randn(1, 3, 8, 8), target=0)
