"""Hand-derived maps for SS-CAM, IS-CAM, FullGrad, Seg-Eigen-CAM, RefineCAM, SESS and Deep Feature Factorization,
on tiny networks with weights set by hand (the derivation of each expected value is in the test's docstring)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import camlab
from camlab.methods import factorization
from camlab.methods.factorization import nmf, nonnegative_shift
from camlab.methods.fullgrad import bias_sites
from camlab.methods.meta import gaussian_blur, window_starts


def linear_on_input(weights_class0) -> nn.Module:
    """layer "0" = the input itself (Identity), flatten, linear with class-0 row ``weights_class0`` and a zero
    class-1 row: f_0 is linear in the (masked) input, f_1 = 0."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(len(weights_class0), 2, bias=False)).eval()
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0] = torch.tensor(weights_class0)
    return model


# two channels on a 1x2 image: channel 0 = [0, 2] -> mask H_0 = [0, 1]; channel 1 = [3, 1] -> mask H_1 = [1, 0]
X = torch.tensor([[[[0.0, 2.0]], [[3.0, 1.0]]]])


def test_iscam_paper_weighting_by_hand():
    """N = 3: coefficients c_i = sum_{j<=i} j/3 = 1/3, 1, 2 (mean 10/9). f_0 is linear with row (0, a, 0, 0),
    a = 9 ln3 / 20: f_0(x . c H_0) = c * 2a (the masked input's channel-0 second pixel is 2c), f_0(x . c H_1) = 0.
    S_0 = 10/9 * 2a = ln 3, S_1 = 0; softmax over channels: alpha = (3/4, 1/4).
    Map = ReLU(3/4 [0, 2] + 1/4 [3, 1]) = [0.75, 1.75]."""
    model = linear_on_input([0.0, 9 * math.log(3) / 20, 0.0, 0.0])
    heat = camlab.ISCAM(model, layer="0", n_samples=3, weighting="paper", progress=False)(X, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[0.75, 1.75]]), atol=1e-6)


def test_iscam_probability_weighting_by_hand():
    """Same net, ``"probability"``: alpha_k = mean_i softmax(f(x . c_i H_k))_0 = mean_i sigmoid(f_0) (f_1 = 0):
    alpha_0 = mean over c in (1/3, 1, 2) of sigmoid(2 a c), alpha_1 = sigmoid(0) = 1/2."""
    a = 9 * math.log(3) / 20
    model = linear_on_input([0.0, a, 0.0, 0.0])
    alpha_0 = sum(1 / (1 + math.exp(-2 * a * c)) for c in (1 / 3, 1.0, 2.0)) / 3
    expected = torch.tensor([[0.0 * alpha_0 + 3 * 0.5, 2 * alpha_0 + 1 * 0.5]])
    heat = camlab.ISCAM(model, layer="0", n_samples=3, progress=False)(X, target=0, raw=True)
    assert torch.allclose(heat[0], expected, atol=1e-6)


def test_sscam_is_the_mean_over_the_seeded_noisy_masks():
    """f_0 linear with row w = (0, 1, 2, 0): f_0(x . (H_k + d)) = f_0(x . H_k) + f_0(x . d), so with the paper's
    weighting S_k = f_0(x . H_k) + mean_i f_0(x . d_{i,k}). The noise is the documented draw: a Generator seeded
    with ``seed``, one (K,H,W) = (2,1,2) standard normal tensor per sample, times sigma.
    f_0(x . H_0) = 1 * 2 = 2, f_0(x . H_1) = 2 * 3 = 6."""
    w = torch.tensor([0.0, 1.0, 2.0, 0.0])
    model = linear_on_input(w.tolist())
    generator = torch.Generator().manual_seed(7)
    noise = [torch.randn((2, 1, 2), generator=generator) * 0.5 for _ in range(4)]
    scores = torch.tensor([2.0, 6.0]) + torch.stack(
        [torch.stack([(X[0] * n[k]).flatten() @ w for k in range(2)]) for n in noise]).mean(0)
    alpha = scores.softmax(0)
    expected = alpha[0] * X[0, 0] + alpha[1] * X[0, 1]
    heat = camlab.SSCAM(model, layer="0", n_samples=4, sigma=0.5, seed=7, weighting="paper",
                        progress=False)(X, target=0, raw=True)
    assert torch.allclose(heat[0], expected.clamp_min(0), atol=1e-5)


def test_sscam_without_noise_is_scorecam_and_its_noise_is_seeded_per_image():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    score = camlab.ScoreCAM(model, layer="1", progress=False)(x, target=[0, 2])
    smooth = camlab.SSCAM(model, layer="1", sigma=0.0, n_samples=2, progress=False)(x, target=[0, 2])
    assert torch.allclose(score, smooth, atol=1e-6)
    state = torch.random.get_rng_state()
    noisy = camlab.SSCAM(model, layer="1", sigma=1.0, n_samples=2, progress=False, seed=3)
    both, alone = noisy(x, target=[0, 2]), noisy(x[1:], target=2)
    assert torch.allclose(both[1], alone[0], atol=1e-6)  # image 1's map does not depend on image 0
    assert torch.equal(both, noisy(x, target=[0, 2]))
    assert torch.equal(state, torch.random.get_rng_state())


def test_score_variants_refuse_bad_options():
    model = linear_on_input([0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        camlab.ISCAM(model, layer="0", n_samples=0)
    with pytest.raises(ValueError, match="sigma must be a non-negative number"):
        camlab.SSCAM(model, layer="0", sigma=-1.0)


class BiasNet(nn.Module):
    """x (1,1,1,2) -> conv 1x1 (1 -> 2, weights [1, -1], bias [0.5, 3]) -> ReLU -> flatten -> FC (4 -> 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.fc = nn.Linear(4, 1, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.5, 3.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, -1.0]]))
            self.fc.bias.fill_(10.0)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_fullgrad_by_hand():
    """x = [1, 2.5]: z_0 = x + 0.5 = [1.5, 3], z_1 = 3 - x = [2, 0.5], all > 0, so df/dz = FC row:
    g_0 = [1, 2], g_1 = [3, -1]. Bias-gradients: 0.5 g_0 = [0.5, 1] -> |.|, min-max -> [0, 1];
    3 g_1 = [9, -3] -> [9, 3] -> [1, 0]. Input-gradient: df/dx = g_0 - g_1 = [-2, 3]; times x = [-2, 7.5] ->
    [2, 7.5] -> [0, 1]. The FC bias (a linear layer) is not a term. Sum: [0, 1] + [1, 0] + [0, 1] = [1, 2]."""
    x = torch.tensor([[[[1.0, 2.5]]]])
    heat = camlab.FullGrad(BiasNet().eval())(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[1.0, 2.0]]))


def test_fullgrad_reads_batchnorm_bias_in_eval_form():
    """BatchNorm's bias is beta - gamma mu / sqrt(var + eps)."""
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([1.0, 0.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0 - bn.eps, 1.0 - bn.eps]))
    [(module, bias)] = bias_sites(nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), bn))
    assert module is bn
    assert torch.allclose(bias, torch.tensor([1.0 - 2.0 * 0.5 / 2.0, 0.0 + 1.0]))


def test_fullgrad_refuses_a_batchnorm_whose_bias_it_cannot_locate():
    class OddNorm(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Conv2d(3, 2, 1), OddNorm(2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="cannot tell where the bias of '1'"):
        camlab.FullGrad(model)(torch.randn(1, 3, 2, 2), target=0)


def test_seg_eigen_cam_by_hand():
    """Layer = the input, one channel [0, 1, 2.5]; linear head (3, -1, 2): the gradient is the row, so
    |g| . A = [0, 1, 5]; centred [-2, -1, 3]; with one channel v_1 = +-1 and the projection is +-[-2, -1, 3];
    the sign rule keeps the one whose largest magnitude is positive: [-2, -1, 3]; ReLU -> [0, 0, 3]."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(3, 1, bias=False)).eval()
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[3.0, -1.0, 2.0]]))
    x = torch.tensor([[[[0.0, 1.0, 2.5]]]])
    heat = camlab.SegEigenCAM(model, layer="0")(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[0.0, 0.0, 3.0]]), atol=1e-6)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()


def test_refinecam_is_the_product_of_the_scaled_layer_maps():
    """L = prod_l scale(up(M_l)): with Grad-CAM at layers "1" (8x8) and "3" (4x4), the product of the two maps
    that camlab.GradCAM returns (upsampled to 8x8, scaled to [0, 1]), then scaled."""
    model, x = small_net(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    product = camlab.GradCAM(model, layer="1")(x, target=[0, 1]) * camlab.GradCAM(model, layer="3")(x, target=[0, 1])
    refined = camlab.RefineCAM(model, ["1", "3"], method="gradcam")(x, target=[0, 1], raw=True)
    assert torch.allclose(refined, product, atol=1e-6)
    single = camlab.RefineCAM(model, "3", method="gradcam")(x, target=[0, 1])
    assert torch.allclose(single, camlab.GradCAM(model, layer="3")(x, target=[0, 1]), atol=1e-6)


def test_meta_methods_refuse_an_input_space_base_method():
    with pytest.raises(ValueError, match="needs a method that gives"):
        camlab.RefineCAM(small_net(), ["1"], method="guided_backprop")
    with pytest.raises(ValueError, match="needs a method that gives"):
        camlab.SESS(small_net(), "1", method="gradient")


def test_sess_windows_by_hand():
    """Length 10, window 4, step 4: starts 0, 4, then 8 + 4 >= 10 so the last window is shifted back to 6."""
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(4, 4, 4) == [0]


def test_sess_pastes_each_patch_map_weighted_by_its_relative_score():
    """One scale (the input's 8), window 4 and step 4: four disjoint patches, so the mean fusion at each pixel is
    the one patch's base map times w_i = p_i / max_j p_j (p = the target's softmax probability on the patch)."""
    model, x = small_net(), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    sess = camlab.SESS(model, "3", scales=[8], window_size=4, smooth=False)
    corners = [(0, 0), (0, 4), (4, 0), (4, 4)]
    patches = torch.cat([x[:, :, r:r + 4, c:c + 4] for r, c in corners])
    with torch.no_grad():
        p = model(patches).softmax(1)[:, 1]
    maps = camlab.GradCAM(model, layer="3")(patches, target=1) * (p / p.max())[:, None, None]
    expected = torch.zeros(8, 8)
    for (r, c), patch_map in zip(corners, maps):
        expected[r:r + 4, c:c + 4] = patch_map
    assert torch.allclose(sess(x, target=1, raw=True)[0], expected, atol=1e-6)


def test_sess_smoothing_is_opencvs_11x11_gaussian_of_sigma_5():
    """A unit impulse at (7, 7) in a 15 x 15 map spreads into the outer product of the normalised 1-D kernel
    exp(-d^2 / 50), d = -5..5."""
    impulse = torch.zeros(1, 15, 15, dtype=torch.float64)
    impulse[0, 7, 7] = 1
    kernel = torch.exp(-torch.arange(-5, 6, dtype=torch.float64) ** 2 / 50)
    kernel = kernel / kernel.sum()
    blurred = gaussian_blur(impulse)[0]
    assert torch.allclose(blurred[2:13, 2:13], torch.outer(kernel, kernel))
    assert blurred[0].abs().max() == 0


def test_nmf_recovers_an_exact_nonnegative_factorisation():
    """X = W H with two disjoint parts-based factors is factorised exactly (relative error ~ 0), and the
    factors' supports are found again (up to order and scale)."""
    w = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    h = torch.tensor([[1.0, 1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    data = w @ h
    found_w, found_h = nmf(data, 2, seed=0, max_iter=500, tol=1e-12)
    assert torch.linalg.norm(data - found_w @ found_h) / torch.linalg.norm(data) < 1e-6
    supports = {tuple((row > 1e-6 * row.max()).tolist()) for row in found_h}
    assert supports == {tuple((row > 0).tolist()) for row in h}


def test_nmf_runs_on_one_cpu_thread_and_gives_the_callers_thread_count_back():
    """NMF's small products run on one intra-op thread (a second one loses when a core is busy); the caller's
    setting is restored afterwards, also when the call fails."""
    seen = []
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = torch.rand(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        nmf(data, 2, seed=0, max_iter=3)
        assert torch.get_num_threads() == 2
        with factorization._one_cpu_thread(torch.device("cpu")):
            seen.append(torch.get_num_threads())
        assert seen == [1] and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with factorization._one_cpu_thread(torch.device("cpu")):
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)


def test_nmf_refuses_negative_data():
    with pytest.raises(ValueError, match="non-negative"):
        nmf(torch.tensor([[1.0, -1.0]]), 1)


def test_dff_concepts_maps_and_head_scores():
    """Layer = the input (2 channels, 1x3, non-negative): A (channels x positions) = [[1, 1, 0], [0, 0, 2]] is
    rank 2 with disjoint parts, so 2 concepts reconstruct it exactly; concept maps (scaled) are the two position
    patterns [1, 1, 0] and [0, 0, 1]; the head's scores are the head applied to each concept vector."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(6, 2)).eval()
    x = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 2.0]]]])
    head = nn.Linear(2, 3)
    result = camlab.DeepFeatureFactorization(model, "0", n_components=2, head=head, tol=1e-12, max_iter=500)(x)
    assert result.error < 1e-6
    patterns = {tuple(m.flatten().round(decimals=4).tolist()) for m in result.maps[0]}
    assert patterns == {(1.0, 1.0, 0.0), (0.0, 0.0, 1.0)}
    with torch.no_grad():
        assert torch.allclose(result.scores, head(result.concepts))


def test_dff_shifts_only_channels_with_negative_values():
    """A channel with values [-1, 1, 0] is shifted by its minimum -1 (to [0, 2, 1]); a non-negative channel
    [2, 3, 4] is factorised as it is (pytorch-grad-cam would subtract its minimum 2 as well)."""
    shifted, offset = nonnegative_shift(torch.tensor([[-1.0, 1.0, 0.0], [2.0, 3.0, 4.0]]))
    assert offset.flatten().tolist() == [-1.0, 0.0]
    assert shifted.tolist() == [[0.0, 2.0, 1.0], [2.0, 3.0, 4.0]]
