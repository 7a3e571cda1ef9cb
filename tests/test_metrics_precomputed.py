"""Metrics given precomputed maps check them against the inputs before any work: one map per image at the input's
resolution, never silently truncated or broadcast. Each test failed on main (e3ff581) unless its docstring says
otherwise."""
from __future__ import annotations

import pytest
import torch

from camlab import metrics
from tests.tiny_nets import GapNet


@pytest.fixture
def net_and_inputs():
    return GapNet().eval(), torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("metric", [
    lambda net, x, maps: metrics.average_drop(net, x, maps, target=0),
    lambda net, x, maps: metrics.deletion_auc(net, x, maps, target=0, steps=4),
    lambda net, x, maps: metrics.insertion_auc(net, x, maps, target=0, steps=4),
    lambda net, x, maps: metrics.localization_error(net, x, maps, labels=[0] * 4,
                                                    boxes=torch.tensor([[0, 0, 4, 4]] * 4), top=(1,)),
], ids=["average_drop", "deletion_auc", "insertion_auc", "localization_error"])
def test_more_precomputed_maps_than_images_are_refused(net_and_inputs, metric):
    """On main the first 4 of 6 maps were used and the other 2 ignored without a word."""
    net, x = net_and_inputs
    with pytest.raises(ValueError, match="got 6 precomputed maps for 4 input images"):
        metric(net, x, torch.rand(6, 8, 8))


def test_precomputed_maps_at_another_resolution_are_refused_before_any_work(net_and_inputs):
    """On main this failed only inside the first batch, with a message about the batch's shapes; now the check runs
    first and names the fix."""
    net, x = net_and_inputs
    with pytest.raises(ValueError, match=r"precomputed maps are \(4, 4\) but the inputs are \(8, 8\).*upsample"):
        metrics.average_drop(net, x, torch.rand(4, 4, 4), target=0)


def test_the_count_is_checked_for_a_dataloader_too(net_and_inputs):
    net, x = net_and_inputs
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=3)
    with pytest.raises(ValueError, match="got 5 precomputed maps for 4 input images"):
        metrics.deletion_auc(net, loader, torch.rand(5, 8, 8), target=0, steps=4)


def test_pointing_game_names_masks_of_another_size_as_masks():
    """On main (N,H,W) masks at another resolution than the maps were taken for boxes ("boxes must be (N,4)")."""
    with pytest.raises(ValueError, match=r"ground-truth masks of shape \(4, 16, 16\) do not match 4 maps of size 8x8"):
        metrics.pointing_game(torch.rand(4, 8, 8), torch.ones(4, 16, 16, dtype=torch.bool))


def _nan_at_image_2():
    maps = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1))
    maps[2, 3, 3] = float("nan")
    return maps


@pytest.mark.parametrize("name, metric", [
    ("box_from_map", lambda net, x, maps: metrics.box_from_map(maps)),
    ("pointing_game", lambda net, x, maps: metrics.pointing_game(maps, torch.ones(4, 8, 8, dtype=torch.bool))),
    ("average_drop", lambda net, x, maps: metrics.average_drop(net, x, maps, target=0)),
    ("increase_in_confidence", lambda net, x, maps: metrics.increase_in_confidence(net, x, maps, target=0)),
    ("deletion_auc", lambda net, x, maps: metrics.deletion_auc(net, x, maps, target=0, steps=4)),
    ("insertion_auc", lambda net, x, maps: metrics.insertion_auc(net, x, maps, target=0, steps=4)),
    ("occlusion_correlation", lambda net, x, maps: metrics.occlusion_correlation(maps, torch.rand(4, 8, 8))),
    ("class_discrimination", lambda net, x, maps: metrics.class_discrimination(
        net, x, lambda batch, target: maps, 0, 1, torch.ones(4, 8, 8, dtype=torch.bool), torch.zeros(4, 8, 8, dtype=torch.bool))),
    ("mass_inside", lambda net, x, maps: metrics.mass_inside(maps, torch.ones(4, 8, 8, dtype=torch.bool))),
    ("localization_error", lambda net, x, maps: metrics.localization_error(
        net, x, maps, labels=[0] * 4, boxes=torch.tensor([[0, 0, 4, 4]] * 4), top=(1,))),
    ("localization_sweep", lambda net, x, maps: metrics.localization_sweep(maps, torch.tensor([[0, 0, 4, 4]] * 4))),
])
def test_a_nan_map_is_refused_naming_the_metric_and_the_image(net_and_inputs, name, metric):
    """On main box_from_map returned a box, pointing_game 0.0, average_drop NaN, deletion_auc a number,
    occlusion_correlation NaN and class_discrimination 0.25 for maps with a NaN, without a word."""
    net, x = net_and_inputs
    with pytest.raises(ValueError, match=rf"^{name}: the map of image 2 contains NaN"):
        metric(net, x, _nan_at_image_2())


def test_an_explainer_that_returns_nan_is_refused_with_the_image_of_the_whole_input(net_and_inputs):
    net, x = net_and_inputs

    def explainer(batch, target):  # NaN for the second image of x, wherever it falls in the batches
        maps = torch.rand(batch.shape[0], 8, 8)
        maps[(batch == x[1]).flatten(1).all(dim=1), 0, 0] = float("nan")
        return maps

    with pytest.raises(ValueError, match="^deletion_auc: the map of image 1 contains NaN"):
        metrics.deletion_auc(net, x, explainer, target=0, steps=4, batch_size=2)
