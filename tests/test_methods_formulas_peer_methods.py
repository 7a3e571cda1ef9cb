"""Hand-derived maps for the methods and options that came from pytorch-grad-cam 1.5.7: Grad-CAM element-wise,
Eigen-Grad-CAM, ShapleyCAM, Finer-CAM, KPCA-CAM, FEM, ``eigen_smooth`` and ``aug_smooth``; and that every layer
method takes both options and keeps the model as it found it with them."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import camlab
from camlab.methods import METHODS
from camlab.methods.registry import constructor_options
from tests.test_methods_formulas import A0, A1, linear_head_net
from tests.test_methods_state import FAST, assert_unchanged, prepared_model, snapshot, tiny_net, x_batch
from tests.tiny_nets import GapNet

LAYER_METHODS = sorted(name for name, cls in METHODS.items() if issubclass(cls, camlab.LayerMethod))


def head_net(rows: list[list[float]], channels: int = 2) -> nn.Module:
    """Identity ("0", the layer: the input itself, ``channels`` x 2 x 2) -> flatten -> linear without bias whose
    class rows are ``rows``; the gradient of class c at the layer is row c, set by hand."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(4 * channels, len(rows), bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor(rows))
    return model.eval()


CENTRED_A0 = torch.tensor(A0) - 1.5  # A0 = [[1,2],[3,0]] has mean 1.5


def test_gradcam_elementwise_rectifies_each_product_before_the_channel_sum():
    """linear_head_net: g = W. g*A, channel 0: [[1*1, 0*2], [-1*3, 2*0]] = [[1,0],[-3,0]] -> ReLU [[1,0],[0,0]];
    channel 1: [[0,0],[0,-1*1]] -> ReLU 0. Sum = [[1,0],[0,0]] (HiResCAM, which sums before the ReLU, gives
    [[1,0],[-3,-1]]): the map is non-negative even with relu=False."""
    model, x = linear_head_net()
    heat = camlab.GradCAMElementWise(model, layer="0", relu=False)(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_eigengradcam_is_the_centred_first_component_of_gradient_times_activation():
    """Input (A0, A0), class row (1,1,1,1 | 2,2,2,2): g*A = (A0, 2 A0). Centred per channel: (c, 2c) with
    c = A0 - 1.5 = [[-0.5,0.5],[1.5,-1.5]]: rank one, v1 = (1,2)/sqrt(5), projection (c + 4c)/sqrt(5) = sqrt(5) c.
    Its correlation with the unsmoothed map 3 A0 is sum(sqrt(5) c * 3 A0) = 3 sqrt(5) (14 - 9) > 0: sign +."""
    model = head_net([[1.0] * 4 + [2.0] * 4])
    x = torch.tensor([[A0, A0]])
    heat = camlab.EigenGradCAM(model, layer="0", relu=False)(x, target=0, raw=True)
    assert torch.allclose(heat[0], math.sqrt(5) * CENTRED_A0, atol=1e-6)


def test_eigen_smooth_sign_follows_the_unsmoothed_map():
    """The same net with the class row negated: g*A = (-A0, -2 A0), the same principal direction up to sign; the
    unsmoothed map -3 A0 now correlates with -c, so the smoothed map is -sqrt(5) c (an SVD's sign is arbitrary;
    camlab's is not)."""
    model = head_net([[-1.0] * 4 + [-2.0] * 4])
    x = torch.tensor([[A0, A0]])
    heat = camlab.EigenGradCAM(model, layer="0", relu=False)(x, target=0, raw=True)
    assert torch.allclose(heat[0], -math.sqrt(5) * CENTRED_A0, atol=1e-6)


def test_eigen_smooth_replaces_the_channel_sum_of_gradcam_by_the_first_component():
    """Grad-CAM's weights on the first net are the mean gradients (1, 2), so w*A = (A0, 2 A0) as above: the smoothed
    map is sqrt(5) c; without the option it is A0 + 2 A0 = 3 A0."""
    model = head_net([[1.0] * 4 + [2.0] * 4])
    x = torch.tensor([[A0, A0]])
    plain = camlab.GradCAM(model, layer="0", relu=False)(x, target=0, raw=True)
    smooth = camlab.GradCAM(model, layer="0", relu=False, eigen_smooth=True)(x, target=0, raw=True)
    assert torch.allclose(plain[0], 3 * torch.tensor(A0))
    assert torch.allclose(smooth[0], math.sqrt(5) * CENTRED_A0, atol=1e-6)


def test_kpcacam_with_a_linear_kernel_is_centred_pca():
    """Kernel PCA with k(x, y) = x.y is PCA of the centred positions: score sqrt(lambda) alpha = X v1. Input (A0, 2 A0):
    X = (c, 2c), projection sqrt(5) c, sign + (as above; the target is ignored)."""
    model = head_net([[0.0] * 8])
    x = torch.tensor([[A0, [[2 * v for v in row] for row in A0]]])
    heat = camlab.KPCACAM(model, layer="0", relu=False, kernel="linear")(x, raw=True)
    assert torch.allclose(heat[0], math.sqrt(5) * CENTRED_A0, atol=1e-6)


def test_kpcacam_sigmoid_kernel_on_two_positions():
    """One channel, two positions [0, 2]: centred -1, +1, gamma = 1/K = 1. k11 = k22 = tanh(1*1 + 1) = tanh 2,
    k12 = tanh(-1 + 1) = 0. The centred kernel of two points is (k11 + k22 - 2 k12)/4 [[1,-1],[-1,1]]: eigenvector
    (1,-1)/sqrt(2), lambda = (k11 + k22 - 2 k12)/2 = tanh 2, score sqrt(lambda) alpha = sqrt(tanh 2 / 2) (1,-1);
    the channel sum [0, 2] makes the second position positive."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(2, 2)).eval()
    heat = camlab.KPCACAM(model, layer="0", relu=False)(torch.tensor([[[[0.0, 2.0]]]]), raw=True)
    expected = math.sqrt(math.tanh(2) / 2) * torch.tensor([[-1.0, 1.0]])
    assert torch.allclose(heat[0], expected, atol=1e-6)


def test_fem_weights_channels_by_the_share_of_positions_above_mean_plus_k_std():
    """A0 = [[1,2],[3,0]]: mean 1.5, population std sqrt(1.25) = 1.118; k = 1: threshold 2.618, one position (3):
    w0 = 1/4. A1 = [[0,0],[0,1]]: mean 0.25, std sqrt(0.1875) = 0.433, threshold 0.683: w1 = 1/4.
    Map = (A0 + A1)/4. With the default k = 2 (thresholds 3.74 and 1.12) no position passes: all-zero weights."""
    model, x = linear_head_net()
    heat = camlab.FEM(model, layer="0", k=1.0)(x, raw=True)
    assert torch.allclose(heat[0], (torch.tensor(A0) + torch.tensor(A1)) / 4)
    assert torch.equal(camlab.FEM(model, layer="0")(x, raw=True), torch.zeros(1, 2, 2))


class QuadraticHead(nn.Module):
    """Identity ("layer") on a (1,2,1,2) input, a = flatten(A) = (1, 2, 3, 0); class 0's score
    y = c.a + (v.a)^2 / 2 with c = (1, 0, 0, -1), v = (1, 1, 0, 0); class 1's score is 0."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()
        self.register_buffer("c", torch.tensor([1.0, 0.0, 0.0, -1.0]))
        self.register_buffer("v", torch.tensor([1.0, 1.0, 0.0, 0.0]))

    def forward(self, x):
        a = self.layer(x).flatten(1)
        score = a @ self.c + 0.5 * (a @ self.v) ** 2
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_shapleycam_subtracts_half_the_hessian_vector_product():
    """v.a = 3, so g = c + 3v = (4, 3 | 0, -1) and H = v v^T, H a = 3v = (3, 3 | 0, 0). g - Ha/2 = (2.5, 1.5 | 0, -1):
    weights (means over the 2 positions) (2, -0.5), map 2 [1, 2] - 0.5 [3, 0] = [0.5, 4].
    Grad-CAM's weights are (3.5, -0.5): map [2, 7]."""
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    shapley = camlab.ShapleyCAM(QuadraticHead(), layer="layer", relu=False)(x, target=0, raw=True)
    gradcam = camlab.GradCAM(QuadraticHead(), layer="layer", relu=False)(x, target=0, raw=True)
    assert torch.allclose(shapley[0], torch.tensor([[0.5, 4.0]]))
    assert torch.allclose(gradcam[0], torch.tensor([[2.0, 7.0]]))


def test_shapleycam_equals_gradcam_where_the_score_is_piecewise_linear_in_the_layer():
    """GapNet's head after its last ReLU is GAP + linear: H = 0, so ShapleyCAM's weights are Grad-CAM's."""
    torch.manual_seed(0)
    model, x = GapNet().eval(), torch.randn(2, 3, 8, 8)
    shapley = camlab.ShapleyCAM(model, layer="features.3")(x, target=[0, 2], raw=True)
    gradcam = camlab.GradCAM(model, layer="features.3")(x, target=[0, 2], raw=True)
    assert torch.allclose(shapley, gradcam, atol=1e-6)


def test_finercam_explains_the_target_minus_its_closest_class():
    """linear_head_net's class 0 (row W) plus class 1 = -2 at the first entry and class 2 = 0. a = (A0, A1):
    y0 = 1 - 3 - 1 = -3, y1 = -2 (distance 1), y2 = 0 (distance 3). With reference_ranks=(1,) the reference is
    class 1 and s = p1 (y0 - y1) / p1 = y0 - y1: gradient W - row1, channel 0 [[3,0],[-1,2]] (mean 1), channel 1
    [[0,0],[0,-1]] (mean -1/4). Map = A0 - A1/4."""
    row0 = [1.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0, -1.0]
    row1 = [-2.0] + [0.0] * 7
    model = head_net([row0, row1, [0.0] * 8])
    x = torch.tensor([[A0, A1]])
    assert torch.allclose(model(x), torch.tensor([[-3.0, -2.0, 0.0]]))
    heat = camlab.FinerCAM(model, layer="0", relu=False, reference_ranks=(1,))(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor(A0) - torch.tensor(A1) / 4)


def test_finercam_with_alpha_zero_is_gradcam():
    """alpha = 0: s = sum_d p_d y_c / sum_d p_d = y_c (the probabilities cancel, also in the gradient)."""
    torch.manual_seed(0)
    model, x = GapNet().eval(), torch.randn(2, 3, 8, 8)
    finer = camlab.FinerCAM(model, layer="features.3", alpha=0.0)(x, target=[0, 2], raw=True)
    gradcam = camlab.GradCAM(model, layer="features.3")(x, target=[0, 2], raw=True)
    assert torch.allclose(finer, gradcam, atol=1e-6)


def test_finercam_refuses_a_callable_target_and_bad_ranks():
    model, x = linear_head_net()
    with pytest.raises(TypeError, match="Finer-CAM compares classes, so its target must be class indices"):
        camlab.FinerCAM(model, layer="0")(x, target=lambda output: output[:, 0])
    with pytest.raises(ValueError, match="reference_ranks must be positive integers"):
        camlab.FinerCAM(model, layer="0", reference_ranks=(0, 1))


def test_aug_smooth_is_the_mean_of_the_six_mapped_back_maps():
    """Explain x*f and flip(x*f) for f in (0.9, 1, 1.1) with the clean input's top-1 class, flip the flipped maps
    back, average the six [0,1] maps, scale the mean to [0,1]."""
    torch.manual_seed(0)
    model, x = GapNet().eval(), torch.randn(2, 3, 8, 8)
    classes = model(x).argmax(dim=1).tolist()
    plain = camlab.GradCAM(model, layer="features.1")
    maps = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            inputs = (x * factor).flip(-1) if flip else x * factor
            heat = plain(inputs, target=classes)
            maps.append(heat.flip(-1) if flip else heat)
    expected = camlab.scale(torch.stack(maps).mean(dim=0))
    smoothed = camlab.GradCAM(model, layer="features.1", aug_smooth=True)(x)
    assert torch.allclose(smoothed, expected, atol=1e-6)


def test_aug_smooth_raw_averages_the_maps_each_scaled_at_the_layer():
    torch.manual_seed(0)
    model, x = GapNet().eval(), torch.randn(1, 3, 8, 8)
    plain = camlab.HiResCAM(model, layer="features.1")
    maps = [camlab.scale(plain(x * f, target=1, raw=True)) for f in (0.9, 1.0, 1.1)]
    maps += [camlab.scale(plain((x * f).flip(-1), target=1, raw=True)).flip(-1) for f in (0.9, 1.0, 1.1)]
    smoothed = camlab.HiResCAM(model, layer="features.1", aug_smooth=True)(x, target=1, raw=True)
    assert torch.allclose(smoothed, torch.stack(maps).mean(dim=0), atol=1e-6)


def test_aug_smooth_refuses_targets_that_hold_image_positions():
    model, x = linear_head_net()
    target = camlab.targets.SegmentationTarget(0, torch.ones(2, 2))
    with pytest.raises(ValueError, match="aug_smooth flips the image, but a SegmentationTarget holds positions"):
        camlab.GradCAM(model, layer="0", aug_smooth=True)(x, target=target)


def test_smoothing_options_must_be_booleans():
    with pytest.raises(TypeError, match="aug_smooth must be True or False, not str 'yes'"):
        camlab.GradCAM(GapNet(), layer="features.1", aug_smooth="yes")


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_layer_method_takes_both_smoothing_options(name):
    assert {"aug_smooth", "eigen_smooth"} <= constructor_options(METHODS[name])


@pytest.mark.parametrize("name", LAYER_METHODS)
@pytest.mark.parametrize("option", ["aug_smooth", "eigen_smooth"])
def test_smoothing_options_restore_the_model_and_give_finite_maps(name, option):
    model = prepared_model()
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = camlab.build(name, model, **FAST, **{option: True})(x_batch(), target=[0, 2])
        flat = camlab.build(name, tiny_net().eval(), **FAST, **{option: True})(torch.zeros(2, 3, 8, 8), target=1)
    assert_unchanged(before, snapshot(model))
    assert result.shape == (2, 8, 8) and torch.isfinite(result).all() and 0 <= result.min() <= result.max() <= 1
    assert torch.isfinite(flat).all()


@pytest.mark.parametrize("name", ["eigencam", "eigengradcam", "kpcacam"])
def test_eigen_smooth_changes_nothing_where_the_map_already_is_a_principal_component(name):
    model = tiny_net().eval()
    plain = camlab.build(name, model)(x_batch(), target=[0, 2])
    assert torch.equal(plain, camlab.build(name, model, eigen_smooth=True)(x_batch(), target=[0, 2]))


def test_sobel_baseline_on_a_vertical_step():
    """One-channel 3x3 image with rows [0, 0, 1] (a plain model: the input is used as it is). Reflect-101 padding
    gives each row [0 | 0 0 1 | 0]; the x-derivative (1,2,1)-weighted over identical rows is 4 (p[j+1] - p[j-1]):
    0, 4, 0; the y-derivative is 0. L = (|gx| + |gy|)/2 = [0, 2, 0] in every row."""
    x = torch.tensor([[[[0.0, 0.0, 1.0]] * 3]])
    heat = camlab.SobelCAM(nn.Identity())(x, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[0.0, 2.0, 0.0]] * 3))


def test_sobel_baseline_reads_pixels_of_a_camlab_model():
    """For a camlab model the normalised input is unnormalised first: the map of the model input equals the map of
    the [0,1] picture given to a plain module."""
    model = camlab.load_model("efficientnet_lite0")
    pixels = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    from_input = camlab.SobelCAM(model)(model.camlab.normalize(pixels), raw=True)
    from_pixels = camlab.SobelCAM(nn.Identity())(pixels, raw=True)
    assert torch.allclose(from_input, from_pixels, atol=1e-5)
