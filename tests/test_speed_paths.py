"""The fast paths keep the maths: BatchNorm folding into a private copy (never the caller's model), the measured batch
size (a fake clock, no timing), and guided backprop's module-hook path next to its TorchFunctionMode path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from camlab.methods import _calibrate
from camlab.methods._fold import folded_copy


def randomised_bn(channels: int, cls=nn.BatchNorm2d, **kwargs) -> nn.Module:
    norm = cls(channels, **kwargs)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def conv_bn_relu() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), randomised_bn(4), nn.ReLU(inplace=True),
                         nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), randomised_bn(4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def state(model: nn.Module) -> dict:
    return {"types": [type(m) for m in model.modules()],
            "tensors": {k: v.clone() for k, v in model.state_dict().items()},
            "training": [m.training for m in model.modules()]}


def test_folded_copy_equals_the_model_and_leaves_it_untouched():
    model = conv_bn_relu()
    before = state(model)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    twin = folded_copy(model, x[:1], expected[:1])
    assert twin is not None and twin is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())
    with torch.no_grad():
        assert torch.allclose(twin(x), expected, rtol=1e-5, atol=1e-6)
    after = state(model)
    assert before["types"] == after["types"] and before["training"] == after["training"]
    assert all(torch.equal(v, after["tensors"][k]) for k, v in before["tensors"].items())


def test_fold_by_hand():
    """1x1 conv weight 2, bias 1; BN mean 3, var 4 - eps, gamma 5, beta 6: y = 5 (2x + 1 - 3) / 2 + 6 = 5x + 1,
    so the folded conv has weight 5 and bias 1."""
    conv, norm = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        norm.running_mean.fill_(3.0), norm.running_var.fill_(4.0 - norm.eps)
        norm.weight.fill_(5.0), norm.bias.fill_(6.0)
    twin = folded_copy(nn.Sequential(conv, norm).eval(), torch.zeros(1, 1, 1, 1))
    assert twin[0].weight.item() == pytest.approx(5.0) and twin[0].bias.item() == pytest.approx(1.0)
    assert isinstance(twin[1], nn.Identity)


def test_timm_batchnorm_act_keeps_its_activation():
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    norm = randomised_bn(4, timm_layers.BatchNormAct2d, act_layer=nn.ReLU6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm).eval()
    x = 10 * torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
    twin = folded_copy(model, x, expected)
    assert twin is not None and isinstance(twin[1][-1], nn.ReLU6)
    assert expected.max() == 6 and expected.min() == 0  # the clamp is exercised at both ends
    with torch.no_grad():
        assert torch.allclose(twin(x), expected, atol=1e-5)


class SharedConvOutput(nn.Module):
    """conv -> BN, and the same conv output added afterwards: folding would change the second use."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(2, 2, 1), randomised_bn(2)

    def forward(self, x):
        y = self.conv(x)
        return (self.norm(y) + y).flatten(1)


def test_conv_output_with_a_second_consumer_is_not_folded():
    torch.manual_seed(0)
    model = SharedConvOutput().eval()
    x = torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        expected = model(x)
    assert folded_copy(model, x, expected) is None


def test_models_without_batchnorm_are_used_as_they_are():
    assert folded_copy(nn.Sequential(nn.Conv2d(1, 1, 1)), torch.zeros(1, 1, 2, 2)) is None


def test_scorecam_fold_and_no_fold_agree_and_model_is_untouched():
    model = conv_bn_relu()
    before = state(model)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    folded = camlab.ScoreCAM(model, layer="4", progress=False)(x, target=[0, 2], raw=True)
    plain = camlab.ScoreCAM(model, layer="4", progress=False, fold=False, batch_size=5)(x, target=[0, 2], raw=True)
    assert torch.allclose(folded, plain, rtol=1e-4, atol=1e-6)
    after = state(model)
    assert all(torch.equal(v, after["tensors"][k]) for k, v in before["tensors"].items())


class FakeClock:
    """Advances by ``cost(batch)`` per call of ``run``: per item 1.0 at 4, 0.5 at 8, 0.4 at 16, 0.6 at 32."""

    PER_ITEM = {4: 1.0, 8: 0.5, 16: 0.4, 32: 0.6, 64: 0.9}

    def __init__(self):
        self.now, self.calls = 0.0, []

    def run(self, start, stop):
        self.calls.append((start, stop))
        size = stop - start
        self.now += size * self.PER_ITEM.get(size, 1.0)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_calibrate.time, "perf_counter", lambda: fake.now)
    return fake


def test_batch_size_is_probed_on_the_real_work_then_remembered(clock):
    owner = nn.Linear(1, 1)
    chosen = _calibrate.run_in_batches(200, clock.run, owner, "key", torch.device("cpu"))
    # probe: 4,4, 8,8, 16,16, 32,32 (worse than 16 by > 5%: stop), then the rest at 16
    assert chosen == 16
    sizes = [stop - start for start, stop in clock.calls]
    assert sizes[:8] == [4, 4, 8, 8, 16, 16, 32, 32] and set(sizes[8:-1]) == {16}
    assert [start for start, _ in clock.calls] == [0] + [stop for _, stop in clock.calls[:-1]]
    assert clock.calls[-1][1] == 200
    assert _calibrate.cached_batch_size(owner, "key") == 16
    clock.calls.clear()
    _calibrate.run_in_batches(40, clock.run, owner, "key", torch.device("cpu"))
    assert [stop - start for start, stop in clock.calls] == [16, 16, 8]


def test_too_little_work_to_finish_the_probe_is_not_remembered(clock):
    owner = nn.Linear(1, 1)
    _calibrate.run_in_batches(30, clock.run, owner, "key", torch.device("cpu"))
    assert [stop - start for start, stop in clock.calls][:4] == [4, 4, 8, 8]
    assert clock.calls[-1][1] == 30
    assert _calibrate.cached_batch_size(owner, "key") is None


# Guided backprop / deconvnet: the first call on a model runs the TorchFunctionMode and finds out whether ReLU-like
# functions run outside activation modules; later calls on module-only models use module hooks only.
class TwoLayer(nn.Module):
    """x (1,3,1,1) -> flatten -> identity linear -> activation -> linear with row (1, 1, -1) (as in
    tests/test_methods_formulas.py: vanilla (1, 0, -1), guided (1, 0, 0), deconvnet (1, 1, 0))."""

    def __init__(self, activation):
        super().__init__()
        self.hidden, self.out, self.activation = nn.Linear(3, 3, bias=False), nn.Linear(3, 1, bias=False), activation
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(3))
            self.out.weight.copy_(torch.tensor([[1.0, 1.0, -1.0]]))

    def forward(self, x):
        return self.out(self.activation(self.hidden(x.flatten(1))))


class FunctionalRelu(nn.Module):
    def forward(self, h):
        return torch.nn.functional.relu(h, inplace=True)


MODULE_CASES = [(nn.ReLU(), [1.0, -1.0, 2.0]), (nn.ReLU(inplace=True), [1.0, -1.0, 2.0]),
                (nn.ReLU6(), [1.0, 7.0, 2.0]), (nn.ReLU6(inplace=True), [1.0, 7.0, 2.0])]


@pytest.mark.parametrize("activation, x", MODULE_CASES)
def test_module_only_models_switch_to_module_hooks_with_the_same_rule(activation, x):
    from camlab.methods._backward_rules import uses_functional_activations

    model = TwoLayer(activation).eval()
    inputs = torch.tensor(x).reshape(1, 3, 1, 1)
    assert uses_functional_activations(model) is None
    first = camlab.GuidedBackprop(model)(inputs, target=0, raw=True).flatten().tolist()
    assert uses_functional_activations(model) is False
    for _ in range(2):  # module-hook path, twice: hooks are gone after each call
        assert camlab.GuidedBackprop(model)(inputs, target=0, raw=True).flatten().tolist() == first == [1, 0, 0]
        assert camlab.Deconvnet(model)(inputs, target=0, raw=True).flatten().tolist() == [1, 1, 0]
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_functional_relu_inside_a_module_keeps_the_function_mode():
    from camlab.methods._backward_rules import uses_functional_activations

    model = TwoLayer(FunctionalRelu()).eval()
    inputs = torch.tensor([1.0, -1.0, 2.0]).reshape(1, 3, 1, 1)
    for _ in range(2):
        assert camlab.GuidedBackprop(model)(inputs, target=0, raw=True).flatten().tolist() == [1, 0, 0]
        assert camlab.Deconvnet(model)(inputs, target=0, raw=True).flatten().tolist() == [1, 1, 0]
    assert uses_functional_activations(model) is True


def test_module_hook_path_still_warns_about_plain_activations():
    model = TwoLayer(nn.Sequential(nn.ReLU(), nn.SiLU())).eval()
    for _ in range(2):
        with pytest.warns(UserWarning, match="SiLU") as record:
            camlab.GuidedBackprop(model)(torch.ones(1, 3, 1, 1), target=0)
        assert len(record) == 1


def test_module_hook_path_removes_its_hooks_after_an_exception():
    model = TwoLayer(nn.ReLU(inplace=True)).eval()
    camlab.GuidedBackprop(model)(torch.ones(1, 3, 1, 1), target=0)

    def failing(logits):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        camlab.GuidedBackprop(model)(torch.ones(1, 3, 1, 1), target=failing)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_shared_relu_module_and_residual_add_match_the_function_mode():
    """A ResNet-style block using one in-place ReLU module twice, around a residual addition: the module-hook path
    gives bit-for-bit the TorchFunctionMode's result."""
    from camlab.methods._backward_rules import BackwardRuleMode

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            y = self.relu(self.conv1(x))
            y = self.relu(self.conv2(y) + x)
            return self.head(y.mean((2, 3)))

    model = Block().eval()
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    for rule, cls in (("guided", camlab.GuidedBackprop), ("deconvnet", camlab.Deconvnet)):
        method = cls(model)
        with_mode = method.input_gradient(x, [0, 1], BackwardRuleMode(rule))
        method(x, target=[0, 1])  # first call: the probe
        hooked = method(x, target=[0, 1], raw=True)
        assert torch.equal(hooked, with_mode)
