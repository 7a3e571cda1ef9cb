"""No side effects: after any call, also after an exception, the model is exactly as it was."""
from __future__ import annotations

import pytest
import torch
import torchvision

import camlab
from tests.snapshots import ModelSnapshot
from tests.tiny_nets import GapNet


@pytest.mark.parametrize("method", ["gradcam", "cam"])
def test_model_in_train_mode_is_explained_in_eval_mode_and_left_in_train_mode(method):
    net = GapNet().train()
    net.features[1].eval()  # a mixed state must come back exactly
    snapshot = ModelSnapshot.of(net)
    x = torch.randn(2, 3, 8, 8)
    camlab.explain(net, x, method=method, target=0)
    snapshot.assert_unchanged(net)


def test_batchnorm_statistics_are_untouched_and_frozen_during_the_call():
    net = torchvision.models.resnet18(num_classes=5).train()
    snapshot = ModelSnapshot.of(net)
    x = torch.randn(2, 3, 64, 64)
    first = camlab.GradCAM(net, layer="layer4")(x, target=[0, 1], raw=True)
    second = camlab.GradCAM(net, layer="layer4")(x[:1], target=0, raw=True)
    snapshot.assert_unchanged(net)
    assert torch.allclose(first[0], second[0], atol=1e-5), "batch statistics leaked into the map"


def test_hooks_removed_after_exception_inside_the_call():
    net = GapNet()
    snapshot = ModelSnapshot.of(net)

    def failing_target(logits):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        camlab.GradCAM(net)(torch.randn(1, 3, 8, 8), target=failing_target)
    snapshot.assert_unchanged(net)
    assert torch.is_grad_enabled()


def test_works_inside_no_grad_and_inference_mode_and_restores_grad_mode():
    net = GapNet()
    x = torch.randn(1, 3, 8, 8)
    expected = camlab.GradCAM(net)(x, target=0, raw=True)
    with torch.no_grad():
        assert torch.allclose(camlab.GradCAM(net)(x, target=0, raw=True), expected)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        assert torch.allclose(camlab.GradCAM(net)(x, target=0, raw=True), expected)


def test_frozen_model_works_and_stays_frozen():
    net = GapNet()
    for p in net.parameters():
        p.requires_grad_(False)
    snapshot = ModelSnapshot.of(net)
    heat = camlab.GradCAM(net)(torch.randn(1, 3, 8, 8), target=0)
    assert heat.max() > 0
    snapshot.assert_unchanged(net)


def test_no_parameter_gradients_are_computed():
    net = GapNet()
    camlab.GradCAM(net)(torch.randn(1, 3, 8, 8), target=0)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("inplace", [False, True])
def test_inplace_relu_after_the_layer_cannot_corrupt_the_activations(inplace):
    """With layer = the conv before an in-place ReLU, the captured activation keeps its negative values."""
    net = GapNet(inplace=inplace)
    x = torch.randn(1, 3, 8, 8)
    signed = camlab.GradCAM(net, layer="features.2", relu=False)(x, target=0, raw=True)
    reference = camlab.GradCAM(GapNet(inplace=False), layer="features.2", relu=False)
    reference.model.load_state_dict(net.state_dict())
    assert torch.allclose(signed, reference(x, target=0, raw=True), atol=1e-6)


@pytest.mark.parametrize("arch, layer", [("vgg11_bn", "features"), ("densenet121", "features"),
                                         ("resnet18", "layer4"), ("mobilenet_v3_small", "features")])
def test_torchvision_models_with_inplace_and_functional_relu(arch, layer):
    net = torchvision.models.get_model(arch, num_classes=4).eval()
    snapshot = ModelSnapshot.of(net)
    heat = camlab.GradCAM(net, layer=layer)(torch.randn(2, 3, 64, 64), target=[0, 3])
    assert heat.shape == (2, 64, 64) and not torch.isnan(heat).any()
    snapshot.assert_unchanged(net)


def test_global_random_state_untouched_by_default_layer_search():
    """The default-layer search of a camlab model runs a seeded probe input through a local generator."""
    net = GapNet()
    net.camlab = camlab.ModelInfo("gapnet", ["a", "b", "c"], (8, 8), (0.5,) * 3, (0.5,) * 3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert camlab.CAM(net).layer_name == "features"
    assert torch.equal(torch.rand(3), expected)
