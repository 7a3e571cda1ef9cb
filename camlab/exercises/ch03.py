"""Checks for chapter 03, Guided Grad-CAM: the guided backpropagation rule at a ReLU6, Guided Grad-CAM as a product
(flat maps included), the rank correlation, and a per-student class-discrimination experiment."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from camlab.exercises._checking import CheckResult, cases_for, close, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


#: worked example: ReLU6's own gate is 0 < x < 6 (0 and 6 themselves are off); the signal must also be positive
GUIDED_RELU6_BACKWARD = [((torch.tensor([0., 1., -1., 2., 6., 7.]), torch.tensor([1., 1., 1., -1., 1., 1.])),
                          torch.tensor([0., 1., 0., 0., 0., 0.]))]


def check_guided_relu6_backward(student, hidden: list | None = None) -> CheckResult:
    r"""``student(inputs, grad_output) -> grad_input``: the guided backpropagation rule at one ReLU6,
    :math:`\min(\max(x, 0), 6)`: :math:`R_l = [0 < x_l < 6] \cdot [R_{l+1} > 0] \cdot R_{l+1}`, elementwise on
    tensors of any shape (ReLU6's own derivative is 1 strictly between 0 and 6, as autograd computes it)."""
    name, cases = cases_for("guided_relu6_backward", GUIDED_RELU6_BACKWARD, hidden)
    return run_check(
        name, lambda i, g: _detached(student(i, g)), cases,
        hint="keep grad_output where the forward input was strictly between 0 and 6 (ReLU6's own gradient: flat "
             "below 0 AND above 6) and the signal itself is positive; zero everywhere else")


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
    ``camlab.GradCAM`` returns it; a flat map, whose maximum equals its minimum, scales to 0, never NaN), and
    multiply it into every colour channel of ``guided``."""
    name, cases = cases_for("guided_gradcam", GUIDED_GRADCAM, hidden)
    return run_check(
        name, lambda g, c: _detached(student(g, c)), cases,
        hint="bring the map to the image's size with bilinear interpolation (align_corners=False), scale EACH "
             "image's map to [0, 1] by its own minimum and maximum, then multiply it into every colour channel; "
             "nearest-neighbour upsampling (Captum's choice) or skipping the scaling gives a different image; "
             "a constant map has max - min = 0: return zeros there instead of dividing")


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


#: the experiment's protocol: scenes per seed (one distractor each)
DISCRIMINATION_SCENES = 40


def discrimination_reference(model, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The experiment done right: on ``make_scenes(40, seed=seed, distractors=1)``, per scene the symmetric
    discrimination (:func:`camlab.metrics.discrimination.symmetric_discrimination`, the objects' boxes) of guided
    backprop and of Guided Grad-CAM, each explained for the label and for the distractor's class, the (N,3,H,W)
    images turned into maps by :func:`camlab.metrics.saliency`. Returns (guided backprop, Guided Grad-CAM)."""
    from camlab.lab import class_index, make_scenes
    from camlab.methods import GuidedBackprop, GuidedGradCAM
    from camlab.metrics import saliency
    from camlab.metrics.discrimination import symmetric_discrimination
    from camlab.preprocessing import preprocess

    scenes = make_scenes(DISCRIMINATION_SCENES, seed=seed, distractors=1)
    x = preprocess(scenes.images, model)
    other = [class_index(objects[1]["class"]) for objects in scenes.objects]
    boxes_a = torch.tensor([objects[0]["box"] for objects in scenes.objects])
    boxes_b = torch.tensor([objects[1]["box"] for objects in scenes.objects])
    results = []
    for method in (GuidedBackprop(model), GuidedGradCAM(model)):
        maps_a = saliency(method(x, target=scenes.labels.tolist(), raw=True))
        maps_b = saliency(method(x, target=other, raw=True))
        results.append(symmetric_discrimination(maps_a, maps_b, boxes_a, boxes_b))
    return results[0], results[1]


def _same_pair(actual, expected) -> bool:
    reference = expected()
    try:
        guided, product = actual
    except (TypeError, ValueError):
        return False
    return close(guided, reference[0], atol=1e-3, rtol=1e-3) and close(product, reference[1], atol=1e-3, rtol=1e-3)


def check_discrimination_experiment(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(model, seed) -> (guided_backprop, guided_gradcam)``, two (40,) tensors: per scene of
    ``make_scenes(40, seed=seed, distractors=1)`` and ``lab_vgg``, the symmetric discrimination of each method. The
    reference is recomputed for each seed (``STUDENT_SEED``, and further seeds in ``hidden``)."""
    from camlab.models import load_model

    model = load_model("lab_vgg")
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [((model, s), partial(discrimination_reference, model, s)) for s in seeds]
    name = "discrimination_experiment" if hidden is None else "discrimination_experiment (hidden seeds)"
    return run_check(name, student, cases, compare=_same_pair,
                     hint="draw the scenes with your seed and one distractor; explain every scene twice per method "
                          "(its label, and the second object's class), with raw=True; turn each image into a map "
                          "with camlab.metrics.saliency; score the pair with symmetric_discrimination and the two "
                          "objects' boxes; guided backprop first")
