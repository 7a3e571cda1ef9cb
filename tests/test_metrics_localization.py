"""Localization metrics on hand-made maps whose answers can be worked out on paper."""
import numpy as np
import pytest
import torch
from torch import nn

from camlab.metrics import box_from_map, gt_masks, iou, localization_error, pointing_game


def blob(size=32, box=(8, 4, 20, 12), value=1.0):
    heat = torch.zeros(size, size)
    x0, y0, x1, y1 = box
    heat[y0:y1, x0:x1] = value
    return heat


def test_box_from_map_is_tight_with_exclusive_upper_edges():
    assert box_from_map(blob(box=(8, 4, 20, 12))) == (8, 4, 20, 12)


def test_box_from_map_keeps_pixels_at_15_percent_of_the_peak():
    """peak 1.0 at one pixel, 0.2 (kept: >= 0.15) on a ring around it, 0.1 (dropped) further out."""
    heat = torch.full((16, 16), 0.1)
    heat[5:10, 6:11] = 0.2
    heat[7, 8] = 1.0
    assert box_from_map(heat) == (6, 5, 11, 10)
    assert box_from_map(heat, threshold=0.5) == (8, 7, 9, 8)
    assert box_from_map(heat, threshold=0.05) == (0, 0, 16, 16)


def test_box_from_map_takes_the_largest_segment_not_the_one_with_the_peak():
    heat = blob(box=(0, 0, 3, 3), value=1.0) + blob(box=(10, 10, 20, 20), value=0.5)
    assert box_from_map(heat) == (10, 10, 20, 20)


def test_box_from_map_joins_diagonal_neighbours():
    heat = torch.zeros(8, 8)
    heat[1, 1] = heat[2, 2] = heat[3, 3] = 1.0  # 8-connected: one segment
    heat[6, 0] = heat[6, 1] = 1.0
    assert box_from_map(heat) == (1, 1, 4, 4)


def test_box_from_map_tie_in_size_goes_to_the_larger_mass():
    heat = blob(box=(0, 0, 2, 2), value=0.5) + blob(box=(10, 10, 12, 12), value=1.0)
    assert box_from_map(heat) == (10, 10, 12, 12)


def test_flat_and_zero_maps_give_the_whole_image():
    assert box_from_map(torch.zeros(10, 12)) == (0, 0, 12, 10)
    assert box_from_map(torch.full((10, 12), 0.3)) == (0, 0, 12, 10)


def test_box_from_map_batch_and_input_space_maps():
    batch = torch.stack([blob(box=(1, 2, 3, 4)), blob(box=(5, 6, 7, 8))])
    assert box_from_map(batch).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    rgb = -batch[:, None].repeat(1, 3, 1, 1)  # a negative gradient counts by magnitude
    assert box_from_map(rgb).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_iou_counts_pixels():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no pixel
    assert iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0  # empty boxes: 0, not NaN
    pairwise = iou(torch.tensor([[0, 0, 10, 10]]), torch.tensor([[0, 0, 10, 10], [0, 0, 5, 10]]))
    assert pairwise.tolist() == [1.0, 0.5]


class Fixed(nn.Module):
    """Returns the logits it was given for each image (by index in the batch order of the first call)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: x.shape[0]]


def test_localization_error_needs_right_class_and_iou():
    """3 images, ground truth class 0 with box (8,4,20,12). Image 0: right class, right box; image 1: right class,
    box elsewhere (IoU 0); image 2: wrong top-1 class (1) but class 0 is second, with the right box."""
    logits = torch.tensor([[5.0, 1, 0], [5.0, 1, 0], [1.0, 5, 0]])
    model = Fixed(logits)
    x = torch.zeros(3, 3, 32, 32)
    good, bad = blob(), blob(box=(24, 24, 32, 32))

    def explainer(inputs, target):
        return torch.stack([bad if i == 1 else good for i in range(inputs.shape[0])])

    gt = torch.tensor([8, 4, 20, 12]).expand(3, 4)
    result = localization_error(model, x, explainer, labels=[0, 0, 0], boxes=gt, top=(1, 2))
    assert result["top1"] == pytest.approx(2 / 3)
    assert result["top2"] == pytest.approx(1 / 3)
    assert result["gt_known"] == pytest.approx(1 / 3)
    maps = torch.stack([good, bad, good])
    assert localization_error(model, x, maps, labels=[0, 0, 0], boxes=gt, top=(1,))["top1"] == pytest.approx(2 / 3)


def test_localization_error_per_class_boxes_and_label_sets():
    """One image with a 'cat' (class 1 or 2 both right) on the left and a 'cup' (class 3) on the right: the
    predicted class's map must land on that class's box."""
    model = Fixed(torch.tensor([[0.0, 0, 9, 1]]))  # predicts class 2
    x = torch.zeros(1, 3, 32, 32)
    left, right = (0, 0, 16, 32), (16, 0, 32, 32)
    boxes = [{1: [left], 2: [left], 3: [right]}]
    on_left = blob(box=left)[None]
    on_right = blob(box=right)[None]
    assert localization_error(model, x, on_left, boxes=boxes, top=(1,))["top1"] == 0.0
    assert localization_error(model, x, on_right, boxes=boxes, top=(1,))["top1"] == 1.0


def test_localization_error_on_a_dataloader():
    logits = torch.tensor([[5.0, 1]] * 4)
    model = Fixed(logits)
    data = torch.utils.data.TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long),
                                          torch.tensor([[8, 4, 20, 12]] * 4))
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    result = localization_error(model, loader, lambda x, t: blob()[None].expand(x.shape[0], 32, 32), top=(1,))
    assert result == {"top1": 0.0, "gt_known": 0.0, "n": 4}


def test_pointing_game_perfect_inverted_and_tolerance():
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 10:20, 10:20] = True
    perfect = torch.zeros(1, 32, 32)
    perfect[0, 15, 15] = 1
    inverted = torch.zeros(1, 32, 32)
    inverted[0, 15, 25] = 1  # 6 px right of the mask's last column (19)
    assert pointing_game(perfect, mask, tolerance=0) == 1.0
    assert pointing_game(inverted, mask, tolerance=0) == 0.0
    assert pointing_game(inverted, mask, tolerance=5) == 0.0
    assert pointing_game(inverted, mask, tolerance=6) == 1.0
    assert pointing_game(torch.cat([perfect, inverted]), mask.expand(2, 32, 32), tolerance=0) == 0.5


def test_pointing_game_ties_score_the_share_of_maxima_that_hit():
    """A uniform map scores the chance level: the share of pixels within tolerance of the object."""
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, :, :4] = True
    assert pointing_game(torch.ones(1, 10, 10), mask, tolerance=0) == pytest.approx(0.4)
    assert pointing_game(torch.zeros(1, 10, 10), mask, tolerance=0) == pytest.approx(0.4)  # flat: no NaN
    two_peaks = torch.zeros(1, 10, 10)
    two_peaks[0, 0, 0] = two_peaks[0, 0, 9] = 1
    assert pointing_game(two_peaks, mask, tolerance=0) == 0.5


def test_pointing_game_with_boxes_and_an_explainer():
    boxes = torch.tensor([[10, 10, 20, 20]])
    heat = torch.zeros(1, 32, 32)
    heat[0, 12, 18] = 1
    assert pointing_game(heat, boxes, tolerance=0) == 1.0
    x = torch.zeros(1, 3, 32, 32)
    assert pointing_game(lambda inputs, target: heat, boxes, tolerance=0, inputs=x) == 1.0
    assert gt_masks(boxes, 1, (32, 32)).sum() == 100


def test_pointing_game_leaves_out_images_without_an_object():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[1, 0, 0] = True
    heat = torch.zeros(2, 8, 8)
    heat[:, 0, 0] = 1
    assert pointing_game(heat, masks, tolerance=0) == 1.0
    with pytest.raises(ValueError, match="empty"):
        pointing_game(heat, torch.zeros(2, 8, 8, dtype=torch.bool))


def test_metrics_use_the_raw_gradient_of_input_space_methods_not_the_display_image():
    """The display image maps a zero gradient to 0.5; a metric must see |gradient|, where zero is zero."""
    import camlab
    from camlab.metrics._common import compute_maps
    from tests.tiny_nets import GapNet

    net = GapNet()
    x = torch.randn(2, 3, 8, 8)
    method = camlab.GuidedBackprop(net)
    expected = method(x, target=[0, 1], raw=True).abs().amax(dim=1)
    assert torch.allclose(compute_maps(method, x, [0, 1]), expected)
