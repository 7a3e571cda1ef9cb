"""Checks for chapter 06, beyond classification: targets written as callables on a model's output."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, cases_for, run_check


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


#: worked example: class 1's map, columns 1-2 of rows 0-1: 1 + 2 + (-3) + 3 = 3 for the first image
REGION_TARGET = [((1, (1, 0, 3, 2), torch.tensor([[[[0., 0., 0., -2.], [-2., -3., 3., 2.], [0., 3., -2., 1.]],
    [[-2., 1., 2., 2.], [1., -3., 3., 3.], [-3., -1., 3., 2.]], [[-3., 3., 1., -1.], [1., 1., 1., -2.], [-3., 2.,
    -1., 1.]]], [[[0., 0., -3., -3.], [-1., -1., -3., -2.], [-3., 0., 1., 2.]], [[2., 0., -1., 2.], [3., -1., 0.,
    -3.], [2., 0., 3., -3.]], [[1., 2., 1., -3.], [-2., 0., 3., 2.], [-3., -2., 1., 1.]]]])), torch.tensor([3.,
    -2.]))]


def check_region_target(student, hidden: list | None = None) -> CheckResult:
    """``student(class_index, box) -> callable``: the callable maps a dense output (N, classes, h, w) to (N,)
    scores, the sum of class ``class_index``'s map inside ``box = (x0, y0, x1, y1)`` (cells, upper edges
    excluded)."""
    name, cases = cases_for("region_target", REGION_TARGET, hidden)
    return run_check(name, lambda c, box, output: _detached(student(c, box)(output.clone())), cases,
                     hint="return a function of the output that adds up class class_index's map inside the box "
                          "(rows are y, columns are x), keeping one score per image")


#: worked example: logits of class 0 minus logits of class 1, one number per image
DIFFERENCE_TARGET = [((0, 1, torch.tensor([[1., 1., -3., 2.], [0., 3., 0., 1.], [2., 1., 1., 1.]])),
    torch.tensor([0., -3., 1.]))]


def check_difference_target(student, hidden: list | None = None) -> CheckResult:
    """``student(a, b) -> callable``: logits (N, classes) -> (N,) the logit of class a minus the logit of class b."""
    name, cases = cases_for("difference_target", DIFFERENCE_TARGET, hidden)
    return run_check(name, lambda a, b, logits: _detached(student(a, b)(logits.clone())), cases,
                     hint="use the raw logits (no softmax), class a's minus class b's, one number per image")
