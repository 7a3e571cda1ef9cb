"""Chapter 02 (Grad-CAM, the derivation): gradients from a hook, the channel weights, the map."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, run_check, with_weights


def _two_channel_net(linear_weight: torch.Tensor) -> nn.Sequential:
    """1x1 conv with weights (1, -1) -> ReLU -> flatten -> linear without bias: for a (N,1,2,2) input the ReLU's
    output is (N,2,2,2) and the gradient of class c's score with respect to it is ``linear_weight[c]`` reshaped to
    (2,2,2), for every image (a linear head's gradient is its weight row)."""
    return with_weights(lambda: nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(8, linear_weight.shape[0], bias=False)),
                        torch.tensor([1.0, -1.0]), linear_weight)


def _layer_gradient_cases() -> list:
    """Worked example: x = [[1, -2], [3, 0]] gives ReLU(x) and ReLU(-x) as the layer's two channels; the gradient
    for class 1 (not the top class, 2) is row 1 of the linear weight."""
    net = _two_channel_net(torch.tensor([[1., 0., -2., 3., 0., 1., 1., -1.], [2., -1., 0., 0., 1., 1., 0., 2.],
                                         [0., 0., 1., 0., -1., 2., 3., 0.]]))
    x = torch.tensor([[[[1., -2.], [3., 0.]]]])
    return [((net, x, net[1], 1), (torch.tensor([[[[1., 0.], [3., 0.]], [[0., 2.], [0., 0.]]]]),
                                   torch.tensor([[[[2., -1.], [0., 0.]], [[1., 1.], [0., 2.]]]])))]


def check_layer_gradients(student, hidden: list | None = None) -> CheckResult:
    """``student(model, x, layer, class_index) -> (activations, gradients)``, both (N,K,h,w): the layer's output
    captured with a forward hook and :math:`\\partial y^c / \\partial A^k_{ij}` from ``torch.autograd.grad``, for every
    image of the batch (the score of image n depends only on image n, so the gradient of the summed score works).
    The model's hooks must be gone afterwards."""
    name, cases = cases_for("layer_gradients", _layer_gradient_cases(), hidden)

    def compare(actual, expected) -> bool:
        try:
            activations, gradients = actual
        except (TypeError, ValueError):
            return False
        leftover = any(module._forward_hooks for args, _ in cases for module in args[0].modules())
        return not leftover and close(activations, expected[0], atol=1e-5) and close(gradients, expected[1], atol=1e-5)

    return run_check(name, student, cases, compare=compare,
                     hint="register a forward hook on `layer` that stores its output, run the model, remove the hook "
                          "(also if the forward pass fails), then ask autograd for the gradient of the class's score "
                          "(summed over the batch) with respect to the STORED output, not the input")


#: worked example: the mean of [[-6, 2], [0, -4]] is -2, the mean of [[6, 0], [4, -4]] is 1.5
GRADCAM_WEIGHTS = [((torch.tensor([[[[-6., 2.], [0., -4.]], [[6., 0.], [4., -4.]]]]),), torch.tensor([[-2., 1.5]]))]


def check_gradcam_weights(student, hidden: list | None = None) -> CheckResult:
    """``student(gradients (N,K,h,w)) -> (N,K)``: :math:`\\alpha^c_k = \\frac{1}{Z}\\sum_{ij}
    \\partial y^c / \\partial A^k_{ij}`, the spatial MEAN of the gradient (Z = h * w)."""
    name, cases = cases_for("gradcam_weights", GRADCAM_WEIGHTS, hidden)
    return run_check(name, student, cases,
                     hint="average every channel's gradient over its h * w positions: the sum is Z times too large "
                          "(1/Z in the formula), and averaging over the channels gives the wrong shape")


#: worked example: image 0 has alpha = (0, 3, -4/3): 3 A^1 - 4/3 A^2 < 0 at 4 of 6 positions, where the ReLU gives 0
GRADCAM_MAP = [((torch.tensor([[[[1., 0., 0.], [1., 2., 1.]], [[1., 3., 1.], [0., 0., 0.]], [[3., 3., 1.], [2., 1.,
    3.]]], [[[1., 3., 0.], [0., 3., 1.]], [[2., 0., 2.], [3., 3., 2.]], [[3., 1., 1.], [1., 3., 2.]]]]),
    torch.tensor([[[[4., -6., -6.], [4., 2., 2.]], [[0., 4., 0.], [4., 6., 4.]], [[-6., -4., 4.], [-4., 0., 2.]]],
    [[[4., 0., 2.], [6., 6., -2.]], [[6., -2., 2.], [-2., -2., 4.]], [[6., -4., -2.], [0., -6., 0.]]]])),
    torch.tensor([[[0., 5., 1.66667], [0., 0., 0.]], [[1.66667, 7., 1.], [2., 8., 2.66667]]]))]


def check_gradcam_map(student, hidden: list | None = None) -> CheckResult:
    """``student(activations (N,K,h,w), gradients (N,K,h,w)) -> (N,h,w)``: the raw Grad-CAM map
    :math:`\\mathrm{ReLU}(\\sum_k \\alpha^c_k A^k)` at the layer's resolution (no upsampling, no scaling)."""
    name, cases = cases_for("gradcam_map", GRADCAM_MAP, hidden)
    return run_check(name, student, cases,
                     hint="first the channel weights (the spatial mean of each channel's gradient), then the "
                          "weighted sum of the activation maps over the channels, then the ReLU (negative values "
                          "become 0); no upsampling and no scaling")
