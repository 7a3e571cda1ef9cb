"""Devices, dtypes and numeric holes: inputs on another device or with another dtype than the model get a clear error
before anything runs; what camlab creates lives on the input's device; float16 overflow, infinities and NaN never
become a silent NaN map or a misleading error. Each test failed on main (e3ff581) unless its docstring says
otherwise."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlab
from camlab.maps import scale
from tests.snapshots import ModelSnapshot
from tests.tiny_nets import GapNet

#: the methods whose computation does not read tensor values on the host, so they run on the ``meta`` device
META_METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "random", "eigencam", "gradient",
                "guided_backprop", "deconvnet", "guided_gradcam"]


def test_input_on_another_device_than_the_model_is_refused_before_anything_runs():
    net = GapNet().to("meta")
    snapshot_hooks = {name: dict(m._forward_hooks) for name, m in net.named_modules()}
    with pytest.raises(ValueError, match=r"input is on device cpu but the model is on meta; .*x\.to\('meta'\)"):
        camlab.GradCAM(net, layer="features.3")(torch.randn(1, 3, 8, 8), target=0)
    assert {name: dict(m._forward_hooks) for name, m in net.named_modules()} == snapshot_hooks
    with pytest.raises(ValueError, match=r"input is on device meta but the model is on cpu"):
        camlab.EigenCAM(GapNet())(torch.randn(1, 3, 8, 8, device="meta"))


def test_input_with_another_dtype_than_the_model_is_refused_with_the_conversion_to_make():
    net = GapNet()
    snapshot = ModelSnapshot.of(net)
    with pytest.raises(ValueError, match=r"input is torch.float64 but the model's parameters are torch.float32; "
                                         r"convert one to the other: x = x.to\(torch.float32\)"):
        camlab.GradCAM(net)(torch.randn(1, 3, 8, 8, dtype=torch.float64), target=0)
    snapshot.assert_unchanged(net)


def test_autocast_may_run_a_float32_model_on_bfloat16_inputs():
    """Under autocast the dtypes differ on purpose: no dtype error (held on main too; a guard for the new check)."""
    net = GapNet()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        heat = camlab.GradCAM(net)(torch.randn(1, 3, 8, 8).bfloat16(), target=0)
    assert heat.shape == (1, 8, 8) and not heat.isnan().any()


@pytest.mark.parametrize("method", META_METHODS)
def test_everything_camlab_creates_lives_on_the_input_device(method):
    """On the ``meta`` device any tensor camlab created on the CPU would meet a meta tensor and raise; the map comes
    back on the input's device. (Score-CAM, Ablation-CAM, occlusion, CAM and Smooth Grad-CAM++ read values on the
    host - distinct channels, class indices - which the meta device does not have.) Held on main too: a guard."""
    net = GapNet().to("meta")
    heat = camlab.build(method, net)(torch.randn(2, 3, 8, 8, device="meta"), target=[0, 1])
    assert heat.device.type == "meta"


class OverflowNet(nn.Module):
    """A 1x1 conv with 1024 channels of weight 100 on a +-1 checkerboard: every activation is +-300 (fine in float16),
    but a class map sums 1024 channels, +-307,200 with the FC weights of 1, far beyond float16's 65,504. The GAP of a
    checkerboard is 0, so the logits stay finite: only the map overflows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1024, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, 2)
        with torch.no_grad():
            self.conv.weight.fill_(100.0)
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def _checkerboard(dtype):
    signs = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(2, 2)
    return (signs / 3).expand(1, 3, 4, 4).to(dtype)


@pytest.mark.parametrize("method", ["cam", "random"])
def test_float16_models_give_the_float32_map_not_nan(method):
    """The map is computed in float32 from the float16 activations: +-307,200 at every position (CAM), so after ReLU
    and min-max scaling a checkerboard of 1 and 0, exactly the float32 model's map."""
    half = camlab.build(method, OverflowNet().half(), layer="conv")(_checkerboard(torch.float16), target=0)
    single = camlab.build(method, OverflowNet(), layer="conv")(_checkerboard(torch.float32), target=0)
    assert not half.isnan().any()
    assert half.dtype == torch.float32
    assert torch.allclose(half, single, atol=1e-3)
    if method == "cam":
        assert torch.equal(half[0], (_checkerboard(torch.float32)[0, 0] > 0).float())


def test_scale_counts_infinities_as_the_largest_or_smallest_finite_value():
    """[0, 1, 2, +inf] -> +inf counts as 2: [0, 0.5, 1, 1]; [-inf, 1, 3] -> -inf counts as 1: [0, 0, 1]. Signed:
    [-2, 1, +inf] -> +inf counts as 1, peak |.| = 2: [-1, 0.5, 0.5]. On main these gave NaN (inf - inf, inf / inf)."""
    inf = float("inf")
    assert torch.equal(scale(torch.tensor([[0.0, 1.0, 2.0, inf]])), torch.tensor([[0.0, 0.5, 1.0, 1.0]]))
    assert torch.equal(scale(torch.tensor([[-inf, 1.0, 3.0]])), torch.tensor([[0.0, 0.0, 1.0]]))
    assert torch.equal(scale(torch.tensor([[-2.0, 1.0, inf]]), signed=True), torch.tensor([[-1.0, 0.5, 0.5]]))
    assert torch.equal(scale(torch.tensor([[inf, inf], [7.0, 7.0]])), torch.zeros(2, 2)), "flat maps give zeros"


def test_scale_of_a_float16_map_whose_span_overflows():
    """Values +-60,000 are finite in float16 but their span, 120,000, is not: scaled in float32, never NaN."""
    maps = torch.tensor([[-60000.0, 0.0, 60000.0]], dtype=torch.float16)
    scaled = scale(maps)
    assert scaled.dtype == torch.float16
    assert torch.equal(scaled, torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float16))


@pytest.mark.parametrize("method", ["cam", "eigencam", "gradcam", "scorecam"])
def test_one_nan_pixel_gets_a_clear_error_not_a_false_diagnosis(method):
    """On main CAM said the model had no GAP head and Eigen-CAM raised a raw linear-algebra error."""
    x = torch.randn(1, 3, 8, 8)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"the input contains NaN or infinite values \(1 NaN, 0 inf\)"):
        camlab.build(method, GapNet())(x, target=0)


def test_nan_made_inside_the_model_is_reported_at_the_layer():
    class NanInside(nn.Module):
        def forward(self, x):
            return x * torch.where(x > 2.5, float("nan"), 1.0)

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), NanInside(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    x = torch.full((1, 3, 8, 8), 0.1)
    x[0, :, 4, 4] = 50.0
    with pytest.raises(ValueError, match=r"the activations of layer '1' contain NaN"):
        camlab.EigenCAM(net, layer="1")(x)


@pytest.mark.parametrize("method", ["gradcam", "cam", "eigencam", "random", "scorecam", "layercam"])
def test_flat_maps_are_zero_never_nan(method):
    """A constant input through a bias-free conv gives constant activations: every map is flat. Held on main too."""
    net = GapNet()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.bias.zero_()
    heat = camlab.build(method, net)(torch.zeros(1, 3, 8, 8), target=0)
    assert torch.equal(heat, torch.zeros(1, 8, 8))


def test_a_constant_map_scales_to_zeros_after_any_upsampling():
    """Bilinear upsampling of a constant leaves float32 ripple that min-max scaling stretched to {0, 0.5, 1} (156 of
    216 constant maps tried, e.g. a 1x1 map of 0.4458 to 32x32). Flatness is decided at the layer's resolution."""
    from camlab.maps import scale, upsample

    rng = torch.Generator().manual_seed(0)
    for value in torch.rand(40, generator=rng).tolist():
        for shape, size in (((1, 1), (32, 32)), ((1, 1), (40, 32)), ((3, 5), (37, 41)), ((2, 2, 2), (9, 8, 7))):
            maps = torch.full((2, *shape), value)
            maps[1] = torch.rand(shape, generator=rng)
            scaled = scale(upsample(maps, size))
            assert torch.equal(scaled[0], torch.zeros(size))
            assert scaled[1].max() == (0 if maps[1].numel() == 1 else 1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"])
def test_a_one_by_one_layer_map_gives_zeros_as_pytorch_grad_cam_does(method):
    """At a 32x32 input resnet18's layer4 is 1x1: one value, a flat map (pytorch-grad-cam's model x method matrix)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    heat = camlab.build(method, model, "layer4")(torch.randn(2, 3, 32, 32), target=3)
    assert torch.equal(heat, torch.zeros(2, 32, 32))


@pytest.mark.parametrize("method", sorted(camlab.METHODS))
def test_every_method_explains_a_float16_model_like_its_float32_twin(method):
    """The same seeded GapNet in float16 and float32: no NaN, and the maps agree within float16's precision (layer
    methods return float32 maps, input-space methods the input's dtype). Held on main except for overflowing maps
    (above); Ablation-CAM is here because the float32 activations must go back to float16 before its ablated pass."""
    torch.manual_seed(0)
    single = GapNet()
    half = GapNet()
    half.load_state_dict(single.state_dict())
    half.half()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    options = {"progress": False} if method in ("scorecam", "ablationcam", "occlusion") else {}
    from_half = camlab.build(method, half, **options)(x.half(), target=[0, 1])
    from_single = camlab.build(method, single, **options)(x, target=[0, 1])
    assert not from_half.isnan().any()
    assert torch.allclose(from_half.float(), from_single, atol=5e-3)


@pytest.fixture
def default_device_meta():
    """``torch.set_default_device("meta")`` for the test: a tensor made without ``device=`` lands on ``meta`` and
    fails as soon as it meets the CPU model, the CPU input or ``.item()``."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device("cpu")


@pytest.mark.parametrize("method", sorted(camlab.METHODS))
@pytest.mark.parametrize("target", [None, 1, [0, 2]], ids=["top1", "int", "list"])
def test_no_method_creates_a_tensor_on_the_default_device(method, target, default_device_meta):
    """Every tensor a method makes is placed on the input's device (or deliberately on the CPU, e.g. RandomCAM's
    seeded weights), never on ``torch.set_default_device``'s device. On main ``class_indices`` built its indices and
    RandomCAM its weights on the default device, so every method failed here."""
    with torch.device("cpu"):
        net = GapNet()
        x = torch.randn(2, 3, 8, 8)
        options = {"progress": False} if method in ("scorecam", "ablationcam", "occlusion") else {}
        explainer = camlab.build(method, net, **options)
        expected = explainer(x, target=target)
    assert torch.equal(explainer(x, target=target), expected)


def test_no_metric_creates_a_tensor_on_the_default_device(default_device_meta):
    """The metrics keep their host-side bookkeeping (pixel orders, boxes, ranks) explicitly on the CPU and move what
    meets the model to the input's device; on main they used the default device."""
    from camlab import metrics

    with torch.device("cpu"):
        net = GapNet().eval()
        x = torch.randn(4, 3, 8, 8)
        boxes = torch.tensor([[0, 0, 4, 4]] * 4)
        masks = torch.ones(4, 8, 8, dtype=torch.bool)
    explainer = camlab.GradCAM(net)
    maps = explainer(x, target=0)
    for mask in ("soft", "hard"):
        assert 0 <= metrics.average_drop(net, x, explainer, target=0, mask=mask) <= 1
    assert 0 <= metrics.deletion_auc(net, x, explainer, target=0, steps=4) <= 1
    assert 0 <= metrics.pointing_game(maps, masks) <= 1
    assert metrics.localization_error(net, x, explainer, labels=[0] * 4, boxes=boxes)["n"] == 4
    assert len(metrics.localization_sweep(maps, boxes).thresholds) > 0
    assert -1 <= metrics.occlusion_faithfulness(net, x, explainer, target=0) <= 1
