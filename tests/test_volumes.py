"""3-D inputs (N,C,D,H,W): the gradient family, Eigen-CAM and Score-CAM explain volumes; the others refuse them clearly.

Every test here failed on main (e3ff581), where ``check_input`` refused any 5-D input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlab
from camlab.maps import scale, upsample
from tests.snapshots import ModelSnapshot

VOLUME_METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "smoothgradcam++", "eigencam", "scorecam"]


class VolumeNet(nn.Module):
    """conv3d (2 -> 6) -> ReLU -> conv3d (6 -> 5, stride ``stride``) -> ReLU -> flatten -> FC (-> 3): a seeded
    random 3-D classifier whose head is not GAP, so the gradients vary over the volume."""

    def __init__(self, size=(6, 8, 8), stride: int = 2):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv3d(2, 6, 3, padding=1), nn.ReLU(),
                                      nn.Conv3d(6, 5, 3, padding=1, stride=stride), nn.ReLU())
        cells = int(np.prod([(s + stride - 1) // stride for s in size]))
        self.fc = nn.Linear(5 * cells, 3)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class FlatVolumeNet(nn.Module):
    """conv3d (1 -> 2, 1x1x1, weights +1 and -1, no bias) -> ReLU -> flatten -> FC (2 channels x 4 positions -> 1):
    the 3-D twin of tests.tiny_nets.OneConvNet, for maps derived by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, kernel_size=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 0.0, -1.0, 0.0, 1.0, 1.0, 2.0]]))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def _volume():
    return torch.randn(2, 2, 6, 8, 8, generator=torch.Generator().manual_seed(7))


def test_gradcam_and_hirescam_on_a_hand_set_3d_net():
    """x (D=2, H=1, W=2) = [[1, -2]], [[3, 0]]. The ReLU's channels are A^0 = ReLU(x) = [1, 0, 3, 0] and
    A^1 = ReLU(-x) = [0, 2, 0, 0] (positions in (d, h, w) order). Above the ReLU the score is linear, so the gradient
    is the FC row: g^0 = [1, 2, 0, -1], g^1 = [0, 1, 1, 2].
    Grad-CAM: alpha = mean over the 4 positions of the volume = (0.5, 1.0); 0.5 A^0 + 1.0 A^1 = [0.5, 2, 1.5, 0].
    HiResCAM: g^0 A^0 + g^1 A^1 = [1, 0, 0, 0] + [0, 2, 0, 0] = [1, 2, 0, 0]."""
    net = FlatVolumeNet()
    x = torch.tensor([1.0, -2.0, 3.0, 0.0]).view(1, 1, 2, 1, 2)
    gradcam = camlab.GradCAM(net, layer="relu")(x, target=0, raw=True)
    hirescam = camlab.HiResCAM(net, layer="relu")(x, target=0, raw=True)
    assert gradcam.shape == (1, 2, 1, 2)
    assert torch.allclose(gradcam, torch.tensor([0.5, 2.0, 1.5, 0.0]).view(1, 2, 1, 2))
    assert torch.allclose(hirescam, torch.tensor([1.0, 2.0, 0.0, 0.0]).view(1, 2, 1, 2))
    heat = camlab.GradCAM(net, layer="relu")(x, target=0)
    assert torch.allclose(heat, torch.tensor([0.25, 1.0, 0.75, 0.0]).view(1, 2, 1, 2)), "min-max over the volume"


def _peer_raw_maps(peer_class, net, layer, x, classes):
    """pytorch-grad-cam's map before its ReLU, scaling and scipy zoom: ``get_cam_image`` on its own captured
    activations and gradients (its 3-D path: weights[:, :, None, None, None] * activations)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    peer = peer_class(model=net, target_layers=[layer])
    targets = [ClassifierOutputTarget(c) for c in classes]
    outputs = peer.activations_and_grads(x)
    net.zero_grad()
    sum(t(o) for t, o in zip(targets, outputs)).backward()
    activations = peer.activations_and_grads.activations[0].numpy()
    gradients = peer.activations_and_grads.gradients[0].numpy()
    raw = peer.get_cam_image(x, layer, targets, activations, gradients, False)
    peer.activations_and_grads.release()
    return torch.from_numpy(np.maximum(raw, 0)).float()


@pytest.mark.parametrize("method, peer_name", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                               ("xgradcam", "XGradCAM"), ("hirescam", "HiResCAM"),
                                               ("layercam", "LayerCAM")])
def test_raw_3d_maps_agree_with_pytorch_grad_cam(method, peer_name):
    """Same seeded Conv3d net, same layer, same classes: the raw (N,d,h,w) maps agree with pytorch-grad-cam's 3-D
    support to float precision, except for its ``eps`` of 1e-6 in Grad-CAM++'s alpha denominator (this net's gradients
    are ~1e-3, so 2 g^2 ~ 1e-6 and the eps shifts Grad-CAM++'s map by about 0.1%: rtol 1e-2 there). Its final maps
    are not compared here: it resizes 3-D maps with ``scipy.ndimage.zoom`` (cubic spline), camlab trilinearly."""
    import pytorch_grad_cam

    x = _volume()
    ours = camlab.build(method, VolumeNet(), layer="features.3")(x, target=[0, 2], raw=True)
    net = VolumeNet()
    theirs = _peer_raw_maps(getattr(pytorch_grad_cam, peer_name), net, net.features[3], x, [0, 2])
    assert ours.shape == theirs.shape == (2, 3, 4, 4)
    rtol = 1e-2 if method == "gradcam++" else 1e-4
    assert torch.allclose(ours, theirs, rtol=rtol, atol=1e-6 * float(theirs.abs().max()))


def test_final_3d_gradcam_agrees_with_pytorch_grad_cam_where_no_resizing_is_needed():
    """At a layer with the input's resolution neither library resizes, so the final (N,D,H,W) maps agree: both
    min-max scale each volume as a whole (pytorch-grad-cam adds 1e-7 to the maximum)."""
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = _volume()
    ours = camlab.GradCAM(VolumeNet(stride=1), layer="features.3")(x, target=[1, 0])
    net = VolumeNet(stride=1)
    theirs = torch.from_numpy(PeerGradCAM(net, [net.features[3]])(x, [ClassifierOutputTarget(1),
                                                                      ClassifierOutputTarget(0)]))
    assert ours.shape == theirs.shape == (2, 6, 8, 8)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("method", VOLUME_METHODS)
def test_3d_map_is_upsampled_trilinearly_and_scaled_over_the_whole_volume(method):
    net = VolumeNet()
    snapshot = ModelSnapshot.of(net)
    x = _volume()
    options = {"progress": False} if method == "scorecam" else {}
    explainer = camlab.build(method, net, layer="features.3", **options)
    raw = explainer(x, target=[0, 1], raw=True)
    heat = explainer(x, target=[0, 1])
    assert raw.shape == (2, 3, 4, 4) and heat.shape == (2, 6, 8, 8)
    expected = F.interpolate(raw[:, None], size=(6, 8, 8), mode="trilinear", align_corners=False)[:, 0]
    assert torch.allclose(heat, scale(expected), atol=1e-6)
    assert torch.allclose(upsample(raw, (6, 8, 8)), expected)
    for volume in heat:
        assert volume.min() == 0 and torch.isclose(volume.max(), torch.tensor(1.0))
    snapshot.assert_unchanged(net)


class Slab(nn.Module):
    """A 2-D net written with Conv3d kernels (1,3,3) on a depth-1 volume, and its Conv2d twin with the same weights:
    on (N,C,1,H,W) and (N,C,H,W) the two compute the same numbers."""

    def __init__(self, three_d: bool):
        super().__init__()
        torch.manual_seed(5)
        convs = [nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1, stride=2)]
        self.fc = nn.Linear(4 * 16, 3)
        if three_d:
            for index, conv in enumerate(convs):
                conv3d = nn.Conv3d(conv.in_channels, conv.out_channels, (1, 3, 3), padding=(0, 1, 1),
                                   stride=(1,) + conv.stride)
                with torch.no_grad():
                    conv3d.weight.copy_(conv.weight[:, :, None])
                    conv3d.bias.copy_(conv.bias)
                convs[index] = conv3d
        self.features = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU())

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


@pytest.mark.parametrize("method", VOLUME_METHODS)
def test_a_depth_one_volume_gets_the_map_of_the_same_2d_image(method):
    """Conv3d with (1,3,3) kernels on a (N,C,1,H,W) volume is Conv2d on (N,C,H,W): every volume method must give
    the 2-D method's map (trilinear with depth 1 -> 1 is bilinear)."""
    image = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    options = {"progress": False} if method == "scorecam" else {}
    flat = camlab.build(method, Slab(three_d=False), layer="features.3", **options)(image, target=[2, 0])
    volume = camlab.build(method, Slab(three_d=True), layer="features.3", **options)(image[:, :, None], target=[2, 0])
    assert volume.shape == (2, 1, 8, 8)
    assert torch.allclose(volume[:, 0], flat, atol=1e-5)


def test_multi_layer_layercam_fuses_3d_maps_at_the_finest_layer():
    """LayerCAM on features.1 (6x8x8) and features.3 (3x4x4): the deeper map is divided by its maximum, the shallower
    one goes through tanh(2 M / max M), the deeper is upsampled trilinearly to 6x8x8 and the maximum is taken."""
    net, x = VolumeNet(), _volume()
    fused = camlab.LayerCAM(net, layer=["features.1", "features.3"])(x, target=[0, 1], raw=True)
    shallow = camlab.LayerCAM(net, layer="features.1")(x, target=[0, 1], raw=True)
    deep = camlab.LayerCAM(net, layer="features.3")(x, target=[0, 1], raw=True)

    def peak(maps):
        return maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)

    expected = torch.maximum(torch.tanh(2 * shallow / peak(shallow)), upsample(deep / peak(deep), (6, 8, 8)))
    assert fused.shape == (2, 6, 8, 8)
    assert torch.allclose(fused, expected, atol=1e-6)


def test_layer_none_finds_the_last_3d_feature_map():
    assert camlab.GradCAM(VolumeNet())(_volume(), target=0, raw=True).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("method", ["cam", "ablationcam", "occlusion", "guided_backprop", "random"])
def test_methods_without_3d_support_name_the_ones_that_have_it(method):
    with pytest.raises(ValueError, match=r"3-D input \(N,C,D,H,W\).*gradcam.*scorecam.*eigencam"):
        camlab.build(method, VolumeNet())(_volume(), target=0)


def test_a_2d_layer_inside_a_3d_model_is_refused():
    class Squash(nn.Module):
        def forward(self, x):
            return x.mean(dim=2)  # (N,C,D,H,W) -> (N,C,H,W)

    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), Squash(), nn.Flatten(), nn.Linear(4 * 64, 3))
    with pytest.raises(ValueError, match=r"not an \(N,C,D,H,W\) feature map"):
        camlab.GradCAM(net, layer="1")(_volume(), target=0)
