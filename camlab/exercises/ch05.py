"""Checks for chapter 05, failure analysis: what a channel really contributes, how much of a map lies on a
spurious cue, and how a saturating target kills the gradient."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, run_check, with_weights


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def _ablation_cases() -> list:
    """Worked example: a GAP + linear head, y_0 = 1 m_0 - 2 m_1 + 3 m_2 with channel means m = (1, 1, 0): zeroing
    channel k removes w_k m_k, so the drops are (1, -2, 0) (the dead channel drops by exactly 0). The same head with
    a ReLU on the logits and channel means (1, 1, 1): y_0 = ReLU(2) = 2, and zeroing channel 2 gives ReLU(-1) = 0, a
    drop of 2, where gradient x activation would say 3."""
    weight, bias = torch.tensor([[1., -2., 3.], [0.5, 1., -1.]]), torch.tensor([0., -1.])
    linear = with_weights(lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)), weight, bias)
    activations = torch.tensor([[[[2., 0.], [2., 0.]], [[1., 1.], [1., 1.]], [[0., 0.], [0., 0.]]]])
    relu = with_weights(lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2), nn.ReLU()),
                        weight, bias)
    clipped = torch.tensor([[[[4., 0.], [0., 0.]], [[2., 2.], [0., 0.]], [[1., 1.], [1., 1.]]]])
    return [((linear, activations, 0), torch.tensor([1., -2., 0.])),
            ((relu, clipped, 0), torch.tensor([1., -2., 2.]))]


def check_channel_ablation_drop(student, hidden: list | None = None) -> CheckResult:
    """``student(head, activations, target) -> (K,)``: for a head mapping (1,K,h,w) activations to (1,classes)
    logits, the drop ``y[target](A) - y[target](A with channel k zeroed)`` for every channel k."""
    name, cases = cases_for("channel_ablation_drop", _ablation_cases(), hidden)
    return run_check(
        name, lambda head, activations, target: _detached(student(head, activations.clone(), target)), cases,
        hint="run the head on the original activations and on a copy with channel k set to 0, and return "
             "original score - ablated score (a real forward pass per channel, not gradient x activation)",
        compare=lambda a, e: close(a, e, atol=1e-4))


#: worked example: the box covers columns 1-2 of rows 0-1: (1 + 0 + 0 + 2) / 14
CUE_MASS = [((torch.tensor([[1., 1., 0., 3.], [0., 0., 2., 0.], [3., 1., 0., 3.]]), (1, 0, 3, 2)),
    torch.tensor(0.21429))]


def check_cue_mass(student, hidden: list | None = None) -> CheckResult:
    """``student(heatmap, box) -> float``: the share of a non-negative (H,W) map's total value inside
    ``box = (x0, y0, x1, y1)`` (exclusive upper edges: ``heatmap[y0:y1, x0:x1]``)."""
    name, cases = cases_for("cue_mass", CUE_MASS, hidden)
    return run_check(name, lambda heatmap, box: float(student(heatmap.clone(), box)), cases,
                     hint="add up the map inside the box (rows are y, columns are x; upper edges excluded) and "
                          "divide by the sum of the whole map", compare=lambda a, e: close(a, e, atol=1e-4))


#: worked example (scale 3): 3 sigma(1.5) (1 - sigma(1.5)) = 3 * 0.8176 * 0.1824 = 0.4474
SIGMOID_GRADIENT = [((torch.tensor([0.5, 2.]), 3.0), torch.tensor([0.44744, 0.0074]))]


def check_sigmoid_gradient(student, hidden: list | None = None) -> CheckResult:
    """``student(logit, scale) -> d sigmoid(scale * logit) / d logit`` (tensors, element-wise)."""
    name, cases = cases_for("sigmoid_gradient", SIGMOID_GRADIENT, hidden)
    return run_check(name, lambda logit, scale: _detached(student(logit, scale)), cases,
                     hint="chain rule: the sigmoid's derivative at u is sigma(u) (1 - sigma(u)); here u = scale * "
                          "logit, and du/dlogit contributes one more factor", compare=lambda a, e: close(a, e))
