"""camlab.outcomes: per-image localization outcomes that agree with camlab.metrics.localization_error."""
from __future__ import annotations

import pytest
import torch

from camlab.metrics import localization_error
from camlab.outcomes import localization_outcomes

SHIFTS = [0, 1, 2, 4, 0, 5]   # image i's 8x8 blob sits SHIFTS[i] px below the box [2, 10)^2


class ByBrightness(torch.nn.Module):
    """Two classes; image i is filled with the value i + 1 and gets logits (4.5 - (i + 1), 0): images 0-3 are
    called class 0 (right), images 4 and 5 class 1 (wrong)."""

    def forward(self, x):
        value = x.mean(dim=(1, 2, 3))
        return torch.stack([4.5 - value, torch.zeros_like(value)], dim=1)


def blob_maps(x, target):
    """The same map whatever the class: a blob shifted by SHIFTS[image]."""
    maps = torch.zeros(x.shape[0], 16, 16)
    for row, value in enumerate(x.mean(dim=(1, 2, 3)).round().long().tolist()):
        shift = SHIFTS[value - 1]
        maps[row, 2 + shift:10 + shift, 2:10] = 1.0
    return maps


@pytest.fixture
def images():
    return torch.arange(1, 7, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 16, 16).contiguous()


def test_each_image_is_localized_when_its_class_is_right_and_its_box_overlaps_by_half(images):
    """IoU of a blob shifted by s with the box: 8(8-s) / (128 - 8(8-s)) = 1, 0.78, 0.60 for s = 0, 1, 2 and
    0.33, 0.23 for s = 4, 5. Image 4's box is perfect but its top-1 class is wrong; class 0 is its second guess."""
    boxes = torch.tensor([[2, 2, 10, 10]] * 6)
    hits = localization_outcomes(ByBrightness(), images, blob_maps, labels=[0] * 6, boxes=boxes, top=(1, 2))
    assert hits["top1"].tolist() == [True, True, True, False, False, False]
    assert hits["top2"].tolist() == [True, True, True, False, True, False]
    assert hits["gt_known"].tolist() == [True, True, True, False, True, False]


def test_the_share_not_localized_is_localization_error(images):
    boxes = torch.tensor([[2, 2, 10, 10]] * 6)
    error = localization_error(ByBrightness(), images, blob_maps, labels=[0] * 6, boxes=boxes, top=(1, 2))
    hits = localization_outcomes(ByBrightness(), images, blob_maps, labels=[0] * 6, boxes=boxes, top=(1, 2))
    for key in ("top1", "top2", "gt_known"):
        assert 1 - hits[key].float().mean().item() == pytest.approx(error[key])


def test_precomputed_maps_give_the_top1_column(images):
    boxes = torch.tensor([[2, 2, 10, 10]] * 6)
    hits = localization_outcomes(ByBrightness(), images, blob_maps(images, None), labels=[0] * 6, boxes=boxes,
                                 top=(1,))
    assert hits["top1"].tolist() == [True, True, True, False, False, False] and "gt_known" not in hits


def test_inputs_must_be_a_batch_of_images():
    with pytest.raises(ValueError, match=r"\(N,C,H,W\) tensor"):
        localization_outcomes(ByBrightness(), torch.zeros(3, 16, 16), blob_maps, labels=[0] * 3,
                              boxes=torch.tensor([[2, 2, 10, 10]] * 3))
