"""Checks for chapter 03, Guided Grad-CAM: the guided backpropagation rule at one ReLU, Guided Grad-CAM as a
product, and the rank correlation that measures how class-discriminative a pair of maps is."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from camlab.exercises._checking import CheckResult, close, run_check
from camlab.maps import scale, upsample


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def check_guided_relu_backward(student) -> CheckResult:
    r"""``student(inputs, grad_output) -> grad_input``: the guided backpropagation rule at one ReLU,
    :math:`R_l = [x_l > 0] \cdot [R_{l+1} > 0] \cdot R_{l+1}`, elementwise on tensors of any shape."""
    generator = torch.Generator().manual_seed(3)
    cases = []
    for shape in [(6,), (2, 3, 4, 4), (1, 8, 5, 5)]:
        inputs = torch.randn(shape, generator=generator)
        grad_output = torch.randn(shape, generator=generator)
        flat_in, flat_out = inputs.view(-1), grad_output.view(-1)
        flat_in[:2] = 0.0       # an input exactly at the kink: the ReLU's gradient there is 0
        flat_out[2:4] = 0.0     # a zero signal stays zero
        cases.append(((inputs.clone(), grad_output.clone()), inputs.gt(0) * grad_output.gt(0) * grad_output))
    return run_check(
        "guided_relu_backward", lambda i, g: _detached(student(i, g)), cases,
        hint="keep grad_output where BOTH the forward input was positive (the ReLU's own gradient) AND the signal "
             "itself is positive; zero everywhere else (deconvnet forgets the first mask, plain backprop the second)")


def _reference_guided_gradcam(guided: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    return guided * scale(upsample(cam, tuple(guided.shape[-2:])))[:, None]


def check_guided_gradcam(student) -> CheckResult:
    r"""``student(guided, cam) -> (N,3,H,W)``: Guided Grad-CAM from the guided backprop image ``guided`` (N,3,H,W)
    and the raw Grad-CAM map ``cam`` (N,h,w) at the layer's resolution (after the ReLU, unscaled): upsample ``cam``
    bilinearly (``align_corners=False``) to (H,W), min-max scale each image's map to [0, 1] (as
    ``camlab.GradCAM`` returns it), and multiply it into every colour channel of ``guided``."""
    generator = torch.Generator().manual_seed(4)
    cases = []
    for n, (h, w), (big_h, big_w) in [(1, (7, 7), (56, 56)), (2, (4, 6), (32, 48)), (1, (5, 5), (40, 40))]:
        guided = torch.randn(n, 3, big_h, big_w, generator=generator)
        cam = torch.rand(n, h, w, generator=generator).sub(0.3).clamp_min(0) * 5  # ReLU'd, unscaled
        cases.append(((guided.clone(), cam.clone()), _reference_guided_gradcam(guided, cam)))
    return run_check(
        "guided_gradcam", lambda g, c: _detached(student(g, c)), cases,
        hint="F.interpolate(cam[:, None], size=guided.shape[-2:], mode='bilinear', align_corners=False), then per "
             "image (m - m.min()) / (m.max() - m.min()), then guided * m (broadcast over the 3 colour channels); "
             "nearest-neighbour upsampling (Captum's choice) or skipping the scaling gives a different image",
        compare=lambda a, e: close(a, e, atol=1e-5))


def check_map_rank_correlation(student) -> CheckResult:
    """``student(map_a, map_b) -> float``: the Spearman rank correlation of two maps of the same shape (flattened),
    with tied values given their average rank; the number this chapter uses to say two maps are 'the same'."""
    generator = torch.Generator().manual_seed(5)
    cases = []
    for shape in [(8, 8), (1, 12, 10), (16, 16)]:
        a = torch.rand(shape, generator=generator)
        b = (a ** 3 + 0.2 * torch.rand(shape, generator=generator)).exp()  # monotone but far from linear
        c = (a * 4).floor()  # many ties
        for x, y in [(a, b), (a, c)]:
            cases.append(((x.clone(), y.clone()), float(spearmanr(np.ravel(x.numpy()), np.ravel(y.numpy()))[0])))
    return run_check(
        "map_rank_correlation", lambda x, y: float(student(x, y)), cases,
        hint="rank each flattened map (scipy.stats.rankdata gives tied values their average rank), then take the "
             "Pearson correlation of the two rank vectors; the Pearson correlation of the raw values is not it",
        compare=lambda a, e: close(a, e, atol=1e-6))
