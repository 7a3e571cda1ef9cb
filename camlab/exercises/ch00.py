"""Chapter 00 (tour and setup): reading predictions and picking a layer."""
from __future__ import annotations

import torch

from camlab.exercises._checking import CheckResult, run_check


def _logits_cases() -> list[tuple[tuple, object]]:
    generator = torch.Generator().manual_seed(0)
    cases = []
    for n, classes, k in ((1, 10, 3), (4, 1000, 5), (3, 7, 1)):
        logits = torch.randn(n, classes, generator=generator) * 3
        probabilities = logits.softmax(dim=1)
        top = probabilities.topk(k, dim=1)
        cases.append(((logits.clone(), k), (top.indices, top.values)))
    return cases


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
            and bool(torch.allclose(probabilities, expected_probabilities.double(), atol=1e-5)))


def check_top_classes(student) -> CheckResult:
    """``student(logits (N,C), k) -> (indices (N,k), probabilities (N,k))``: the k most probable classes per image,
    most probable first, with their softmax probabilities (what :func:`camlab.predict` prints)."""
    return run_check("top_classes", student, _logits_cases(), compare=_same_topk,
                     hint="probabilities = logits.softmax(dim=1) (over the classes, not the batch); then "
                          "probabilities.topk(k, dim=1) gives values and indices, largest first")


def _layer_cases() -> list[tuple[tuple, object]]:
    table = [
        ("conv1", (1, 8, 32, 32)), ("relu1", (1, 8, 32, 32)), ("conv2", (1, 16, 16, 16)),
        ("relu2", (1, 16, 16, 16)), ("pool", (1, 16, 1, 1)), ("flatten", (1, 16)), ("fc", (1, 10)),
    ]
    lab = [("features.0", (4, 16, 64, 64)), ("features.12", (4, 64, 16, 16)), ("features.13", (4, 64, 16, 16)),
           ("features", (4, 64, 16, 16)), ("pool", (4, 64, 1, 1)), ("fc", (4, 5))]
    resnet = [("layer3", (2, 1024, 14, 14)), ("layer4", (2, 2048, 7, 7)), ("avgpool", (2, 2048, 1, 1)),
              ("fc", (2, 1000))]
    return [((table,), "relu2"), ((lab,), "features"), ((resnet,), "layer4")]


def check_last_spatial_layer(student) -> CheckResult:
    """``student(rows) -> name``: ``rows`` is a list of ``(name, output shape)`` in execution order (what
    ``camlab.layers(model)`` lists); return the name of the LAST layer whose output is a 4-D (N,C,H,W) feature map
    with more than one position (H*W > 1): the default layer of every CAM method."""
    return run_check("last_spatial_layer", student, _layer_cases(), compare=lambda a, e: a == e,
                     hint="walk the rows backwards; keep a row whose shape has 4 numbers and shape[2] * shape[3] > 1 "
                          "(a 1x1 map after global pooling is not spatial; (N,C) outputs are not maps)")
