"""Chapter 01's checks pass the right answers and fail plausible wrong ones."""
import pytest
import torch

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def cam(activations, fc_weight, class_index):
    return torch.einsum("k,nkhw->nhw", fc_weight[class_index], activations)


def contributions(activations, fc_weight, class_index):
    return fc_weight[class_index][None] * activations.mean(dim=(2, 3))


def box(heatmap, threshold):
    keep = heatmap >= threshold * heatmap.max()
    rows, cols = keep.any(dim=1).nonzero()[:, 0], keep.any(dim=0).nonzero()[:, 0]
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_cam_passes_the_weighted_channel_sum(check):
    assert check("ch01_cam", cam)


@pytest.mark.parametrize("wrong", [
    lambda a, w, c: cam(a, w, c).clamp_min(0),  # ReLU: not the paper's signed map
    lambda a, w, c: cam(a, w, c) / a.shape[1],  # a mean over channels
    lambda a, w, c: torch.einsum("k,nkhw->nhw", w[:, c], a),  # the transposed weight (a column)
])
def test_cam_fails_wrong_answers(wrong, check):
    assert not check("ch01_cam", wrong)


def test_channel_contributions_pass_weight_times_gap(check):
    assert check("ch01_channel_contributions", contributions)


@pytest.mark.parametrize("wrong", [
    lambda a, w, c: w[c][None] * a.sum(dim=(2, 3)),  # sum instead of the average
    lambda a, w, c: w[c][None].expand(a.shape[0], -1),  # the weights alone
    lambda a, w, c: w[c][None] * a.amax(dim=(2, 3)),  # max pooling
])
def test_channel_contributions_fail_wrong_answers(wrong, check):
    assert not check("ch01_channel_contributions", wrong)


def test_box_from_threshold_passes_the_relative_threshold_box(check):
    assert check("ch01_box_from_threshold", box)


@pytest.mark.parametrize("wrong", [
    lambda h, t: tuple(v - (1 if i >= 2 else 0) for i, v in enumerate(box(h, t))),  # inclusive upper edges
    lambda h, t: box((h >= t).float(), 1.0),  # an absolute threshold, not a fraction of the maximum
    lambda h, t: (box(h, t)[1], box(h, t)[0], box(h, t)[3], box(h, t)[2]),  # rows and columns swapped
])
def test_box_from_threshold_fails_wrong_answers(wrong, check):
    assert not check("ch01_box_from_threshold", wrong)
