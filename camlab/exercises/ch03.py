"""Checks for chapter 03, Guided Grad-CAM: the guided backpropagation rule at one ReLU, Guided Grad-CAM as a
product, and the rank correlation that measures how class-discriminative a pair of maps is."""
from __future__ import annotations

import numpy as np
import torch

from camlab.exercises._checking import CheckResult, cases_for, close, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


#: worked example: only where the input AND the incoming gradient are positive (the input 0 is not) it passes
GUIDED_RELU_BACKWARD = [((torch.tensor([0., 1., -1., 2.]), torch.tensor([1., 1., 1., -1.])), torch.tensor([0., 1.,
    0., 0.]))]


def check_guided_relu_backward(student, hidden: list | None = None) -> CheckResult:
    r"""``student(inputs, grad_output) -> grad_input``: the guided backpropagation rule at one ReLU,
    :math:`R_l = [x_l > 0] \cdot [R_{l+1} > 0] \cdot R_{l+1}`, elementwise on tensors of any shape."""
    name, cases = cases_for("guided_relu_backward", GUIDED_RELU_BACKWARD, hidden)
    return run_check(
        name, lambda i, g: _detached(student(i, g)), cases,
        hint="keep grad_output where BOTH the forward input was positive (the ReLU's own gradient) AND the signal "
             "itself is positive; zero everywhere else (deconvnet forgets the first mask, plain backprop the second)")


#: worked example: the 2x2 map [[1, 1], [0, 4]] upsampled bilinearly to 4x4 still ranges from 0 to 4: divided by 4
GUIDED_GRADCAM = [((torch.tensor([[[[2., -2., -1., -3.], [-3., 1., -2., 0.], [2., 3., 0., 1.], [-3., 1., 2., -3.]],
    [[1., 3., -3., -1.], [1., 0., 2., 1.], [-3., -2., 1., -3.], [-2., 3., -1., -2.]]]]), torch.tensor([[[1., 1.],
    [0., 4.]]])), torch.tensor([[[[0.5, -0.5, -0.25, -0.75], [-0.5625, 0.25, -0.75, 0.], [0.125, 0.75, 0., 0.8125],
    [0., 0.25, 1.5, -3.]], [[0.25, 0.75, -0.75, -0.25], [0.1875, 0., 0.75, 0.4375], [-0.1875, -0.5, 0.625, -2.4375],
    [0., 0.75, -0.75, -2.]]]]))]


def check_guided_gradcam(student, hidden: list | None = None) -> CheckResult:
    r"""``student(guided, cam) -> (N,3,H,W)``: Guided Grad-CAM from the guided backprop image ``guided`` (N,C,H,W)
    and the raw Grad-CAM map ``cam`` (N,h,w) at the layer's resolution (after the ReLU, unscaled): upsample ``cam``
    bilinearly (``align_corners=False``) to (H,W), min-max scale each image's map to [0, 1] (as
    ``camlab.GradCAM`` returns it), and multiply it into every colour channel of ``guided``."""
    name, cases = cases_for("guided_gradcam", GUIDED_GRADCAM, hidden)
    return run_check(
        name, lambda g, c: _detached(student(g, c)), cases,
        hint="bring the map to the image's size with bilinear interpolation (align_corners=False), scale EACH "
             "image's map to [0, 1] by its own minimum and maximum, then multiply it into every colour channel; "
             "nearest-neighbour upsampling (Captum's choice) or skipping the scaling gives a different image")


#: worked example with ties: ranks (5, 3, 4, 1.5, 1.5, 6) and (3.5, 3.5, 2, 1, 5, 6) correlate 0.44118
MAP_RANK_CORRELATION = [((np.array([[3., 1., 2.], [0., 0., 5.]]), np.array([[2., 2., 1.], [0., 3., 4.]])), 0.44118)]


def check_map_rank_correlation(student, hidden: list | None = None) -> CheckResult:
    """``student(map_a, map_b) -> float``: the Spearman rank correlation of two maps of the same shape (flattened),
    with tied values given their average rank; the number this chapter uses to say two maps are 'the same'."""
    name, cases = cases_for("map_rank_correlation", MAP_RANK_CORRELATION, hidden)
    return run_check(
        name, lambda x, y: float(student(x, y)), cases,
        hint="replace each map's values by their ranks (tied values share their average rank), then take the "
             "ordinary (Pearson) correlation of the two rank vectors; the correlation of the raw values is not it",
        compare=lambda a, e: close(a, e, atol=1e-4))
