"""Checks for chapter 05, failure analysis: what a channel really contributes, how much of a map lies on a
spurious cue, and how a saturating target kills the gradient."""
from __future__ import annotations

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, close, run_check


def _heads() -> list[nn.Module]:
    """Hidden heads mapping (1,K,h,w) activations to (1,5) logits: a GAP + linear head (where a first-order
    estimate happens to be exact) and a non-linear one (where it is not)."""
    generator = torch.Generator().manual_seed(5)
    linear = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    nonlinear = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                              nn.Linear(8, 5))
    for head in (linear, nonlinear):
        with torch.no_grad():
            for parameter in head.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
        head.eval()
    return [linear, nonlinear]


def _reference_drop(head: nn.Module, activations: torch.Tensor, target: int) -> torch.Tensor:
    with torch.no_grad():
        base = head(activations)[0, target]
        ablated = activations.repeat(activations.shape[1], 1, 1, 1)
        ablated[torch.arange(activations.shape[1]), torch.arange(activations.shape[1])] = 0
        return base - head(ablated)[:, target]


def check_channel_ablation_drop(student) -> CheckResult:
    """``student(head, activations, target) -> (K,)``: for a head mapping (1,K,h,w) activations to (1,classes)
    logits, the drop ``y[target](A) - y[target](A with channel k zeroed)`` for every channel k."""
    generator = torch.Generator().manual_seed(11)
    cases = []
    for head in _heads():
        for target in (0, 3):
            activations = torch.rand(1, 6, 5, 5, generator=generator) * 2
            activations[0, 2] = 0  # a dead channel: its drop must be exactly 0
            cases.append(((head, activations.clone(), target), _reference_drop(head, activations, target)))
    return run_check(
        "channel_ablation_drop", lambda head, activations, target: _detached(student(head, activations.clone(),
                                                                                     target)),
        cases, hint="run the head on the original activations and on a copy with channel k set to 0, and return "
                    "original score - ablated score (a real forward pass, not gradient x activation)",
        compare=lambda a, e: close(a, e, atol=1e-4))


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def check_cue_mass(student) -> CheckResult:
    """``student(heatmap, box) -> float``: the share of a non-negative (H,W) map's total value inside
    ``box = (x0, y0, x1, y1)`` (exclusive upper edges: ``heatmap[y0:y1, x0:x1]``)."""
    generator = torch.Generator().manual_seed(3)
    cases = []
    for box in [(56, 56, 62, 62), (0, 0, 10, 20), (10, 30, 40, 33)]:
        heatmap = torch.rand(64, 64, generator=generator) ** 3
        x0, y0, x1, y1 = box
        cases.append(((heatmap, box), float(heatmap[y0:y1, x0:x1].sum() / heatmap.sum())))
    return run_check("cue_mass", lambda heatmap, box: float(student(heatmap.clone(), box)), cases,
                     hint="sum the map inside heatmap[y0:y1, x0:x1] (rows are y, columns are x; upper edges "
                          "excluded) and divide by the sum of the whole map",
                     compare=lambda a, e: close(a, e, atol=1e-5))


def check_sigmoid_gradient(student) -> CheckResult:
    """``student(logit, scale) -> d sigmoid(scale * logit) / d logit`` (tensors, element-wise)."""
    logits = torch.tensor([-3.0, 0.0, 0.5, 2.0, 8.0])
    cases = []
    for scale in (1.0, 3.0, 10.0):
        s = torch.sigmoid(scale * logits)
        cases.append(((logits.clone(), scale), scale * s * (1 - s)))
    return run_check("sigmoid_gradient", lambda logit, scale: _detached(student(logit, scale)), cases,
                     hint="chain rule: sigma'(u) = sigma(u) (1 - sigma(u)) at u = scale * logit, times du/dlogit = "
                          "scale", compare=lambda a, e: close(a, e, atol=1e-6, rtol=1e-4))
