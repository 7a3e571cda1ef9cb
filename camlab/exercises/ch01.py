"""Chapter 01 (CAM with global average pooling): the map, the channel contributions, the box."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, cases_for, run_check

#: worked example (K=2 channels, C=3 classes, class 1): M = 0 * A^0 + (-1) * A^1
CAM = [((torch.tensor([[[[3., 2., 0.], [1., 1., 1.]], [[1., 0., 1.], [0., 3., 0.]]]]), torch.tensor([[0., 1.], [0.,
    -1.], [-2., 1.]]), 1), torch.tensor([[[-1., 0., -1.], [0., -3., 0.]]]))]


def check_cam(student, hidden: list | None = None) -> CheckResult:
    """``student(activations (N,K,h,w), fc_weight (C,K), class_index) -> (N,h,w)``: the class activation map
    :math:`M^c = \\sum_k w^c_k A^k` of the CAM paper (signed, no ReLU, no scaling)."""
    name, cases = cases_for("cam", CAM, hidden)
    return run_check(name, student, cases,
                     hint="the class's weights are one ROW of fc_weight (one number per channel); weight every "
                          "channel map by its number and add them up over the channels: no mean, no ReLU")


#: worked example (class 1, weights (0, -1)): channel means (20/6, 4), so contributions (0 * 20/6, -1 * 4)
CHANNEL_CONTRIBUTIONS = [((torch.tensor([[[[4., 6., 0.], [2., 6., 2.]], [[6., 6., 4.], [6., 0., 2.]]]]),
    torch.tensor([[0., 1.], [0., -1.], [-2., 1.]]), 1), torch.tensor([[0., -4.]]))]


def check_channel_contributions(student, hidden: list | None = None) -> CheckResult:
    """``student(activations (N,K,h,w), fc_weight (C,K), class_index) -> (N,K)``: how much each channel adds to the
    class score, :math:`w^c_k \\cdot \\frac{1}{Z}\\sum_{ij} A^k_{ij}`; summed over k plus the bias it is the logit."""
    name, cases = cases_for("channel_contributions", CHANNEL_CONTRIBUTIONS, hidden)
    return run_check(name, student, cases,
                     hint="global average pooling first - the MEAN of each channel over its positions, not the sum "
                          "or the max - then multiply each channel's mean by the class's weight for that channel")


#: worked example: threshold 0.5 * 5 = 2.5 keeps 3, 5, 4, 3 (rows 1-3, columns 2-3): box (2, 1, 4, 4)
BOX_FROM_THRESHOLD = [((torch.tensor([[0., 0., 0., 0., 0., 0.], [0., 2., 3., 0., 0., 0.], [0., 1., 5., 4., 0., 0.],
    [0., 0., 2., 3., 1., 0.], [0., 0., 0., 0., 0., 0.]]), 0.5), (2, 1, 4, 4))]


def _same_box(actual, expected) -> bool:
    try:
        return tuple(int(v) for v in actual) == tuple(expected)
    except (TypeError, ValueError):
        return False


def check_box_from_threshold(student, hidden: list | None = None) -> CheckResult:
    """``student(heatmap (H,W), threshold) -> (x0, y0, x1, y1)``: the box around every pixel whose value is at least
    ``threshold`` times the map's maximum, upper edges exclusive (``heatmap[y0:y1, x0:x1]`` is the box). The maps
    have one blob, so this is the Grad-CAM paper's box without the connected-segment step."""
    name, cases = cases_for("box_from_threshold", BOX_FROM_THRESHOLD, hidden)
    return run_check(name, student, cases, compare=_same_box,
                     hint="the threshold is a fraction of the map's maximum, not an absolute value; x runs along "
                          "the columns and y along the rows; the upper edges are one past the last kept row/column")
