"""Checks for chapter 03, Guided Grad-CAM: the chapter's guided construction applied to an activation it does not
treat (LeakyReLU), the counterfactual form of Guided Grad-CAM (negated gradients, flat maps included), the rank
correlation, and a per-student class-discrimination experiment. The first two draw their hidden cases from the
grader's ``HIDDEN_SEED``, one kind per edge case the chapter names."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

import torch.nn.functional as F

from camlab.exercises._checking import CheckResult, cases_for, close, integer, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def guided_leaky_relu_reference(inputs: torch.Tensor, grad_output: torch.Tensor, slope: float) -> torch.Tensor:
    r"""Exercise 1's rule: what the chapter's guided backprop construction (identity on the way up, ReLU of the
    signal on the way down, inserted right after the activation; autograd for the rest) passes down through
    ``LeakyReLU(slope)``: :math:`R_l = f'(x_l)\,\max(R_{l+1}, 0)` with autograd's own factor
    :math:`f'(x) = 1` for :math:`x > 0` and ``slope`` for :math:`x \le 0`. Computed by autograd itself."""
    x = inputs.detach().double().requires_grad_(True)
    (grad_input,) = torch.autograd.grad(F.leaky_relu(x, float(slope)), x,
                                        grad_outputs=grad_output.double().clamp_min(0))
    return grad_input.to(grad_output.dtype)


#: worked example (the notebook prints it): inputs [-2, 0, 3, 1, -1], signals [1, 1, 2, -1, -3], slope 0.1
GUIDED_LEAKY_RELU = [((torch.tensor([-2., 0., 3., 1., -1.]), torch.tensor([1., 1., 2., -1., -3.]), 0.1),
                      torch.tensor([0.1, 0.1, 2., 0., 0.]))]


def _leaky_case(generator: torch.Generator, slope: float | None = None) -> tuple[tuple, torch.Tensor]:
    """Random inputs and signals (1 to 4 dimensions, both signs) and ``slope`` (None: one from {0.01 (PyTorch's
    default), 0.1, 0.2, 0.3}); the first element is the kink (input 0) and the second a neuron that was off, both with
    a positive signal."""
    dims = int(torch.randint(1, 5, (1,), generator=generator))
    shape = tuple(int(v) for v in torch.randint(1, 5, (dims,), generator=generator))
    shape = (max(shape[0], 2), *shape[1:])
    inputs = torch.randint(-3, 4, shape, generator=generator).float() * 0.5      # half-steps: 0 is common
    grad_output = torch.randn(shape, generator=generator)
    inputs.view(-1)[:2] = torch.tensor([0.0, -1.5])
    grad_output.view(-1)[:2] = grad_output.view(-1)[:2].abs() + 0.5
    if slope is None:
        slope = (0.01, 0.1, 0.2, 0.3)[integer(generator, 0, 3)]
    return (inputs, grad_output, slope), guided_leaky_relu_reference(inputs, grad_output, slope)


#: the kinds of hidden case (``hidden_seed``), each with a kink (input 0) and a neuron that was off: any leaky slope,
#: slope 0 (a ReLU), PyTorch's default slope 0.01
LEAKY_KINDS = (_leaky_case, partial(_leaky_case, slope=0.0), partial(_leaky_case, slope=0.01))


def check_guided_leaky_relu_backward(student, hidden: list | None = None,
                                     hidden_seed: int | None = None) -> CheckResult:
    r"""``student(inputs, grad_output, slope) -> grad_input``: the guided rule at one ``LeakyReLU(slope)``, elementwise
    on tensors of any shape (:func:`guided_leaky_relu_reference`). ``hidden_seed`` (the grader's ``HIDDEN_SEED``)
    draws :data:`LEAKY_KINDS`."""
    name, cases = cases_for("guided_leaky_relu_backward", GUIDED_LEAKY_RELU, hidden, hidden_seed, LEAKY_KINDS)
    return run_check(
        name, lambda i, g, slope: _detached(student(i, g, slope)), cases,
        hint="insert the chapter's 'identity up, ReLU down' node after the activation, then apply LeakyReLU's own "
             "derivative as autograd does: not 0 but the slope where the input was not positive (x = 0 included); "
             "only the positive part of the signal passes")


def counterfactual_guided_gradcam_reference(guided: torch.Tensor, activations: torch.Tensor,
                                            gradients: torch.Tensor) -> torch.Tensor:
    r"""Exercise 2's image: the counterfactual map of the Grad-CAM paper (Selvaraju et al., ICCV 2017, subsection
    "Counterfactual Explanations": the regions whose removal would raise the class's score) times guided backprop of
    :math:`+y^c` (``guided``), the course's own extension (the paper shows the counterfactual map alone).
    Weights from the negated gradients, :math:`\alpha_k = -\frac1Z \sum_{ij} \partial y^c / \partial A^k_{ij}`;
    the map upsampled bilinearly (``align_corners=False``) to the image's size, min-max scaled per image (a flat map
    to 0) and multiplied into every channel of ``guided`` (N,C,H,W)."""
    alpha = -gradients.mean(dim=(2, 3))
    cam = F.relu(torch.einsum("nk,nkhw->nhw", alpha, activations))
    up = F.interpolate(cam[:, None], size=guided.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low, high = up.flatten(1).amin(dim=1)[:, None, None], up.flatten(1).amax(dim=1)[:, None, None]
    span = high - low
    scaled = torch.where(span > 0, (up - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    return guided * scaled[:, None]


#: worked example (the notebook prints it): N = 1, K = 2 channels of 1x2, a guided image 1x1x4
_COUNTERFACTUAL_GUIDED = torch.tensor([[[[4., 4., 4., -4.]]]])
COUNTERFACTUAL_GUIDED_GRADCAM = [
    ((_COUNTERFACTUAL_GUIDED, torch.tensor([[[[1., 0.]], [[0., 2.]]]]), torch.tensor([[[[2., 0.]], [[-1., -1.]]]])),
     torch.tensor([[[[0., 1., 3., -4.]]]]))]


def _counterfactual_case(generator: torch.Generator, flat: bool = False) -> tuple[tuple, torch.Tensor]:
    """Random signed activations and gradients (C in 1..3, K in 2..5, h, w in 2..4, H in h+1..9, W in w..9: always
    upsampled); one image, or (``flat``) two, the second with activations and gradients all >= 0, so that its
    counterfactual map is flat (all 0 after the ReLU)."""
    n, c, k = (2 if flat else 1), integer(generator, 1, 3), integer(generator, 2, 5)
    h, w = integer(generator, 2, 4), integer(generator, 2, 4)
    big_h, big_w = integer(generator, h + 1, 9), integer(generator, w, 9)
    activations = torch.randn(n, k, h, w, generator=generator)
    gradients = torch.randn(n, k, h, w, generator=generator)
    guided = torch.randn(n, c, big_h, big_w, generator=generator)
    if flat:
        activations[1], gradients[1] = activations[1].abs(), gradients[1].abs()
    return (guided, activations, gradients), counterfactual_guided_gradcam_reference(guided, activations, gradients)


#: the kinds of hidden case (``hidden_seed``): one image of other sizes; two images, the second with no
#: counterfactual evidence (a flat map)
COUNTERFACTUAL_KINDS = (_counterfactual_case, partial(_counterfactual_case, flat=True))


def check_counterfactual_guided_gradcam(student, hidden: list | None = None,
                                        hidden_seed: int | None = None) -> CheckResult:
    r"""``student(guided, activations, gradients) -> (N,C,H,W)``: counterfactual Guided Grad-CAM
    (:func:`counterfactual_guided_gradcam_reference`) from the guided backprop image (N,C,H,W) and a layer's
    activations and gradients (N,K,h,w). ``hidden_seed`` (the grader's ``HIDDEN_SEED``) draws
    :data:`COUNTERFACTUAL_KINDS`."""
    name, cases = cases_for("counterfactual_guided_gradcam", COUNTERFACTUAL_GUIDED_GRADCAM, hidden, hidden_seed,
                            COUNTERFACTUAL_KINDS)
    return run_check(
        name, lambda g, a, d: _detached(student(g, a, d)), cases,
        hint="the weights are the means of the NEGATED gradients; apply the ReLU where the formula applies it; "
             "upsample bilinearly (align_corners=False), then scale each upsampled image's map by its own minimum "
             "and maximum (a flat map becomes 0, never NaN) and multiply it into every channel")


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
