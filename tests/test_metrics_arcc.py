"""Complexity and Coherency (Poppi et al., CVPRW 2021) and ARCC (Domeniconi et al., arXiv 2026) worked by hand on
2x2 and 3x3 examples and their refusals (pytorch-grad-cam's ``metrics/arcc.py``: test_metrics_arcc_peer.py)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camlab.metrics import arcc, arcc_scores, coherency, complexity
from camlab.metrics.arcc import harmonic_mean, pearson
from tests.snapshots import ModelSnapshot

#: a map already in [0, 1]: sum 2 over 4 pixels
MAP = torch.tensor([[[0.0, 0.5], [1.0, 0.5]]])


class FirstChannelMean(nn.Module):
    """Two logits: the mean of channel 0 and 0 (only used to resolve the target class)."""

    def forward(self, x):
        value = x[:, 0].mean(dim=(1, 2))
        return torch.stack([value, torch.zeros_like(value)], dim=1)


def first_channel(x, target):
    """An explainer whose map is the image's first channel."""
    return x[:, 0]


def test_complexity_is_the_mean_of_the_scaled_map():
    """(0 + 0.5 + 1 + 0.5) / 4 = 0.5; the same map shifted and stretched scales back to it; a flat map is 0."""
    assert complexity(MAP) == pytest.approx(0.5)
    assert complexity(2 * MAP + 3) == pytest.approx(0.5)
    assert complexity(torch.full((1, 2, 2), 0.7)) == 0.0
    assert complexity(torch.cat([MAP, torch.ones(1, 2, 2) * torch.tensor([[1.0, 0.0], [0.0, 0.0]])])) == \
        pytest.approx((0.5 + 0.25) / 2)


def test_coherency_of_a_map_that_squares_under_its_own_mask():
    """The explainer returns the image's first channel and the image is the map M = (0, 0.5, 1, 0.5): the masked
    image is M^2 = (0, 0.25, 1, 0.25). Centred: M - 0.5 = (-0.5, 0, 0.5, 0), M^2 - 0.375 = (-0.375, -0.125, 0.625,
    -0.125); covariance sum 0.5, squared norms 0.5 and 0.5625: rho = 0.5 / sqrt(0.28125) = 2 sqrt(2) / 3, and
    coherency = (1 + rho) / 2."""
    x = MAP[:, None].repeat(1, 3, 1, 1)
    expected = (1 + 2 * math.sqrt(2) / 3) / 2
    assert coherency(FirstChannelMean(), x, first_channel) == pytest.approx(expected, abs=1e-7)
    assert coherency(FirstChannelMean(), x, first_channel, maps=MAP) == pytest.approx(expected, abs=1e-7)


def test_a_flat_map_has_coherency_one_half_not_nan():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = lambda batch, target: torch.zeros(batch.shape[0], 4, 4)  # noqa: E731
    assert coherency(FirstChannelMean(), x, flat) == 0.5
    assert torch.equal(pearson(torch.zeros(1, 4), torch.arange(4.0)[None]), torch.zeros(1, dtype=torch.float64))


def test_the_harmonic_mean_and_its_zero_limit():
    """3 / (1/1 + 1/0.5 + 1/0.25) = 3/7; a zero term makes it 0."""
    values = harmonic_mean(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.0]))
    assert values.tolist() == pytest.approx([3 / 7, 0.0])


class LinearLogit(nn.Module):
    """Two classes on a 1x3x3 image: logit 0 = 0, logit 1 = 0.1 * (sum of the pixels) (as in test_metrics_road)."""

    def forward(self, x):
        total = 0.1 * x.sum(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(total), total], dim=1)


def test_arcc_by_hand_on_a_linear_model():
    """Image (0 1 0 / 2 5 3 / 0 4 8), logit 2.3 for class 1. The explainer always returns the map below, so
    coherency = 1; complexity = (0 + .3 + .2 + .4 + 1 + .5 + .1 + .6 + .7) / 9 = 3.8 / 9. ROAD at share 1/9 (one
    pixel, noise 0): MoRF imputes the centre 5 -> 7/3 (logit 2.3 - 4/15), LeRF the corner 0 -> 11/5 (logit 2.52),
    so combined = (sigmoid(2.52) - sigmoid(2.3 - 4/15)) / 2 and ARCC = 3 / (1 + 1/(1 - 3.8/9) + 1/(2 combined))."""
    sigmoid = lambda value: 1 / (1 + math.exp(-value))  # noqa: E731
    image = torch.tensor([[[[0.0, 1.0, 0.0], [2.0, 5.0, 3.0], [0.0, 4.0, 8.0]]]])
    heat = torch.tensor([[0.0, 0.3, 0.2], [0.4, 1.0, 0.5], [0.1, 0.6, 0.7]])
    explainer = lambda x, target: heat.expand(x.shape[0], 3, 3)  # noqa: E731
    scores = arcc_scores(LinearLogit(), image, explainer, target=1, fractions=(1 / 9,), noise=0.0)
    combined = (sigmoid(2.52) - sigmoid(2.3 - 4 / 15)) / 2
    assert scores["coherency"].item() == pytest.approx(1.0)
    assert scores["complexity"].item() == pytest.approx(3.8 / 9)
    assert scores["road"].item() == pytest.approx(combined, abs=1e-7)
    expected = 3 / (1 + 1 / (1 - 3.8 / 9) + 1 / (2 * combined))
    assert scores["arcc"].item() == pytest.approx(expected, abs=1e-6)
    assert arcc(LinearLogit(), image, explainer, target=1, fractions=(1 / 9,), noise=0.0) == pytest.approx(expected,
                                                                                                         abs=1e-6)


def test_a_negative_road_score_makes_arcc_zero():
    """The inverted map removes the corner under MoRF and the centre under LeRF: combined < 0, clipped to 0."""
    image = torch.tensor([[[[0.0, 1.0, 0.0], [2.0, 5.0, 3.0], [0.0, 4.0, 8.0]]]])
    heat = 1 - torch.tensor([[0.0, 0.3, 0.2], [0.4, 1.0, 0.5], [0.1, 0.6, 0.7]])
    explainer = lambda x, target: heat.expand(x.shape[0], 3, 3)  # noqa: E731
    scores = arcc_scores(LinearLogit(), image, explainer, target=1, fractions=(1 / 9,), noise=0.0)
    assert scores["road"].item() < 0 and scores["arcc"].item() == 0.0


def test_batches_give_the_same_scores_and_the_model_is_restored():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    model.train()
    snapshot = ModelSnapshot.of(model)
    x = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    explainer = lambda batch, target: batch.mean(dim=1) ** 2  # noqa: E731
    whole = arcc_scores(model, x, explainer, fractions=(0.3, 0.7), noise=0.0)
    split = arcc_scores(model, x, explainer, fractions=(0.3, 0.7), noise=0.0, batch_size=2)
    for name in whole:
        assert torch.allclose(whole[name], split[name], atol=1e-12), name
    snapshot.assert_unchanged(model)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: arcc(FirstChannelMean(), x, torch.rand(2, 4, 4)), TypeError,
     "arcc computes the map again on the masked image, so explainer must be an explainer"),
    (lambda x: coherency(FirstChannelMean(), x, torch.rand(2, 4, 4)), TypeError, "give precomputed maps as maps="),
    (lambda x: coherency(FirstChannelMean(), x, first_channel, space="pixels"), ValueError,
     "space must be 'image'"),
    (lambda x: arcc(FirstChannelMean(), x, first_channel, fractions=(1.5,)), ValueError,
     "fractions must be shares of removed pixels"),
    (lambda x: arcc(FirstChannelMean(), x, first_channel, noise=float("inf")), ValueError,
     "noise must be a finite standard deviation"),
    (lambda x: arcc(FirstChannelMean(), x, first_channel, maps=torch.rand(3, 4, 4)), ValueError,
     "got 3 precomputed maps for 2 input images"),
], ids=["arcc-precomputed", "coherency-precomputed", "space", "fractions", "noise", "count"])
def test_bad_input_is_refused_with_what_would_be_right(call, error, message):
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=message):
        call(x)


def test_nan_maps_are_refused_naming_the_metric_and_the_image():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(1))
    maps[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="^complexity: the map of image 1 contains NaN"):
        complexity(maps)
    with pytest.raises(ValueError, match="^arcc: the map of image 1 contains NaN"):
        arcc(FirstChannelMean(), x, first_channel, maps=maps)

    def nan_on_masked_images(batch, target):  # the images themselves are fine, their masked copies are not
        out = batch[:, 0].clone()
        if not torch.equal(batch, x):
            out[:, 0, 0] = float("nan")
        return out

    with pytest.raises(ValueError, match="^coherency: the map of image 0 contains NaN"):
        coherency(FirstChannelMean(), x, nan_on_masked_images)


def test_an_explainer_instance_gives_the_same_scores_as_its_precomputed_maps():
    """camlab.GradCAM is called with each image's resolved class (here one per image), for the images and for their
    masked copies; giving its maps of the images as maps= changes nothing."""
    from camlab import GradCAM
    from tests.tiny_nets import GapNet

    torch.manual_seed(0)
    net = GapNet().eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    explainer = GradCAM(net, "features.2")
    classes = [0, 2, 1]
    direct = arcc_scores(net, x, explainer, classes, fractions=(0.25, 0.5), noise=0.0, batch_size=2)
    given = arcc_scores(net, x, explainer, classes, maps=explainer(x, classes), fractions=(0.25, 0.5), noise=0.0)
    for name in direct:
        assert torch.allclose(direct[name], given[name], atol=1e-6), name
    assert bool(((direct["coherency"] >= 0) & (direct["coherency"] <= 1)).all())
