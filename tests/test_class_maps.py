"""Specification of camlab.analysis.class_maps: rank correlations and peaks compared at a stated precision, with
explicit tie rules, so that the numbers a chapter prints do not depend on the CPU's last bits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from camlab.analysis import flat, peak_in_boxes, rank_correlations


def test_identical_maps_correlate_exactly_one_and_reversed_maps_minus_one():
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(rank_correlations(maps, maps.clone()), np.ones(3))
    np.testing.assert_allclose(rank_correlations(maps, -maps), -np.ones(3))


def test_values_closer_than_the_precision_are_ties_with_average_ranks():
    """[0, .5, .5001, 1] and [0, .5001, .5, 1]: at 3 decimals both are [0, 500, 500, 1000], the same ranking with
    the middle two tied, so the correlation is exactly 1 (without rounding it would be 0.8)."""
    a = torch.tensor([[[0.0, 0.5], [0.5001, 1.0]]])
    b = torch.tensor([[[0.0, 0.5001], [0.5, 1.0]]])
    assert rank_correlations(a, b, decimals=3)[0] == 1.0
    assert rank_correlations(a, b, decimals=6)[0] == pytest.approx(0.8)


def test_a_flat_map_has_no_order_and_correlates_zero():
    assert rank_correlations(torch.zeros(1, 3, 3), torch.rand(1, 3, 3))[0] == 0.0


def test_peak_inside_outside_and_shared_with_the_box():
    """4x4 maps, box (0, 0, 2, 2) = the top-left 2x2 (x0, y0, x1, y1, upper edges exclusive). Map 1 peaks at (0, 0):
    1. Map 2 peaks at (3, 3): 0. Map 3 has a plateau at (0, 0) and (3, 3): half of its peak is in the box, 0.5."""
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = 1
    maps[1, 3, 3] = 1
    maps[2, 0, 0] = maps[2, 3, 3] = 1
    boxes = torch.tensor([[0, 0, 2, 2]] * 3)
    np.testing.assert_array_equal(peak_in_boxes(maps, boxes), [1.0, 0.0, 0.5])


def test_near_equal_maxima_are_one_shared_peak_at_the_stated_precision():
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 1.0, 0.99999
    boxes = torch.tensor([[0, 0, 2, 2]])
    assert peak_in_boxes(maps, boxes, decimals=3)[0] == 0.5
    assert peak_in_boxes(maps, boxes, decimals=6)[0] == 1.0


def test_a_flat_map_has_no_peak_and_scores_a_miss():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.eye(4)])
    assert flat(maps).tolist() == [True, True, False]
    np.testing.assert_array_equal(peak_in_boxes(maps, torch.tensor([[0, 0, 4, 4]] * 3)), [0.0, 0.0, 1.0])


def test_bad_arguments_say_what_would_be_right():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        rank_correlations(torch.rand(4, 4), torch.rand(4, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        rank_correlations(torch.rand(1, 4, 4), torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="decimals must be an integer from 0 to 12"):
        peak_in_boxes(torch.rand(1, 4, 4), torch.tensor([[0, 0, 2, 2]]), decimals=-1)
