"""camlab.metrics.discrimination.symmetric_discrimination: 0 for class-blind maps whatever the object sizes, 2 for
maps each on its own object, -2 for swapped ones; one value per image."""
import pytest
import torch

from camlab.metrics.discrimination import symmetric_discrimination


def masks():
    """Image 0: object a is a 2x2 square at the top left, object b a 1x1 square at the bottom right (unequal sizes)."""
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True
    b[0, 3, 3] = True
    return a, b


def test_a_class_blind_map_scores_zero_whatever_the_object_sizes():
    a, b = masks()
    blind = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert symmetric_discrimination(blind, blind.clone(), a, b).abs().max() < 1e-12


def test_maps_on_their_own_objects_score_two_and_swapped_maps_minus_two():
    a, b = masks()
    assert symmetric_discrimination(a.double(), b.double(), a, b).item() == pytest.approx(2.0)
    assert symmetric_discrimination(b.double(), a.double(), a, b).item() == pytest.approx(-2.0)


def test_a_batch_gives_one_value_per_image_and_boxes_work_like_masks():
    a, b = masks()
    maps_a = torch.cat([a.double(), b.double()])
    maps_b = torch.cat([b.double(), a.double()])
    boxes_a, boxes_b = torch.tensor([[0, 0, 2, 2]] * 2), torch.tensor([[3, 3, 4, 4]] * 2)
    d = symmetric_discrimination(maps_a, maps_b, boxes_a, boxes_b)
    assert d.tolist() == pytest.approx([2.0, -2.0])


def test_empty_maps_score_zero_not_nan():
    a, b = masks()
    assert symmetric_discrimination(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), a, b).item() == 0.0


def test_maps_of_different_shapes_are_refused():
    a, b = masks()
    with pytest.raises(ValueError, match="one shape"):
        symmetric_discrimination(torch.zeros(1, 4, 4), torch.zeros(1, 3, 4), a, b)
