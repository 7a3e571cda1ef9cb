"""Layers that are not simply "one chain to the output": a layer off the output path is refused by every layer
method (never an all-zero or plausible-looking map), and LayerCAM fuses parallel branches of a frozen model.

Each test here failed on main at e3ff581 (before issue 10's holes were closed), except where its docstring says it
guards a behaviour that already held."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from camlab.methods.registry import METHODS, takes_layer
from tests.snapshots import ModelSnapshot

LAYER_METHODS = [name for name, cls in METHODS.items() if takes_layer(cls)]


class AuxiliaryHead(nn.Module):
    """stem -> body (conv + ReLU) -> GAP -> fc is the output (a CAM head); ``aux`` runs on the stem's output (an
    auxiliary head, as in Inception / GoogLeNet training) and its result is kept on the module but never reaches
    the output."""

    def __init__(self, detach_head: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.aux = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.detach_head = detach_head
        self.aux_output = None

    def forward(self, x):
        h = self.stem(x).relu()
        self.aux_output = self.aux(h)
        features = self.body(h).mean((2, 3))
        if self.detach_head:  # a head autograd cannot follow (as in a quantised or rounded head)
            features = features.detach()
        return self.fc(features)


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_layer_method_refuses_a_layer_that_does_not_feed_the_output(name):
    """Failed on main for scorecam (plausible map), ablationcam (all-zero map), eigencam and random (plausible maps)
    and cam (a ValueError blaming the head); the gradient methods already refused."""
    model = AuxiliaryHead()
    snapshot = ModelSnapshot.of(model)
    explainer = camlab.build(name, model, "aux", progress=False)
    with pytest.raises(RuntimeError, match=r"does not depend on layer 'aux'.*choose a layer on the path"):
        explainer(torch.randn(2, 3, 8, 8), target=0)
    snapshot.assert_unchanged(model)


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_layer_method_still_explains_a_layer_on_the_path(name):
    """The check refuses only the auxiliary head: the body, on the path, gives a finite map (Guided Grad-CAM's is an
    input-space image)."""
    maps = camlab.build(name, AuxiliaryHead(), "body", progress=False)(torch.randn(2, 3, 8, 8), target=0)
    assert maps.shape[0] == 2 and maps.shape[-2:] == (8, 8) and torch.isfinite(maps).all()


def count_forward_calls(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_a_head_autograd_cannot_follow_is_checked_by_a_nan_pass_once_per_model_and_layer():
    """With ``detach`` in the head no autograd path exists from any layer to the output, so the gradient-free
    methods set the layer's output to NaN in one extra forward pass: the body (NaN reaches the logits) is accepted,
    the auxiliary head (logits unchanged) is refused. The check runs on the first call only."""
    model = AuxiliaryHead(detach_head=True)
    calls = count_forward_calls(model)
    eigen = camlab.EigenCAM(model, layer="body")
    x = torch.randn(2, 3, 8, 8)
    first = eigen(x)
    assert calls[0] == 2  # the pass itself and the NaN pass
    assert torch.equal(eigen(x), first) and calls[0] == 3  # second call: no check
    with pytest.raises(RuntimeError, match="does not depend on layer 'aux'"):
        camlab.EigenCAM(model, layer="aux")(x)


def test_the_path_check_costs_no_extra_forward_pass_when_autograd_sees_the_path():
    model = AuxiliaryHead()
    calls = count_forward_calls(model)
    camlab.EigenCAM(model, layer="body")(torch.randn(1, 3, 8, 8))
    assert calls[0] == 1


class TwoBranches(nn.Module):
    """stem -> (left, right) in parallel -> GAP each -> concatenated -> fc: neither branch layer depends on the
    other, so with frozen parameters only the first to run is a leaf of the autograd graph."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = self.stem(x).relu()
        return self.fc(torch.cat([self.left(h).relu().mean((2, 3)), self.right(h).relu().mean((2, 3))], 1))


@pytest.mark.parametrize("layers", [["left", "right"], ["right", "left"]])
def test_multi_layer_layercam_on_a_frozen_model_with_parallel_branches_equals_the_unfrozen_map(layers):
    """Failed on main: "One of the differentiated Tensors does not require grad" (the second branch's output was
    outside the graph). Freezing the parameters must not change the map, and they stay frozen."""
    torch.manual_seed(0)
    model, x = TwoBranches(), torch.randn(2, 3, 8, 8)
    expected = camlab.LayerCAM(model, layer=layers)(x, target=1, raw=True)
    model.requires_grad_(False)
    frozen = camlab.LayerCAM(model, layer=layers)(x, target=1, raw=True)
    torch.testing.assert_close(frozen, expected)
    assert not any(p.requires_grad for p in model.parameters())


def test_multi_layer_layercam_refuses_a_list_with_one_layer_off_the_path():
    """Failed on main: the auxiliary head got an all-zero gradient and was silently fused into the map."""
    with pytest.raises(RuntimeError, match=r"does not depend on layer 'aux'"):
        camlab.LayerCAM(AuxiliaryHead(), layer=["body", "aux"])(torch.randn(1, 3, 8, 8), target=0)
