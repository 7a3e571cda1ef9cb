"""Checks for chapter 06, beyond classification: targets written as callables on a model's output."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, close, run_check


def check_region_target(student) -> CheckResult:
    """``student(class_index, box) -> callable``: the callable maps a dense output (N, classes, h, w) to (N,)
    scores, the sum of class ``class_index``'s map inside ``box = (x0, y0, x1, y1)`` (cells, upper edges
    excluded)."""
    generator = torch.Generator().manual_seed(6)
    cases = []
    for class_index, box in [(1, (2, 3, 6, 5)), (4, (0, 0, 16, 16)), (0, (10, 1, 11, 9))]:
        output = torch.randn(3, 5, 16, 16, generator=generator)
        x0, y0, x1, y1 = box
        cases.append(((class_index, box, output), output[:, class_index, y0:y1, x0:x1].sum(dim=(1, 2))))
    return run_check("region_target", lambda c, box, output: _detached(student(c, box)(output.clone())), cases,
                     hint="return a function of the output that slices output[:, class_index, y0:y1, x0:x1] and "
                          "sums over the two spatial dimensions, keeping one score per image")


def check_difference_target(student) -> CheckResult:
    """``student(a, b) -> callable``: logits (N, classes) -> (N,) the logit of class a minus the logit of class b."""
    generator = torch.Generator().manual_seed(8)
    cases = []
    for a, b in [(0, 1), (3, 2), (4, 0)]:
        logits = torch.randn(4, 5, generator=generator) * 3
        cases.append(((a, b, logits), logits[:, a] - logits[:, b]))
    return run_check("difference_target", lambda a, b, logits: _detached(student(a, b)(logits.clone())), cases,
                     hint="use the raw logits (no softmax): logits[:, a] - logits[:, b], one number per image")


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value
