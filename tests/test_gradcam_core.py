"""Grad-CAM and CAM: hand-derived maps, the CAM theorem, and the contract of every call."""
from __future__ import annotations

import pytest
import torch

import camlab
from tests.snapshots import ModelSnapshot
from tests.tiny_nets import FlattenHeadNet, GapNet, OneConvNet

FC_ROW = [1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0]
X = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])


def one_conv_net():
    return OneConvNet(torch.tensor([FC_ROW, [0.0] * 8]))


def test_gradcam_on_one_conv_net_after_relu():
    """A = ReLU(conv(x)): A^0 = relu(x) = [[1,0],[3,0]], A^1 = relu(-x) = [[0,2],[0,0]].
    The FC row gives dy/dA^0 = [[1,2],[3,4]] and dy/dA^1 = -1 everywhere, so alpha = (2.5, -1) and
    ReLU(2.5 A^0 - A^1) = ReLU([[2.5,-2],[7.5,0]]) = [[2.5,0],[7.5,0]]."""
    raw = camlab.GradCAM(one_conv_net(), layer="relu")(X, target=0, raw=True)
    assert torch.allclose(raw, torch.tensor([[[2.5, 0.0], [7.5, 0.0]]]))


def test_gradcam_on_one_conv_net_before_relu():
    """A = conv(x): A^0 = x, A^1 = -x. The ReLU passes gradient only where A > 0:
    dy/dA^0 = [[1,0],[3,0]], dy/dA^1 = [[0,-1],[0,0]], so alpha = (1, -0.25) and
    ReLU(A^0 - 0.25 A^1) = ReLU([[1.25,-2.5],[3.75,0]]) = [[1.25,0],[3.75,0]]; scaled to [0,1]: [[1/3,0],[1,0]]."""
    net = one_conv_net()
    raw = camlab.GradCAM(net, layer="conv")(X, target=0, raw=True)
    assert torch.allclose(raw, torch.tensor([[[1.25, 0.0], [3.75, 0.0]]]))
    heat = camlab.GradCAM(net, layer="conv")(X, target=0)
    assert torch.allclose(heat, torch.tensor([[[1 / 3, 0.0], [1.0, 0.0]]]))


def test_signed_map_keeps_the_negative_evidence():
    """relu=False returns sum_k alpha_k A^k itself: the negative part argues against the class."""
    raw = camlab.GradCAM(one_conv_net(), layer="relu", relu=False)(X, target=0, raw=True)
    assert torch.allclose(raw, torch.tensor([[[2.5, -2.0], [7.5, 0.0]]]))
    heat = camlab.GradCAM(one_conv_net(), layer="relu", relu=False)(X, target=0)
    assert heat.min() == pytest.approx(-2.0 / 7.5) and heat.max() == pytest.approx(1.0)


def test_gradcam_equals_relu_cam_over_z_on_a_gap_net():
    """y^c = sum_k w^c_k (1/Z) sum_ij A^k_ij + b, so alpha^c_k = w^c_k / Z and Grad-CAM = ReLU(CAM) / Z."""
    net = GapNet()
    x = torch.randn(2, 3, 8, 8)
    gradcam = camlab.GradCAM(net, layer="features")(x, target=[0, 2], raw=True)
    cam = camlab.CAM(net, layer="features")(x, target=[0, 2], raw=True)
    assert torch.allclose(gradcam, cam / 64, atol=1e-6)


def test_gradcam_equals_relu_cam_over_z_on_the_offline_model(lite0, cat_input):
    gradcam = camlab.GradCAM(lite0, layer="bn2")(cat_input, target=285, raw=True)
    cam = camlab.CAM(lite0, layer="bn2", relu=False)(cat_input, target=285, raw=True)
    z = cam.shape[-1] * cam.shape[-2]
    assert torch.allclose(gradcam, cam.clamp_min(0) / z, atol=1e-5)
    assert gradcam.max() > 0


def test_cam_refuses_a_flatten_head_and_points_to_gradcam():
    with pytest.raises(ValueError, match="GAP.*Grad") as error:
        camlab.CAM(FlattenHeadNet())(torch.randn(1, 3, 8, 8), target=0)
    assert "GradCAM" in str(error.value)


class ConvHeadNet(torch.nn.Module):
    """conv -> ReLU -> GAP -> 1x1 conv classifier (a linear layer on the pooled map, as in torchcam's tests)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.head(self.pool(self.features(x))).flatten(1)


def test_cam_accepts_a_one_by_one_convolution_after_global_average_pooling():
    """M^c = sum_k W[c, k, 0, 0] A^k, the same as for nn.Linear; on main CAM said the model needed retraining. Equal
    to torchcam's CAM with fc_layer='head' (unnormalised) and to Z times Grad-CAM's raw map (GAP head)."""
    from torchcam.methods import CAM as TorchcamCAM

    torch.manual_seed(0)
    net, x = ConvHeadNet().eval(), torch.randn(2, 3, 8, 8)
    cam = camlab.CAM(net, layer="features")(x, target=[1, 2], raw=True)
    weight, activations = net.head.weight[:, :, 0, 0], net.features(x)
    by_hand = torch.stack([torch.einsum("k,khw->hw", weight[c], activations[i]) for i, c in enumerate([1, 2])])
    assert torch.allclose(cam, by_hand.clamp_min(0), atol=1e-6)
    assert torch.allclose(cam, 64 * camlab.GradCAM(net, layer="features")(x, target=[1, 2], raw=True), atol=1e-5)
    with TorchcamCAM(net, target_layer="features", fc_layer="head") as extractor:
        peer = extractor([1, 2], net(x), normalized=False)[0]
    assert torch.allclose(cam, peer.clamp_min(0), atol=1e-5)


def test_gradcam_works_where_cam_cannot():
    heat = camlab.GradCAM(FlattenHeadNet())(torch.randn(1, 3, 8, 8), target=1)
    assert heat.shape == (1, 8, 8)


def test_default_layer_is_the_last_spatial_layer(lite0):
    assert camlab.GradCAM(lite0).layer_name == "bn2"
    gap = camlab.GradCAM(GapNet())
    gap(torch.randn(1, 3, 8, 8))
    assert gap.layer_name == "features"


def test_output_shapes_and_range(lite0, cat_input):
    cam = camlab.GradCAM(lite0, layer="bn2")
    heat = cam(cat_input, target=285)
    assert heat.shape == (1, 224, 224)
    assert heat.min() == 0 and heat.max() == 1
    assert cam(cat_input, target=285, raw=True).shape == (1, 7, 7)


def test_batch_with_one_target_per_image_equals_separate_calls():
    net = GapNet()
    x = torch.randn(3, 3, 8, 8)
    cam = camlab.GradCAM(net, layer="features.1")
    batch = cam(x, target=[0, 1, 2], raw=True)
    for i, target in enumerate([0, 1, 2]):
        assert torch.allclose(batch[i], cam(x[i:i + 1], target=target, raw=True)[0], atol=1e-6)


def test_target_none_explains_each_images_top_class():
    net = GapNet()
    x = torch.randn(4, 3, 8, 8)
    top = net(x).argmax(1).tolist()
    cam = camlab.GradCAM(net)
    assert torch.equal(cam(x, target=None, raw=True), cam(x, target=top, raw=True))


def test_callable_target_explains_any_score():
    net = GapNet()
    x = torch.randn(2, 3, 8, 8)
    cam = camlab.GradCAM(net)
    by_index = cam(x, target=1, raw=True)
    by_callable = cam(x, target=lambda logits: logits[:, 1], raw=True)
    assert torch.allclose(by_index, by_callable)
    softmax = cam(x, target=lambda logits: logits.softmax(1)[:, 1], raw=True)
    assert softmax.shape == by_index.shape


def test_flat_map_gives_zeros_not_nan():
    net = GapNet()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    heat = camlab.GradCAM(net)(torch.randn(2, 3, 8, 8), target=0)
    assert not torch.isnan(heat).any() and torch.equal(heat, torch.zeros_like(heat))


def test_explain_is_the_one_call_form(lite0, cat_input):
    direct = camlab.GradCAM(lite0, layer="bn2")(cat_input, target=285)
    assert torch.equal(camlab.explain(lite0, cat_input, method="gradcam", layer="bn2", target=285), direct)
    assert camlab.METHODS["gradcam"] is camlab.GradCAM and camlab.METHODS["cam"] is camlab.CAM


def test_unknown_method_name_lists_the_known_ones(lite0, cat_input):
    with pytest.raises(ValueError, match="did you mean 'gradcam'"):
        camlab.explain(lite0, cat_input, method="gradcan")
