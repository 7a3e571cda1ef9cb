"""Chapter 01 (CAM with global average pooling): the top-k maps of a batch, a per-student weight-versus-contribution
experiment, the box."""
from __future__ import annotations

from functools import partial

import torch

from camlab.exercises._checking import CheckResult, cases_for, close, integer, run_check, small_integers

def top_k_cams_reference(activations: torch.Tensor, fc_weight: torch.Tensor, fc_bias: torch.Tensor,
                         k: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Each image's ``k`` highest logits :math:`y = W\,\mathrm{GAP}(A) + b`, highest first (equal logits: the
    lower class index first), and their signed class activation maps :math:`M^c = \sum_j w^c_j A^j`."""
    logits = activations.mean(dim=(2, 3)) @ fc_weight.T + fc_bias
    classes = torch.sort(-logits, dim=1, stable=True).indices[:, :k]
    maps = torch.einsum("nck,nkhw->nchw", fc_weight[classes], activations)
    return classes, maps


def top_k_case(seed: int, n: int = 3, channels: int = 6, classes: int = 7, size: int = 4, k: int = 3):
    """A seeded case: non-negative activations (after a ReLU), a random head, ``k`` = 3."""
    g = torch.Generator().manual_seed(int(seed))
    activations = torch.rand(n, channels, size, size, generator=g, dtype=torch.float64) * 2
    weight = torch.randn(classes, channels, generator=g, dtype=torch.float64)
    bias = torch.randn(classes, generator=g, dtype=torch.float64)
    args = (activations, weight, bias, k)
    return args, top_k_cams_reference(*args)


#: edge case: classes 1 and 2 have equal logits (identical rows, equal biases): the lower index comes first
TIED = ((torch.ones(1, 2, 2, 2, dtype=torch.float64), torch.tensor([[0., 1.], [1., 1.], [1., 1.]],
        dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 2),
        (torch.tensor([[1, 2]]), torch.full((1, 2, 2, 2), 2.0, dtype=torch.float64)))


def _same_top_k(actual, expected) -> bool:
    try:
        classes, maps = actual
        same_classes = torch.equal(torch.as_tensor(classes).long().cpu(), expected[0])
    except (TypeError, ValueError, RuntimeError):
        return False
    return same_classes and close(maps, expected[1], atol=1e-6)


def check_top_k_cams(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(activations (N,K,h,w), fc_weight (C,K), fc_bias (C,), k) -> (classes (N,k), maps (N,k,h,w))``:
    every image's k highest-scoring classes of a GAP + linear head (highest first; equal logits: lower index
    first) and their signed CAMs. ``seed`` is the student's own (``STUDENT_SEED``); ``hidden`` lists further seeds
    (a tie case is added to them)."""
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [top_k_case(s) for s in seeds] + ([] if hidden is None else [TIED])
    name = "top_k_cams" if hidden is None else "top_k_cams (hidden cases)"
    return run_check(name, student, cases, compare=_same_top_k,
                     hint="the logits come from the activations: average each channel over its positions, then the "
                          "linear layer with its bias; rank them per image (equal logits: lower class index first), "
                          "then one map per chosen class, with that class's row of weights")


#: the experiment's protocol: scenes per seed
CONTRIBUTION_SCENES = 60


def weight_vs_contribution_reference(model, seed: int) -> torch.Tensor:
    """The experiment done right: on ``make_scenes(60, seed=seed)`` and ``lab_gap`` (``features`` -> GAP -> ``fc``),
    per scene 1.0 when the channel with the label's largest weight :math:`w^c_k` is also the channel with the
    largest contribution :math:`w^c_k F^k` (``argmax``: the first of equal values), else 0.0."""
    from camlab.lab import make_scenes
    from camlab.preprocessing import preprocess

    scenes = make_scenes(CONTRIBUTION_SCENES, seed=seed)
    store = {}
    handle = model.features.register_forward_hook(lambda module, inputs, output: store.update(a=output.detach()))
    try:
        with torch.no_grad():
            model(preprocess(scenes.images, model))
    finally:
        handle.remove()
    weights = model.fc.weight.detach()[scenes.labels]                     # (N, K)
    contributions = weights * store["a"].mean(dim=(2, 3))
    return (weights.argmax(dim=1) == contributions.argmax(dim=1)).double()


def _same_outcomes(actual, expected) -> bool:
    """The same 0/1 outcome scene by scene, up to one scene (a near-tie of two contributions may settle
    differently with other arithmetic); another seed's outcomes differ in many scenes."""
    reference = expected()
    try:
        values = torch.as_tensor(actual, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        return False
    return values.shape == reference.shape and int((values != reference).sum()) <= 1


def check_weight_vs_contribution(student, seed: int, hidden: list | None = None) -> CheckResult:
    """``student(model, seed) -> (60,)`` of 0/1: per scene of ``make_scenes(60, seed=seed)``, whether ``lab_gap``'s
    most heavily weighted channel for the label is also its largest contributor. Passes when at most one scene's
    outcome differs from the reference recomputed for the seed (``STUDENT_SEED``; ``hidden``: further seeds)."""
    from camlab.models import load_model

    model = load_model("lab_gap")
    seeds = [seed] if hidden is None else [int(s) for s in hidden]
    cases = [((model, s), partial(weight_vs_contribution_reference, model, s)) for s in seeds]
    name = "weight_vs_contribution" if hidden is None else "weight_vs_contribution (hidden seeds)"
    return run_check(name, student, cases, compare=_same_outcomes,
                     hint="draw the scenes with your seed, keep the output of `features` with a hook, average it "
                          "over the positions, multiply by the label's row of `fc.weight`, and compare the index of "
                          "the largest weight with the index of the largest contribution, scene by scene")


#: worked example: threshold 0.5 * 5 = 2.5 keeps 3, 5, 4, 3 (rows 1-3, columns 2-3): box (2, 1, 4, 4)
BOX_FROM_THRESHOLD = [((torch.tensor([[0., 0., 0., 0., 0., 0.], [0., 2., 3., 0., 0., 0.], [0., 1., 5., 4., 0., 0.],
    [0., 0., 2., 3., 1., 0.], [0., 0., 0., 0., 0., 0.]]), 0.5), (2, 1, 4, 4))]


def _same_box(actual, expected) -> bool:
    try:
        return tuple(int(v) for v in actual) == tuple(expected)
    except (TypeError, ValueError):
        return False


def box_from_threshold_reference(heatmap: torch.Tensor, threshold: float) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` around every pixel ``>= threshold * max`` (upper edges exclusive)."""
    rows, columns = torch.nonzero(heatmap >= threshold * heatmap.max(), as_tuple=True)
    return int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1


def _blob_map(generator: torch.Generator) -> torch.Tensor:
    """A map of 4-9 x 4-9 pixels, 0 outside a random rectangle holding values k/20 times a power of two, whose
    maximum is that power of two (so that ``heat >= t * heat.max()`` and ``heat / heat.max() >= t`` agree to the
    last bit, and an absolute threshold does not)."""
    height, width = integer(generator, 4, 9), integer(generator, 4, 9)
    heat = torch.zeros(height, width)
    y0, x0 = integer(generator, 0, height - 2), integer(generator, 0, width - 2)
    y1, x1 = integer(generator, y0 + 1, height), integer(generator, x0 + 1, width)
    heat[y0:y1, x0:x1] = small_integers(generator, (y1 - y0, x1 - x0), 1, 20) / 20
    heat[integer(generator, y0, y1 - 1), integer(generator, x0, x1 - 1)] = 1.0
    return heat * (0.25, 0.5, 2.0, 4.0, 8.0)[integer(generator, 0, 4)]


def _box_case(heat: torch.Tensor, threshold: float):
    return (heat, threshold), box_from_threshold_reference(heat, threshold)


def _thresholds(generator: torch.Generator) -> float:
    return (0.15, 0.2, 0.3, 0.5)[integer(generator, 0, 3)]


def _one_blob(generator):
    return _box_case(_blob_map(generator), _thresholds(generator))


def _at_the_threshold_on_the_border(generator):
    """A pixel exactly at the threshold (kept: ``>=``) on the last row or column (the upper edge is H or W)."""
    heat, threshold = _blob_map(generator), _thresholds(generator)
    if integer(generator, 0, 1):
        heat[-1, integer(generator, 0, heat.shape[1] - 1)] = threshold * heat.max()
    else:
        heat[integer(generator, 0, heat.shape[0] - 1), -1] = threshold * heat.max()
    return _box_case(heat, threshold)


def _constant(generator):
    """A constant map: every pixel is at the maximum, the box is the whole map."""
    shape = (integer(generator, 2, 6), integer(generator, 2, 6))
    return _box_case(torch.full(shape, integer(generator, 1, 20) / 20), _thresholds(generator))


def _tied_maxima(generator):
    """Two or three pixels share the maximum, apart; threshold 1.0 keeps just them: the box spans all of them."""
    heat = _blob_map(generator)
    top, heat = float(heat.max()), heat * 0.5
    for _ in range(integer(generator, 2, 3)):
        heat[integer(generator, 0, heat.shape[0] - 1), integer(generator, 0, heat.shape[1] - 1)] = top
    if int((heat == top).sum()) < 2:      # two draws fell on one pixel: add a maximum in the opposite corner
        heat[0, 0] = heat[-1, -1] = top
    return _box_case(heat, 1.0)


def _negative_evidence(generator):
    """A signed CAM map: negative values (below any positive threshold) around the blob; the threshold is a fraction
    of the maximum, not of the range."""
    heat = _blob_map(generator)
    heat[heat == 0] = -small_integers(generator, tuple(heat[heat == 0].shape), 1, 20) / 20
    return _box_case(heat, _thresholds(generator))


#: the kinds of hidden case (``hidden_seed``): the chapter's edge cases for the box
BOX_KINDS = (_one_blob, _at_the_threshold_on_the_border, _constant, _tied_maxima, _negative_evidence)


def check_box_from_threshold(student, hidden: list | None = None, hidden_seed: int | None = None) -> CheckResult:
    """``student(heatmap (H,W), threshold) -> (x0, y0, x1, y1)``: the box around every pixel whose value is at least
    ``threshold`` times the map's maximum, upper edges exclusive (``heatmap[y0:y1, x0:x1]`` is the box). The maps
    have one blob, so this is the Grad-CAM paper's box without the connected-segment step. ``hidden_seed`` draws
    :data:`BOX_KINDS` (a value exactly at the threshold, a constant map, tied maxima, negative values)."""
    name, cases = cases_for("box_from_threshold", BOX_FROM_THRESHOLD, hidden, hidden_seed, BOX_KINDS)
    return run_check(name, student, cases, compare=_same_box,
                     hint="the threshold is a fraction of the map's maximum, not an absolute value; x runs along "
                          "the columns and y along the rows; the upper edges are one past the last kept row/column")
