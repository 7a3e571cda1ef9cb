"""Checks for chapter 07 (the variants): Grad-CAM++'s alpha, Score-CAM's weights, LayerCAM's map."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from camlab.exercises._checking import (CheckResult, cases_for, close, integer, run_check, small_integers,
                                        with_weights)

#: worked example: channel 0 sums to S = 6; at g = 1: 1 / (2 + 6) = 0.125; at g = -2: 4 / (8 - 48) = -0.1
GRADCAMPP_ALPHA = [((torch.tensor([[[[3., 1.], [1., 1.]], [[0., 2.], [1., 1.]]]]), torch.tensor([[[[0., 1.], [-2.,
    1.]], [[-1., 1.], [-1., -2.]]]])), torch.tensor([[[[0., 0.125], [-0.1, 0.125]], [[-0.5, 0.16667], [-0.5,
    -0.16667]]]]))]


def gradcampp_alpha_reference(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Eq. 19 in float64, 0 where the denominator is 0."""
    g = gradients.double()
    denominator = 2 * g ** 2 + activations.double().sum(dim=(2, 3), keepdim=True) * g ** 3
    return torch.where(denominator != 0, g ** 2 / torch.where(denominator != 0, denominator, 1.0), 0.0).float()


def _alpha_case(generator: torch.Generator, cancel: bool = False, empty_channel: bool = False):
    """1-2 images, 2-3 channels of 1-3 x 2-4 positions, activations in [0, 3], gradients in [-2, 2] (zeros
    common: alpha 0 there). ``cancel``: a gradient of exactly -2/S in a channel whose activations sum to S, so that
    2 g^2 + S g^3 = 0 although g is not (alpha 0, not a division by ~0); ``empty_channel``: a channel of zero
    activations (S = 0: alpha = 1/2 wherever g is not 0)."""
    batch, channels = integer(generator, 1, 2), integer(generator, 2, 3)
    height, width = integer(generator, 1, 3), integer(generator, 2, 4)
    activations = small_integers(generator, (batch, channels, height, width), 0, 3)
    gradients = small_integers(generator, (batch, channels, height, width), -2, 2)
    if cancel:
        total = (1, 2, 4, 8)[integer(generator, 0, 3)]
        activations[0, 0] = 0
        activations[0, 0, 0, 0] = total
        gradients[0, 0, integer(generator, 0, height - 1), integer(generator, 0, width - 1)] = -2 / total
    if empty_channel:
        activations[:, integer(generator, 0, channels - 1)] = 0
    return (activations, gradients), gradcampp_alpha_reference(activations, gradients)


#: the kinds of hidden case (``hidden_seed``): zero gradients, a denominator that cancels to 0, a channel whose
#: activations sum to 0
ALPHA_KINDS = (_alpha_case, partial(_alpha_case, cancel=True), partial(_alpha_case, empty_channel=True))


def check_gradcampp_alpha(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(activations, gradients) -> alpha``: Grad-CAM++'s Eq. 19, (N,K,h,w),
    :math:`\\alpha = g^2 / (2 g^2 + \\sum_{ab} A_{ab} \\, g^3)`, 0 where the denominator is 0. ``hidden_seed``
    draws :data:`ALPHA_KINDS`."""
    name, cases = cases_for("Grad-CAM++ alpha", GRADCAMPP_ALPHA, hidden, hidden_seed, ALPHA_KINDS)
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


def scorecam_weights_reference(model: nn.Module, x: torch.Tensor, activations: torch.Tensor,
                               target: int) -> torch.Tensor:
    """Each channel upsampled to ``x``'s size (bilinear, ``align_corners=False``), min-max scaled to [0, 1], and the
    softmax probability of ``target`` for ``x`` times that mask; 0 for a constant channel."""
    masks = torch.nn.functional.interpolate(activations, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    low, high = masks.amin(dim=(1, 2), keepdim=True), masks.amax(dim=(1, 2), keepdim=True)
    masks = (masks - low) / torch.where(high > low, high - low, 1.0)
    with torch.no_grad():
        probability = model(x * masks[:, None]).softmax(dim=1)[:, target]
    return torch.where((high > low).flatten(), probability, 0.0)


def _score_case(generator: torch.Generator, constant: bool = False, negative: bool = False):
    """A linear model (no bias, 2-4 classes) on a 1x1x4x4 input, 2-4 channels of 2x2 activations in [0, 3]
    (bilinear upsampling to 4x4). ``constant``: a constant channel (weight 0); ``negative``: a channel with negative
    values (min-max scaling, not division by the maximum)."""
    classes, channels = integer(generator, 2, 4), integer(generator, 2, 4)
    model = with_weights(lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, classes, bias=False)),
                         small_integers(generator, (classes, 16), -2, 2) / 2)
    x = small_integers(generator, (1, 1, 4, 4), -2, 2)
    activations = small_integers(generator, (1, channels, 2, 2), 0, 3)
    if constant:
        activations[0, integer(generator, 0, channels - 1)] = float(integer(generator, 0, 3))
    if negative:
        activations[0, 0] = small_integers(generator, (2, 2), -3, 0)
        activations[0, 0, 0, 0] = -4.0                     # not constant
    target = integer(generator, 0, classes - 1)
    return (model, x, activations, target), scorecam_weights_reference(model, x, activations, target)


#: the kinds of hidden case (``hidden_seed``): a constant channel, negative activations, any target class
SCORE_KINDS = (_score_case, partial(_score_case, constant=True), partial(_score_case, negative=True))


def check_scorecam_weights(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(model, x, activations, target) -> (K,)`` Score-CAM weights for one image in the form of the
    authors' code (``ScoreCAM(weighting="probability")``); the paper's Algorithm 1 (a softmax over channels of the
    class scores) is ``weighting="paper"``. ``hidden_seed`` draws :data:`SCORE_KINDS`."""
    name, cases = cases_for("Score-CAM weights", _score_cases(), hidden, hidden_seed, SCORE_KINDS)
    return run_check(
        name, student, cases,
        hint="for each channel k: bring A^k to x's size (bilinear, align_corners=False), min-max scale it to "
             "[0, 1], run the model on x * mask and take the SOFTMAX PROBABILITY of the target class (a softmax over "
             "classes, per masked input; not a softmax over channels, not the raw logit); a constant channel gets 0.",
        compare=lambda actual, expected: close(torch.as_tensor(actual).reshape(-1), expected, atol=1e-4))


#: worked example: at the first position ReLU(g) = (0, 2, 2) times A = (1, 1, 0) sums to 2
LAYERCAM_MAP = [((torch.tensor([[[[1., 1., 0.]], [[1., 0., 2.]], [[0., 1., 2.]]]]), torch.tensor([[[[0., 3., -2.]],
    [[2., 1., -1.]], [[2., -1., 1.]]]])), torch.tensor([[[2., 3., 2.]]]))]


def layercam_map_reference(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathrm{ReLU}(\\sum_k \\mathrm{ReLU}(g^k) \\odot A^k)`, in float64."""
    return (gradients.double().clamp_min(0) * activations.double()).sum(dim=1).clamp_min(0).float()


def _layercam_case(generator: torch.Generator, negative_gradients: bool = False, signed: bool = False):
    """1-3 images, 2-4 channels of 1-3 x 2-4 positions, activations in [0, 3], gradients in [-3, 3].
    ``negative_gradients``: every gradient of one image below 0 (its map is 0); ``signed``: activations in [-3, 3]
    (the final ReLU matters)."""
    batch, channels = integer(generator, 1, 3), integer(generator, 2, 4)
    height, width = integer(generator, 1, 3), integer(generator, 2, 4)
    activations = small_integers(generator, (batch, channels, height, width), -3 if signed else 0, 3)
    gradients = small_integers(generator, (batch, channels, height, width), -3, 3)
    if negative_gradients:
        gradients[0] = -gradients[0].abs() - 1
    return (activations, gradients), layercam_map_reference(activations, gradients)


#: the kinds of hidden case (``hidden_seed``): an image whose gradients are all negative, signed activations
LAYERCAM_KINDS = (_layercam_case, partial(_layercam_case, negative_gradients=True), partial(_layercam_case,
                                                                                             signed=True))


def check_layercam_map(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(activations, gradients) -> (N,h,w)`` LayerCAM's unscaled map,
    :math:`\\mathrm{ReLU}(\\sum_k \\mathrm{ReLU}(g^k) \\odot A^k)`. ``hidden_seed`` draws :data:`LAYERCAM_KINDS`."""
    name, cases = cases_for("LayerCAM map", LAYERCAM_MAP, hidden, hidden_seed, LAYERCAM_KINDS)
    return run_check(
        name, student, cases,
        hint="weight every position by the positive part of its own gradient (no spatial average), multiply by "
             "the activation, add up over the channels and apply a final ReLU: shape (N,h,w).")


#: the student's own scenes: ``make_scenes(EXPERIMENT_SCENES, seed=EXPERIMENT_SEED_BASE + seed, instances=3)``
EXPERIMENT_SCENES, EXPERIMENT_SEED_BASE = 60, 1000


def missed_instances_reference(seed: int, layer: str = "features.10") -> torch.Tensor:
    """(2, 60) float 0/1: per scene, whether Grad-CAM++ (row 0) and Grad-CAM (row 1) miss some instance (its peak in
    its box below half the map's maximum, :func:`camlab.compare.instance_peaks`) on ``lab_vgg`` at ``layer``, on the
    three-instance scenes ``make_scenes(60, seed=1000 + seed, instances=3)``, each explained for its label."""
    from camlab.compare import instance_peaks, variant_maps
    from camlab.lab import make_scenes
    from camlab.models import load_model, preprocess

    model = load_model("lab_vgg")
    scenes = make_scenes(EXPERIMENT_SCENES, seed=EXPERIMENT_SEED_BASE + int(seed), instances=3)
    maps = variant_maps(model, preprocess(scenes.images, model), scenes.labels.tolist(), ["gradcam++", "gradcam"],
                        layer)
    return torch.stack([(instance_peaks(maps[name], scenes.instance_boxes).amin(dim=1) < 0.5).float()
                        for name in ("gradcam++", "gradcam")])


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def _same_outcomes(actual, expected, slack: int = 1) -> bool:
    """Same shape and at most ``slack`` differing outcomes in all: a peak within float noise of the 0.5 threshold may
    fall on either side on another CPU; an answer for other scenes, layer or rule differs on many more."""
    try:
        actual = torch.as_tensor(actual, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return False
    return actual.shape == expected.shape and int((actual != expected).sum()) <= slack


def check_missed_instances(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(seed) -> (2, 60)`` 0/1 outcomes (Grad-CAM++, Grad-CAM: some instance missed) on the student's own
    three-instance scenes (:func:`missed_instances_reference`, ``seed`` = ``STUDENT_SEED``); ``hidden`` lists further
    seeds, so an answer copied from another student fails. The reference is computed after the student's function
    has returned."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    name = "missed-instance experiment" if hidden is None else "missed-instance experiment (hidden seeds)"
    return run_check(
        name, lambda s: _detached(student(s)), [((s,), s) for s in seeds],
        compare=lambda actual, expected: _same_outcomes(actual, missed_instances_reference(expected)),
        hint="draw make_scenes(60, seed=1000 + seed, instances=3), explain each scene's label with Grad-CAM++ and "
             "Grad-CAM on lab_vgg at 'features.10' (scaled maps), and mark a scene 1 when the weakest instance's peak "
             "inside its box is below half the map's maximum; return the two rows stacked, Grad-CAM++ first")
