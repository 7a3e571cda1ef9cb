"""Chapter 00 (tour and setup): ranking a batch's classes with ties and names, picking a layer, and a first
measurement on a photo (one blob or two?)."""
from __future__ import annotations

from functools import partial

import torch

from camlab.exercises._checking import CheckResult, cases_for, integer, run_check

#: the class names of the seeded top-k cases
NAMES = ("apple", "bus", "cat", "dog", "egg", "fox", "goat", "hat")


def top_classes_reference(logits: torch.Tensor, k: int, labels) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Each image's ``k`` most probable classes, most probable first, equal probabilities in the order of their class
    index (lower first), with their softmax probabilities :math:`p_c = e^{y_c} / \\sum_j e^{y_j}` and names."""
    probabilities = logits.double().softmax(dim=1)
    order = torch.sort(-probabilities, dim=1, stable=True).indices[:, :k]
    return order, probabilities.gather(1, order), [[labels[int(i)] for i in row] for row in order]


def top_classes_case(seed: int, n: int = 3, k: int = 3):
    """A seeded case: integer logits in [-2, 2] for 8 classes (so equal logits are common), k = 3, names shuffled."""
    g = torch.Generator().manual_seed(int(seed))
    logits = torch.randint(-2, 3, (n, len(NAMES)), generator=g).double()
    labels = [NAMES[int(i)] for i in torch.randperm(len(NAMES), generator=g)]
    args = (logits, k, labels)
    return args, top_classes_reference(*args)


#: edge case: all four logits equal: every probability 0.25, classes in index order
TIED = ((torch.zeros(1, 4, dtype=torch.float64), 2, ["w", "x", "y", "z"]),
        (torch.tensor([[0, 1]]), torch.tensor([[0.25, 0.25]], dtype=torch.float64), [["w", "x"]]))


def _same_topk(actual, expected) -> bool:
    try:
        indices, probabilities, names = actual
        indices = torch.as_tensor(indices).long().cpu()
        probabilities = torch.as_tensor(probabilities, dtype=torch.float64).cpu()
        names = [list(row) for row in names]
    except (TypeError, ValueError, RuntimeError):
        return False
    expected_indices, expected_probabilities, expected_names = expected
    return (indices.shape == expected_indices.shape and torch.equal(indices, expected_indices)
            and probabilities.shape == expected_probabilities.shape
            and bool(torch.allclose(probabilities, expected_probabilities, atol=1e-4)) and names == expected_names)


def check_top_classes(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(logits (N,C), k, labels) -> (indices (N,k), probabilities (N,k), names)``: every image's k most
    probable classes, most probable first, equal probabilities in class-index order (lower first; ``topk`` does not
    promise that order), with their softmax probabilities and their names (``names[i][j] = labels[indices[i, j]]``).
    ``seed`` is the student's own (``STUDENT_SEED``); ``hidden`` lists further seeds (a case of equal logits is
    added to them)."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [top_classes_case(s) for s in seeds] + ([] if hidden is None else [TIED])
    name = "top_classes" if hidden is None else "top_classes (hidden cases)"
    return run_check(name, student, cases, compare=_same_topk,
                     hint="a softmax over each image's classes (each row sums to 1), then order every row from the "
                          "most to the least probable with a STABLE sort, so that equal values keep the order of "
                          "their class index; keep the first k, their probabilities and their names from labels")


#: worked example: a small CNN's layer table; 'pool' is 1x1 (not spatial) and 'flatten'/'fc' are not maps
LAST_SPATIAL_LAYER = [(([("conv1", (1, 8, 32, 32)), ("relu1", (1, 8, 32, 32)), ("conv2", (1, 16, 16, 16)),
                         ("relu2", (1, 16, 16, 16)), ("pool", (1, 16, 1, 1)), ("flatten", (1, 16)), ("fc", (1, 10))],),
                       "relu2")]


def last_spatial_layer_reference(rows) -> str | None:
    """The name of the last row whose shape is 4-D with more than one position (H*W > 1); None when there is none."""
    spatial = [name for name, shape in rows if len(shape) == 4 and shape[2] * shape[3] > 1]
    return spatial[-1] if spatial else None


def _layer_table(generator: torch.Generator, *, container: bool = False, line: bool = False, gate: bool = False,
                 dense_end: bool = False):
    """A random CNN's ``(name, shape)`` rows: a few stages that halve the map, then (unless ``dense_end``) a global
    pool to 1x1, a flatten and a classifier. ``container``: a module row (``features``) after its last child, with
    the same shape; ``line``: the last map is one row or one column (1 x W: still spatial); ``gate``: a squeeze
    gate's 1x1 rows in the middle, before more spatial rows."""
    batch, size, channels = integer(generator, 1, 8), 2 ** integer(generator, 4, 6), 2 ** integer(generator, 2, 4)
    rows, stages = [], integer(generator, 2, 4)
    for stage in range(stages):
        size, channels = max(size // 2, 2), channels * 2
        for part in ("conv", "bn", "relu")[:integer(generator, 1, 3)]:
            rows.append((f"features.{len(rows)}", (batch, channels, size, size)))
        if gate and stage == 0:
            rows += [("se.pool", (batch, channels, 1, 1)), ("se.fc", (batch, channels, 1, 1)),
                     (f"features.{len(rows) + 2}", (batch, channels, size, size))]
    if line:
        rows.append((f"features.{len(rows)}", (batch, channels, 1, size) if integer(generator, 0, 1) else
                     (batch, channels, size, 1)))
    if container:
        rows.append(("features", rows[-1][1]))
    if not dense_end:
        rows += [("pool", (batch, channels, 1, 1)), ("flatten", (batch, channels)),
                 ("fc", (batch, integer(generator, 2, 1000)))]
    return (rows,), last_spatial_layer_reference(rows)


#: the kinds of hidden case (``hidden_seed``): the chapter's traps for the default layer
LAYER_KINDS = (_layer_table, partial(_layer_table, container=True), partial(_layer_table, line=True),
               partial(_layer_table, gate=True), partial(_layer_table, dense_end=True))


def check_last_spatial_layer(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(rows) -> name``: ``rows`` is a list of ``(name, output shape)`` in execution order (what
    ``camlab.layers(model)`` lists, without the kind and the layout) of a CNN whose feature maps are (N,C,H,W);
    return the name of the LAST layer whose output is a 4-D feature map with more than one position (H*W > 1): the
    default layer of every CAM method on such a model. ``hidden_seed`` draws :data:`LAYER_KINDS` (a pooled 1x1 map,
    a container after its last child, a one-row map, a squeeze gate's 1x1 rows, no classifier at the end)."""
    name, cases = cases_for("last_spatial_layer", LAST_SPATIAL_LAYER, hidden, hidden_seed, LAYER_KINDS)
    return run_check(name, student, cases, compare=lambda a, e: a == e,
                     hint="look for the last row whose output is a feature map: 4 numbers (N,C,H,W) with more than "
                          "one position; a 1x1 map after global pooling is not spatial, and (N,C) outputs are not maps")


#: the measurement's protocol: the box threshold (Grad-CAM's 15% of the maximum)
BOX_THRESHOLD = 0.15


def two_halves_reference(model, image_name: str) -> tuple[int, float, float, tuple]:
    """The measurement done right: on the bundled image ``image_name`` (two photos side by side, resized whole to
    224x224), the top-1 class and its softmax probability, the share of its Grad-CAM map (default layer, scaled to
    [0, 1]) on the left half (columns 0-111), and the box around the map's pixels at or above 15% of its maximum
    (:func:`camlab.metrics.box_from_map`)."""
    from camlab.images import load_image
    from camlab.methods import GradCAM
    from camlab.metrics import box_from_map
    from camlab.preprocessing import preprocess

    x = preprocess(load_image(image_name), model)
    with torch.no_grad():
        probabilities = model(x).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    heatmap = GradCAM(model)(x, target=top)[0]
    share = float(heatmap[:, :112].sum() / heatmap.sum())
    return top, float(probabilities[top]), share, tuple(int(v) for v in box_from_map(heatmap, BOX_THRESHOLD))


def _same_measurement(actual, expected) -> bool:
    """Same class, probability and share within 0.001, box within one pixel (an edge pixel may settle differently
    with other arithmetic)."""
    reference = expected()
    try:
        top, probability, share, box = actual
        box = [int(v) for v in box]
        same = int(top) == reference[0] and len(box) == 4
    except (TypeError, ValueError, RuntimeError):
        return False
    return (same and abs(float(probability) - reference[1]) < 1e-3 and abs(float(share) - reference[2]) < 1e-3
            and all(abs(a - b) <= 1 for a, b in zip(box, reference[3])))


def check_two_halves(student, hidden: list | None = None) -> CheckResult:
    """``student(model, image_name) -> (top1, probability, left_share, box)`` on ``efficientnet_lite0``: the
    measurement of exercise 3 on ``two_cats`` (``hidden``: further bundled two-photo images)."""
    from camlab.models import load_model

    model = load_model("efficientnet_lite0")
    images = ["two_cats"] if hidden is None else list(hidden)
    cases = [((model, name), partial(two_halves_reference, model, name)) for name in images]
    name = "two_halves" if hidden is None else "two_halves (hidden images)"
    return run_check(name, student, cases, compare=_same_measurement,
                     hint="preprocess the whole image, take the softmax's top class and its probability, make "
                          "Grad-CAM's map for that class, divide the map's sum over columns 0-111 by its total, and "
                          "draw the box with camlab.metrics.box_from_map(heatmap, 0.15)")
