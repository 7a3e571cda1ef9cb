"""Every registered method keeps the model as it found it: no hooks left, train/eval mode and ``requires_grad``
flags restored, parameters and buffers unchanged, also after an exception; batches with one target per image; no NaN
on flat inputs; works inside ``torch.no_grad()`` and ``torch.inference_mode()``; reachable through ``explain``."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import camlab
from camlab.methods import METHODS

NAMES = sorted(METHODS)


class TinyNet(nn.Module):
    """conv-BN-ReLU(inplace)-conv-ReLU(inplace) -> GAP -> dropout -> linear (3 classes); 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-0.1, 0.1)
        model.features[1].running_var.uniform_(0.5, 1.5)
    return model


#: fast settings: no progress bars, few samples (camlab.build gives each method those it takes)
FAST = {"progress": False, "n_samples": 2, "patch": 4, "stride": 4}


def build(name: str, model: nn.Module):
    return camlab.build(name, model, **FAST)


def snapshot(model: nn.Module) -> dict:
    return {
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "hooks": {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks),
                         dict(getattr(m, "_backward_pre_hooks", {})))
                  for name, m in model.named_modules()},
        "state": {key: value.clone() for key, value in model.state_dict().items()},
        "grads": {name: p.grad for name, p in model.named_parameters()},
        "modules": {name: type(m) for name, m in model.named_modules()},
        "forward": {name: m.__dict__.get("forward") for name, m in model.named_modules()},
    }


def assert_unchanged(before: dict, after: dict) -> None:
    for key in ("training", "requires_grad", "hooks", "grads", "modules", "forward"):
        assert before[key] == after[key], key
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key


def prepared_model() -> nn.Module:
    """In train mode, with one frozen parameter and the BN layer in eval mode (a mixed state to restore)."""
    model = tiny_net().train()
    model.features[0].weight.requires_grad_(False)
    model.features[1].eval()
    return model


def x_batch() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", NAMES)
def test_state_restored_and_batch_targets_per_image(name):
    model = prepared_model()
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = build(name, model)(x_batch(), target=[0, 2])
    assert_unchanged(before, snapshot(model))
    expected = (2, 3, 8, 8) if issubclass(METHODS[name], camlab.InputMethod) else (2, 8, 8)
    assert result.shape == expected
    assert torch.isfinite(result).all() and result.min() >= 0 and result.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_state_restored_after_exception_in_target(name):
    model = prepared_model()
    before = snapshot(model)

    def failing_target(logits):
        raise KeyError("boom")

    if not getattr(METHODS[name], "uses_target", True):  # Eigen-CAM, RandomCAM: the target is never called
        build(name, model)(x_batch(), target=failing_target)
    else:
        with pytest.raises((KeyError, TypeError)):
            build(name, model)(x_batch(), target=failing_target)
    assert_unchanged(before, snapshot(model))


@pytest.mark.parametrize("name", NAMES)
def test_no_nan_on_flat_input(name):
    model = tiny_net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for raw in (False, True):
            result = build(name, model)(torch.zeros(2, 3, 8, 8), target=1, raw=raw)
            assert torch.isfinite(result).all()


@pytest.mark.parametrize("name", NAMES)
def test_works_inside_no_grad_and_inference_mode_on_frozen_model(name):
    model = tiny_net().eval().requires_grad_(False)
    reference = build(name, model)(x_batch(), target=[1, 0])
    with torch.no_grad():
        inside_no_grad = build(name, model)(x_batch(), target=[1, 0])
    with torch.inference_mode():
        inside_inference = build(name, model)(x_batch(), target=[1, 0])
    assert torch.allclose(reference, inside_no_grad, atol=1e-6)
    assert torch.allclose(reference, inside_inference, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_explain_accepts_every_method_name(name):
    model = tiny_net().eval()
    out = camlab.explain(model, x_batch(), method=name, target=0, **FAST)
    assert torch.isfinite(out).all()


def test_ablationcam_hook_removed_when_model_fails_mid_run():
    """A model whose head raises on the second call (the first ablation batch): the temporary replacement hook is
    gone afterwards and the state is restored."""
    model = tiny_net().eval()
    calls = {"n": 0}

    def fail_after_first(module, inputs, output):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("failure in the head")

    handle = model.fc.register_forward_hook(fail_after_first)
    before = snapshot(model)
    with pytest.raises(RuntimeError):
        camlab.AblationCAM(model, progress=False, batch_size=2)(x_batch(), target=0)
    assert_unchanged(before, snapshot(model))
    handle.remove()


def test_seeded_methods_leave_global_rng_alone_and_repeat():
    model = tiny_net().eval()
    state = torch.random.get_rng_state()
    first = camlab.SmoothGradCAMPlusPlus(model, n_samples=3)(x_batch(), target=0)
    second = camlab.SmoothGradCAMPlusPlus(model, n_samples=3)(x_batch(), target=0)
    random_maps = camlab.RandomCAM(model, seed=3)(x_batch())
    assert torch.equal(first, second)
    assert torch.equal(random_maps, camlab.RandomCAM(model, seed=3)(x_batch()))
    assert torch.equal(state, torch.random.get_rng_state())
