"""ROAD (Rong et al., ICML 2022): the noisy linear imputation solved by hand on 3x3 images, MoRF / LeRF / combined
derived by hand on a linear model, batches and loaders, refusals (pytorch-grad-cam: test_metrics_road_peer.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from camlab.metrics import (linear_imputation, noisy_linear_imputation, road, road_combined, road_curves,
                            road_least_relevant_first, road_most_relevant_first)
from camlab.metrics.imputation import nested_dissection
from camlab.metrics.road import removal_masks
from tests.snapshots import ModelSnapshot

#: a 1-channel 3x3 image whose centre is not the mean of its neighbours
IMAGE = torch.tensor([[[0.0, 1.0, 0.0], [2.0, 5.0, 3.0], [0.0, 4.0, 8.0]]])


def _removed(*pixels, shape=(3, 3)) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    for row, col in pixels:
        mask[row, col] = True
    return mask


def test_a_removed_centre_is_the_weighted_mean_of_its_eight_neighbours():
    """Weights 1/6 for the four direct neighbours (1, 2, 3, 4) and 1/12 for the corners (0, 0, 0, 8), summing to 1:
    x = (1 + 2 + 3 + 4)/6 + 8/12 = 7/3. The other pixels are unchanged."""
    out = linear_imputation(IMAGE, _removed((1, 1)))
    expected = IMAGE.clone()
    expected[0, 1, 1] = 7 / 3
    assert torch.allclose(out, expected, atol=1e-6)


def test_a_removed_corner_averages_only_the_neighbours_inside_the_image():
    """Top-left corner: right (1, weight 1/6), below (2, 1/6), diagonal (5, 1/12); the weights sum to 5/12:
    x = (1/6 + 2/6 + 5/12) / (5/12) = 11/5."""
    assert float(linear_imputation(IMAGE, _removed((0, 0)))[0, 0, 0]) == pytest.approx(11 / 5, abs=1e-6)


def test_two_adjacent_removed_pixels_are_solved_jointly():
    """Centre a and its right neighbour b removed. a: all eight neighbours inside, a = (1 + 2 + 4 + b)/6 + 8/12.
    b (right edge): neighbours 1 (diag, 1/12), 0 (up, 1/6), a (left, 1/6), 4 (diag, 1/12), 8 (down, 1/6), weight
    sum 2/3: (2/3) b = 1/12 + a/6 + 4/12 + 8/6. So 6a = 11 + b, b = 21/8 + a/4: a = 109/46, b = 74/23."""
    out = linear_imputation(IMAGE, _removed((1, 1), (1, 2)))
    assert float(out[0, 1, 1]) == pytest.approx(109 / 46, abs=1e-6)
    assert float(out[0, 1, 2]) == pytest.approx(74 / 23, abs=1e-6)


def test_each_channel_is_imputed_alone_and_a_linear_ramp_is_reproduced():
    """On the ramp x_ij = i + 2j every pixel is the weighted mean of its neighbours (symmetric weights), so the
    removed ones come back exactly; a second channel with other values is solved with the same system."""
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    image = torch.stack([rows + 2 * cols, -3 * rows])
    removed = torch.zeros(6, 7, dtype=torch.bool)
    removed[1:5, 2:6] = True
    assert torch.allclose(linear_imputation(image, removed), image, atol=1e-5)


def test_noise_lands_on_the_removed_pixels_only_and_follows_the_seed():
    removed = _removed((1, 1), (2, 2))
    plain = linear_imputation(IMAGE, removed)
    first = noisy_linear_imputation(IMAGE, removed, 0.5, torch.Generator().manual_seed(3))
    again = noisy_linear_imputation(IMAGE, removed, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert torch.equal(first[:, ~removed], IMAGE[:, ~removed])
    assert not torch.allclose(first[:, removed], plain[:, removed])
    assert torch.equal(noisy_linear_imputation(IMAGE, removed, 0.0), plain)


def test_nested_dissection_orders_the_halves_first_and_their_separator_last():
    """A 10x10 grid: the middle row (4) of the bounding box separates rows 0-3 from rows 5-9 (no neighbour in
    common, even diagonally), so it is eliminated last; the order is a permutation of the pixels."""
    rows, cols = [values.reshape(-1) for values in np.divmod(np.arange(100), 10)]
    order = nested_dissection(rows, cols, leaf=4)
    assert sorted(order.tolist()) == list(range(100))
    assert set(rows[order[-10:]].tolist()) == {4}
    assert set(rows[order[:40]].tolist()) <= {0, 1, 2, 3}


def test_removing_every_pixel_is_refused():
    with pytest.raises(ValueError, match="all 9 pixels are removed, so there is nothing to impute"):
        linear_imputation(IMAGE, torch.ones(3, 3, dtype=torch.bool))


def test_most_and_least_relevant_first_remove_the_named_share_by_rank():
    """9 pixels, share 0.5: floor(4.5 + 0.5) = 5 pixels, the 5 highest (MoRF) or the 5 lowest (LeRF)."""
    heat = torch.arange(9.0).view(3, 3)
    most, least = removal_masks(heat, (0.5,), torch.Generator().manual_seed(0))
    assert torch.equal(most[0], heat >= 4) and torch.equal(least[0], heat <= 4)


class LinearLogit(nn.Module):
    """Two classes on a 1x3x3 image: logit 0 = 0, logit 1 = 0.1 * (sum of the pixels)."""

    def forward(self, x):
        total = 0.1 * x.sum(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(total), total], dim=1)


#: the map ranks the centre highest and the top-left corner lowest
CENTRE_MAP = torch.tensor([[[0.0, 0.3, 0.2], [0.4, 1.0, 0.5], [0.1, 0.6, 0.7]]])


def test_road_on_a_linear_model_by_hand():
    """Share 1/9 removes one pixel. MoRF removes the centre (5 -> 7/3): logit change 0.1 * (7/3 - 5) = -4/15.
    LeRF removes the top-left corner (0 -> 11/5): +0.22. Combined = (0.22 + 4/15) / 2 = 73/300."""
    x = IMAGE[None]
    result = road(LinearLogit(), x, CENTRE_MAP, target=1, fractions=(1 / 9,), score="logit", noise=0.0)
    assert result["most_relevant_first"] == pytest.approx(-4 / 15, abs=1e-6)
    assert result["least_relevant_first"] == pytest.approx(0.22, abs=1e-6)
    assert result["combined"] == pytest.approx(73 / 300, abs=1e-6)
    assert result["n"] == 1


def test_road_probabilities_are_the_softmax_of_the_same_logits():
    """The logit of class 1 is 2.3 on the image; with two classes its probability is sigmoid(logit)."""
    sigmoid = lambda value: 1 / (1 + math.exp(-value))  # noqa: E731
    x = IMAGE[None]
    morf = road_most_relevant_first(LinearLogit(), x, CENTRE_MAP, target=1, fractions=(1 / 9,), noise=0.0)
    lerf = road_least_relevant_first(LinearLogit(), x, CENTRE_MAP, target=1, fractions=(1 / 9,), noise=0.0)
    assert morf == pytest.approx(sigmoid(2.3 - 4 / 15) - sigmoid(2.3), abs=1e-6)
    assert lerf == pytest.approx(sigmoid(2.52) - sigmoid(2.3), abs=1e-6)
    combined = road_combined(LinearLogit(), x, CENTRE_MAP, target=1, fractions=(1 / 9,), noise=0.0)
    assert combined == pytest.approx((lerf - morf) / 2, abs=1e-9)


def _images_and_maps(count=3, size=10, channels=1):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(count, channels, size, size, generator=generator)
    heat = torch.rand(count, size, size, generator=generator)
    return x, heat


def test_batches_and_a_dataloader_give_the_same_curves_as_one_batch():
    x, heat = _images_and_maps()
    model = lambda batch: torch.stack([batch.mean(dim=(1, 2, 3)), batch[:, :, :5].mean(dim=(1, 2, 3))], 1)  # noqa
    model = _as_module(model)
    whole = road_curves(model, x, heat, target=1, fractions=(0.3, 0.6), noise=0.0)
    split = road_curves(model, x, heat, target=1, fractions=(0.3, 0.6), noise=0.0, batch_size=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.ones(3, dtype=torch.long)),
                                         batch_size=2)
    from_loader = road_curves(model, loader, heat, fractions=(0.3, 0.6), noise=0.0)
    for got in (split, from_loader):
        for a, b in zip(whole, got):
            assert torch.allclose(a, b, atol=1e-12)
    assert whole[1].shape == (3, 2) and whole[0].tolist() == [0.3, 0.6]


def _as_module(function):
    class Wrapped(nn.Module):
        def forward(self, x):
            return function(x)
    return Wrapped()


def test_an_explainer_is_called_with_each_batchs_resolved_classes():
    x, heat = _images_and_maps()
    calls = []

    def explainer(batch, classes):
        calls.append(list(classes))
        return heat[:batch.shape[0]]

    model = _as_module(lambda batch: torch.stack([batch.mean(dim=(1, 2, 3)), -batch.mean(dim=(1, 2, 3))], 1))
    road(model, x, explainer, fractions=(0.5,), noise=0.0, batch_size=2)
    assert calls == [[0, 0], [0]]  # top-1 class of every image: logit 0 = mean > 0 > -mean


def test_the_model_state_is_restored():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2))
    x, heat = _images_and_maps()
    model(x)
    model.train()
    snapshot = ModelSnapshot.of(model)
    road(model, x, heat, fractions=(0.5,))
    snapshot.assert_unchanged(model)


@pytest.mark.parametrize("call, message", [
    (lambda m, x, h: road(m, x, h, fractions=(0.0, 0.5)), "fractions must be shares of removed pixels strictly"),
    (lambda m, x, h: road(m, x, h, fractions=(1.0,)), "strictly between 0 and 1"),
    (lambda m, x, h: road(m, x, h, fractions=()), "strictly between 0 and 1"),
    (lambda m, x, h: road(m, x, h, score="accuracy"), "score must be 'probability'"),
    (lambda m, x, h: road(m, x, h, noise=-0.1), "noise must be a finite standard deviation >= 0"),
    (lambda m, x, h: road(m, x, h[:2]), "got 2 precomputed maps for 3 input images"),
    (lambda m, x, h: road(m, x[:, :, :2, :2], h[:, :2, :2], fractions=(0.9,)), "removes all 4 pixels"),
    (lambda m, x, h: road(m, x.masked_fill(x > 0.9, float("nan")), h), "the inputs contain NaN or inf"),
    (lambda m, x, h: road(m, x[:, 0], h), r"ROAD needs \(N,C,H,W\) float images"),
], ids=["zero", "one", "empty", "score", "noise", "count", "all-pixels", "nan-input", "3-d"])
def test_bad_input_is_refused_with_what_would_be_right(call, message):
    x, heat = _images_and_maps()
    model = _as_module(lambda batch: batch.flatten(1)[:, :2])
    with pytest.raises(ValueError, match=message):
        call(model, x, heat)


@pytest.mark.parametrize("metric", [road, road_curves, road_combined, road_most_relevant_first,
                                    road_least_relevant_first])
def test_a_nan_map_is_refused_naming_the_metric_and_the_image(metric):
    x, heat = _images_and_maps()
    heat[2, 4, 4] = float("nan")
    model = _as_module(lambda batch: batch.flatten(1)[:, :2])
    with pytest.raises(ValueError, match=rf"^{metric.__name__}: the map of image 2 contains NaN"):
        metric(model, x, heat, batch_size=2)
