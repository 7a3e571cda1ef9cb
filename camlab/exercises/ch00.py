"""Chapter 00 (tour and setup): reading predictions and picking a layer."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, cases_for, run_check

#: worked example: softmax([1, 3, 0, 2]) = e^[1, 3, 0, 2] / 31.19 = [0.087, 0.644, 0.032, 0.237]: top 2 = classes 1, 3
TOP_CLASSES = [((torch.tensor([[1., 3., 0., 2.]]), 2), (torch.tensor([[1, 3]]), torch.tensor([[0.64391,
    0.23688]])))]


def _same_topk(actual, expected) -> bool:
    try:
        indices, probabilities = actual
        indices = torch.as_tensor(indices)
        probabilities = torch.as_tensor(probabilities, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    expected_indices, expected_probabilities = expected
    return (indices.shape == expected_indices.shape and bool((indices.long() == expected_indices).all())
            and probabilities.shape == expected_probabilities.shape
            and bool(torch.allclose(probabilities, expected_probabilities.double(), atol=1e-4)))


def check_top_classes(student, hidden: list | None = None) -> CheckResult:
    """``student(logits (N,C), k) -> (indices (N,k), probabilities (N,k))``: the k most probable classes per image,
    most probable first, with their softmax probabilities :math:`p_c = e^{y_c} / \\sum_j e^{y_j}` (what
    :func:`camlab.predict` prints)."""
    name, cases = cases_for("top_classes", TOP_CLASSES, hidden)
    return run_check(name, student, cases, compare=_same_topk,
                     hint="turn each image's logits into probabilities with a softmax over the classes (each row "
                          "sums to 1, not each column), then take the k largest, largest first, with their indices")


#: worked example: a small CNN's layer table; 'pool' is 1x1 (not spatial) and 'flatten'/'fc' are not maps
LAST_SPATIAL_LAYER = [(([("conv1", (1, 8, 32, 32)), ("relu1", (1, 8, 32, 32)), ("conv2", (1, 16, 16, 16)),
                         ("relu2", (1, 16, 16, 16)), ("pool", (1, 16, 1, 1)), ("flatten", (1, 16)), ("fc", (1, 10))],),
                       "relu2")]


def check_last_spatial_layer(student, hidden: list | None = None) -> CheckResult:
    """``student(rows) -> name``: ``rows`` is a list of ``(name, output shape)`` in execution order (what
    ``camlab.layers(model)`` lists); return the name of the LAST layer whose output is a 4-D (N,C,H,W) feature map
    with more than one position (H*W > 1): the default layer of every CAM method."""
    name, cases = cases_for("last_spatial_layer", LAST_SPATIAL_LAYER, hidden)
    return run_check(name, student, cases, compare=lambda a, e: a == e,
                     hint="look for the last row whose output is a feature map: 4 numbers (N,C,H,W) with more than "
                          "one position; a 1x1 map after global pooling is not spatial, and (N,C) outputs are not maps")
