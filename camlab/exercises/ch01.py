"""Chapter 01 (CAM with global average pooling): the map, the channel contributions, the box."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, run_check


def _head_cases(seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """(activations (N,K,h,w) >= 0, fc_weight (C,K), fc_bias (C,), class index): C != K so that a transposed
    weight fails loudly, and h != w so that swapped axes fail too."""
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for n, k, c, h, w, index in ((1, 6, 4, 3, 5, 2), (3, 16, 10, 7, 7, 9), (2, 5, 8, 4, 6, 0)):
        activations = torch.randn(n, k, h, w, generator=generator).clamp_min(0)
        weight = torch.randn(c, k, generator=generator)
        bias = torch.randn(c, generator=generator)
        cases.append((activations, weight, bias, index))
    return cases


def check_cam(student) -> CheckResult:
    """``student(activations (N,K,h,w), fc_weight (C,K), class_index) -> (N,h,w)``: the class activation map
    :math:`M^c = \\sum_k w^c_k A^k` of the CAM paper (signed, no ReLU, no scaling)."""
    cases = [((a.clone(), w.clone(), c), torch.einsum("k,nkhw->nhw", w[c], a)) for a, w, _, c in _head_cases(1)]
    return run_check("cam", student, cases,
                     hint="take the class's row of the weight matrix, w = fc_weight[class_index] (shape (K,)), and "
                          "sum over the channels: torch.einsum('k,nkhw->nhw', w, activations); no mean, no ReLU")


def check_channel_contributions(student) -> CheckResult:
    """``student(activations (N,K,h,w), fc_weight (C,K), class_index) -> (N,K)``: how much each channel adds to the
    class score, :math:`w^c_k \\cdot \\frac{1}{Z}\\sum_{ij} A^k_{ij}`; summed over k plus the bias it is the logit."""
    cases = [((a.clone(), w.clone(), c), w[c][None, :] * a.mean(dim=(2, 3))) for a, w, _, c in _head_cases(2)]
    return run_check("channel_contributions", student, cases,
                     hint="global average pooling first: pooled = activations.mean(dim=(2, 3)) (N,K) - the mean, "
                          "not the sum - then multiply by the class's weights fc_weight[class_index]")


def _box_cases() -> list[tuple[tuple, object]]:
    generator = torch.Generator().manual_seed(3)
    cases = []
    for height, width, threshold, peak in ((12, 16, 0.15, 0.4), (20, 20, 0.5, 5.0), (9, 30, 0.3, 2.0)):
        ys = torch.arange(height, dtype=torch.float32)[:, None]
        xs = torch.arange(width, dtype=torch.float32)[None, :]
        cy = float(torch.randint(2, height - 2, (1,), generator=generator))
        cx = float(torch.randint(2, width - 2, (1,), generator=generator))
        heat = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 2.5 ** 2)) * peak + 0.001
        keep = heat >= threshold * heat.max()
        rows, cols = keep.any(dim=1).nonzero()[:, 0], keep.any(dim=0).nonzero()[:, 0]
        box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        cases.append(((heat, threshold), box))
    return cases


def _same_box(actual, expected) -> bool:
    try:
        return tuple(int(v) for v in actual) == tuple(expected)
    except (TypeError, ValueError):
        return False


def check_box_from_threshold(student) -> CheckResult:
    """``student(heatmap (H,W), threshold) -> (x0, y0, x1, y1)``: the box around every pixel whose value is at least
    ``threshold`` times the map's maximum, upper edges exclusive (``heatmap[y0:y1, x0:x1]`` is the box). The hidden
    maps have one blob, so this is the Grad-CAM paper's box without the connected-segment step."""
    return run_check("box_from_threshold", student, _box_cases(), compare=_same_box,
                     hint="keep = heatmap >= threshold * heatmap.max() (relative to the maximum, not an absolute "
                          "value); rows/columns with any kept pixel give y0..y1 and x0..x1; add 1 to the last "
                          "row and column (upper edges are exclusive)")
