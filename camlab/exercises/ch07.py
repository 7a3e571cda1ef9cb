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
