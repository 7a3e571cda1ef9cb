"""Checks for chapter 05, failure analysis: what a channel really contributes, how much of a map lies on a
spurious cue, and how a gate that saturates inside a network hides its evidence from the gradient."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from camlab.exercises._checking import CheckResult, cases_for, close, integer, run_check, small_integers, with_weights


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


def channel_ablation_drop_reference(head: nn.Module, activations: torch.Tensor, target: int) -> torch.Tensor:
    """``y[target](A) - y[target](A with channel k zeroed)`` for every channel k: the K ablated copies and the
    original in one batch through the head."""
    channels = activations.shape[1]
    ablated = activations.repeat(channels, 1, 1, 1)
    ablated[range(channels), range(channels)] = 0
    with torch.no_grad():
        scores = head(torch.cat([activations, ablated]))[:, target]
    return scores[0] - scores[1:]


def _ablation_case(generator: torch.Generator, relu: bool = False, dead: bool = False):
    """A GAP + linear head (2-3 classes, 2-4 channels, integer weights and bias) on (1,K,h,w) activations in
    [0, 3]. ``relu``: a ReLU on the logits, and the target's logit is 1 while channel 0 contributes 6 to it, so that
    zeroing channel 0 clips the logit at 0 (a drop of 1, where gradient x activation says 6); ``dead``: a channel of
    zeros (its drop is exactly 0)."""
    classes, channels = integer(generator, 2, 3), integer(generator, 2, 4)
    size, target = (integer(generator, 1, 3), integer(generator, 1, 3)), integer(generator, 0, classes - 1)
    weight = small_integers(generator, (classes, channels), -3, 3)
    bias = small_integers(generator, (classes,), -2, 2)
    activations = small_integers(generator, (1, channels, *size), 0, 3)
    if dead:
        activations[0, integer(generator, 1, channels - 1)] = 0
    if relu:
        weight[target, 0], activations[0, 0] = 3.0, 2.0
        bias[target] = 1 - float(weight[target] @ activations[0].mean(dim=(1, 2)))
    layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)] + ([nn.ReLU()] if relu else [])
    head = with_weights(lambda: nn.Sequential(*layers), weight, bias)
    return (head, activations, target), channel_ablation_drop_reference(head, activations, target)


#: the kinds of hidden case (``hidden_seed``): a linear head, a head whose logits pass a ReLU, a dead channel
ABLATION_KINDS = (_ablation_case, partial(_ablation_case, relu=True), partial(_ablation_case, relu=True, dead=True),
                  partial(_ablation_case, dead=True))


def check_channel_ablation_drop(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(head, activations, target) -> (K,)``: for a head mapping (1,K,h,w) activations to (1,classes)
    logits, the drop ``y[target](A) - y[target](A with channel k zeroed)`` for every channel k. ``hidden_seed`` draws
    :data:`ABLATION_KINDS`."""
    name, cases = cases_for("channel_ablation_drop", _ablation_cases(), hidden, hidden_seed, ABLATION_KINDS)
    return run_check(
        name, lambda head, activations, target: _detached(student(head, activations.clone(), target)), cases,
        hint="run the head on the original activations and on a copy with channel k set to 0, and return "
             "original score - ablated score (a real forward pass per channel, not gradient x activation)",
        compare=lambda a, e: close(a, e, atol=1e-4))


#: worked example: the box covers columns 1-2 of rows 0-1: (1 + 0 + 0 + 2) / 14
CUE_MASS = [((torch.tensor([[1., 1., 0., 3.], [0., 0., 2., 0.], [3., 1., 0., 3.]]), (1, 0, 3, 2)),
    torch.tensor(0.21429))]


def cue_mass_reference(heatmap: torch.Tensor, box) -> torch.Tensor:
    """The share of the map's total inside ``box`` (``heatmap[y0:y1, x0:x1]``), in float64."""
    x0, y0, x1, y1 = box
    heat = heatmap.double()
    return heat[y0:y1, x0:x1].sum() / heat.sum()


def _cue_case(generator: torch.Generator, border: bool = False, empty: bool = False, whole: bool = False):
    """A non-negative integer map of 2-6 x 2-7 pixels (zeros common) and a box in it, not square. ``border``: the
    box reaches the last row and column (upper edges H and W); ``empty``: the map is 0 in the box (share 0);
    ``whole``: the box is the whole map (share 1)."""
    height, width = integer(generator, 2, 6), integer(generator, 3, 7)
    heat = small_integers(generator, (height, width), 0, 3)
    x0, y0 = integer(generator, 0, width - 2), integer(generator, 0, height - 2)
    x1, y1 = integer(generator, x0 + 1, width), integer(generator, y0 + 1, height)
    if border:
        x1, y1 = width, height
    if whole:
        x0, y0, x1, y1 = 0, 0, width, height
    elif (x0, y0, x1, y1) == (0, 0, width, height):
        x0 = 1                                              # a box that is not the whole map
    if empty:
        heat[y0:y1, x0:x1] = 0
    outside = torch.ones(height, width, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    if whole and heat.sum() == 0:
        heat[0, 0] = 1.0                                    # never a zero map
    if not whole and heat[outside].sum() == 0:              # mass outside the box too
        heat[outside.nonzero()[0].tolist()] = 1.0
    box = (x0, y0, x1, y1)
    return (heat, box), cue_mass_reference(heat, box)


#: the kinds of hidden case (``hidden_seed``): a box on the border, a box with no mass, the whole map
CUE_KINDS = (_cue_case, partial(_cue_case, border=True), partial(_cue_case, empty=True), partial(_cue_case,
                                                                                               whole=True))


def check_cue_mass(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(heatmap, box) -> float``: the share of a non-negative (H,W) map's total value inside
    ``box = (x0, y0, x1, y1)`` (exclusive upper edges: ``heatmap[y0:y1, x0:x1]``). ``hidden_seed`` draws
    :data:`CUE_KINDS`."""
    name, cases = cases_for("cue_mass", CUE_MASS, hidden, hidden_seed, CUE_KINDS)
    return run_check(name, lambda heatmap, box: float(student(heatmap.clone(), box)), cases,
                     hint="add up the map inside the box (rows are y, columns are x; upper edges excluded) and "
                          "divide by the sum of the whole map", compare=lambda a, e: close(a, e, atol=1e-4))


#: the saturation experiment's protocol: toy cases per seed
SATURATION_CASES = 120


def saturation_shift_reference(seed: int, gain: float) -> torch.Tensor:
    """The experiment done right, on ``two_blob_activations(120, seed)`` and ``GatedHead(gain)``: per case, the
    share of the scaled Grad-CAM map (layer ``features``) in blob 0's box out of the mass in both boxes, minus the
    share of the score lost when channel 0 is zeroed out of the losses of zeroing each channel."""
    from camlab.analysis import mass_in_boxes
    from camlab.lab.toys import GatedHead, two_blob_activations
    from camlab.methods import GradCAM

    activations, boxes = two_blob_activations(SATURATION_CASES, seed)
    head = GatedHead(gain).eval()
    mass = mass_in_boxes(GradCAM(head, layer="features")(activations, target=0), boxes)
    with torch.no_grad():
        score = head(activations)[:, 0]
        drops = []
        for k in range(2):
            ablated = activations.clone()
            ablated[:, k] = 0
            drops.append(score - head(ablated)[:, 0])
    return mass[:, 0] / mass.sum(1) - drops[0] / (drops[0] + drops[1])


def check_saturation_shift(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed, gain) -> (120,)``: the per-case shift of Grad-CAM's share on the gated blob away from its
    true share (:func:`saturation_shift_reference`) for the student's own ``seed`` (``STUDENT_SEED``) and the gains
    0.5 and 10; ``hidden`` lists further seeds, so that an answer copied from another student fails. The reference
    is computed after the student's function has returned."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [((s, gain), (s, gain)) for s in seeds for gain in (0.5, 10.0)]
    name = "saturation experiment" if hidden is None else "saturation experiment (hidden seeds)"
    return run_check(
        name, lambda s, gain: _detached(torch.as_tensor(student(s, gain))), cases,
        compare=lambda actual, expected: close(actual, saturation_shift_reference(*expected), atol=1e-3),
        hint="draw the toy cases with your seed, explain GatedHead(gain) at 'features' with Grad-CAM (scaled maps), "
             "take blob 0's share of the mass inside the two boxes, and subtract the true share: the score lost by "
             "zeroing channel 0 divided by the losses of zeroing channel 0 and channel 1")
