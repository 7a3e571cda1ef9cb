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
