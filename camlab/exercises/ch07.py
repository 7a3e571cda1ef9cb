"""Checks for chapter 07 (the variants): Grad-CAM++'s alpha, Score-CAM's weights, LayerCAM's map."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, run_check, with_weights

#: worked example: channel 0 sums to S = 6; at g = 1: 1 / (2 + 6) = 0.125; at g = -2: 4 / (8 - 48) = -0.1
GRADCAMPP_ALPHA = [((torch.tensor([[[[3., 1.], [1., 1.]], [[0., 2.], [1., 1.]]]]), torch.tensor([[[[0., 1.], [-2.,
    1.]], [[-1., 1.], [-1., -2.]]]])), torch.tensor([[[[0., 0.125], [-0.1, 0.125]], [[-0.5, 0.16667], [-0.5,
    -0.16667]]]]))]


def check_gradcampp_alpha(student, hidden: list | None = None) -> CheckResult:
    """``student(activations, gradients) -> alpha``: Grad-CAM++'s Eq. 19, (N,K,h,w),
    :math:`\\alpha = g^2 / (2 g^2 + \\sum_{ab} A_{ab} \\, g^3)`, 0 where the denominator is 0."""
    name, cases = cases_for("Grad-CAM++ alpha", GRADCAMPP_ALPHA, hidden)
    return run_check(
        name, student, cases,
        hint="S is the sum of the channel's activations over ALL its positions (one number per channel), "
             "multiplied by the cube of the gradient at each position; where the denominator is 0 alpha is 0 "
             "(no NaN)")


def _score_cases() -> list:
    """Worked example: a linear model y = W x on a 2x2 input; channel 0 = [[0, 2], [1, 1]] scales to the mask
    [[0, 1], [.5, .5]], so x * mask = [[0, 2], [-.5, .5]], y = (1, 2.5) and p_0 = 1 / (1 + e^1.5) = 0.18243; the
    constant channel 1 gets 0; channel 2 gives y = (2, 0), p_0 = 0.8808."""
    model = with_weights(lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)),
                         torch.tensor([[1., 0., 0., 2.], [0., 1., -1., 0.]]))
    x = torch.tensor([[[[1., 2.], [-1., 1.]]]])
    activations = torch.tensor([[[[0., 2.], [1., 1.]], [[3., 3.], [3., 3.]], [[4., 0.], [0., 2.]]]])
    return [((model, x, activations, 0), torch.tensor([0.18243, 0., 0.8808]))]


def check_scorecam_weights(student, hidden: list | None = None) -> CheckResult:
    """``student(model, x, activations, target) -> (K,)`` Score-CAM weights for one image in the form of the
    authors' code (``ScoreCAM(weighting="probability")``); the paper's Algorithm 1 (a softmax over channels of the
    class scores) is ``weighting="paper"``."""
    name, cases = cases_for("Score-CAM weights", _score_cases(), hidden)
    return run_check(
        name, student, cases,
        hint="for each channel k: bring A^k to x's size (bilinear, align_corners=False), min-max scale it to "
             "[0, 1], run the model on x * mask and take the SOFTMAX PROBABILITY of the target class (a softmax over "
             "classes, per masked input; not a softmax over channels, not the raw logit); a constant channel gets 0.",
        compare=lambda actual, expected: close(torch.as_tensor(actual).reshape(-1), expected, atol=1e-4))


#: worked example: at the first position ReLU(g) = (0, 2, 2) times A = (1, 1, 0) sums to 2
LAYERCAM_MAP = [((torch.tensor([[[[1., 1., 0.]], [[1., 0., 2.]], [[0., 1., 2.]]]]), torch.tensor([[[[0., 3., -2.]],
    [[2., 1., -1.]], [[2., -1., 1.]]]])), torch.tensor([[[2., 3., 2.]]]))]


def check_layercam_map(student, hidden: list | None = None) -> CheckResult:
    """``student(activations, gradients) -> (N,h,w)`` LayerCAM's unscaled map,
    :math:`\\mathrm{ReLU}(\\sum_k \\mathrm{ReLU}(g^k) \\odot A^k)`."""
    name, cases = cases_for("LayerCAM map", LAYERCAM_MAP, hidden)
    return run_check(
        name, student, cases,
        hint="weight every position by the positive part of its own gradient (no spatial average), multiply by "
             "the activation, add up over the channels and apply a final ReLU: shape (N,h,w).")
