"""Chapter 01's checks pass the right answers and fail plausible wrong ones; the per-student checks pass a correct
answer for its own seed only."""
import pytest
import torch

import camlab
from camlab.exercises import ch01
from camlab.lab import make_scenes

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


def top_k_cams(activations, fc_weight, fc_bias, k):
    logits = activations.mean(dim=(2, 3)) @ fc_weight.T + fc_bias
    classes = torch.sort(-logits, dim=1, stable=True).indices[:, :k]
    return classes, torch.einsum("nck,nkhw->nchw", fc_weight[classes], activations)


def box(heatmap, threshold):
    keep = heatmap >= threshold * heatmap.max()
    rows, cols = keep.any(dim=1).nonzero()[:, 0], keep.any(dim=0).nonzero()[:, 0]
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_top_k_cams_pass_ranked_maps(check):
    assert check("ch01_top_k_cams", top_k_cams)


def top_k_without_bias(activations, fc_weight, fc_bias, k):
    return top_k_cams(activations, fc_weight, torch.zeros_like(fc_bias), k)


@pytest.mark.parametrize("wrong", [
    top_k_without_bias,                                                             # ranks without the bias
    lambda a, w, b, k: (lambda c, m: (c, m.clamp_min(0)))(*top_k_cams(a, w, b, k)),  # ReLU'd maps
    lambda a, w, b, k: (lambda c, m: (c.flip(1), m.flip(1)))(*top_k_cams(a, w, b, k)),  # lowest first
])
def test_top_k_cams_fail_wrong_answers(wrong, check):
    assert not check("ch01_top_k_cams", wrong)


def test_top_k_cams_break_ties_by_the_lower_index():
    classes, _ = ch01.TIED[1]
    assert classes.tolist() == [[1, 2]]
    assert ch01.check_top_k_cams(top_k_cams, seed=0, hidden=[0])


def test_top_k_cams_pass_only_for_their_own_seed(monkeypatch):
    """An answer typed in for seed 0 (copied from a classmate) passes seed 0 and fails seed 1."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)  # a failing check returns False
    expected = ch01.top_k_case(0)[1]
    assert ch01.check_top_k_cams(lambda a, w, b, k: expected, seed=0)
    assert not ch01.check_top_k_cams(lambda a, w, b, k: expected, seed=1)


def weight_vs_contribution(model, seed):
    scenes = make_scenes(60, seed=seed)
    store = {}
    handle = model.features.register_forward_hook(lambda module, inputs, output: store.update(a=output.detach()))
    try:
        with torch.no_grad():
            model(camlab.preprocess(scenes.images, model))
    finally:
        handle.remove()
    weights = model.fc.weight.detach()[scenes.labels]
    contributions = weights * store["a"].mean(dim=(2, 3))
    return (weights.argmax(dim=1) == contributions.argmax(dim=1)).double()


def test_weight_vs_contribution_passes_the_experiment(check):
    assert check("ch01_weight_vs_contribution", weight_vs_contribution)


def largest_activation(model, seed):
    """Compares the largest weight with the most active channel, not with the largest contribution."""
    scenes = make_scenes(60, seed=seed)
    store = {}
    handle = model.features.register_forward_hook(lambda module, inputs, output: store.update(a=output.detach()))
    with torch.no_grad():
        model(camlab.preprocess(scenes.images, model))
    handle.remove()
    weights = model.fc.weight.detach()[scenes.labels]
    return (weights.argmax(dim=1) == store["a"].mean(dim=(2, 3)).argmax(dim=1)).double()


@pytest.mark.parametrize("wrong", [
    largest_activation,
    lambda model, seed: 1 - weight_vs_contribution(model, seed),            # the complement
    lambda model, seed: weight_vs_contribution(model, seed + 1),            # another seed's scenes
])
def test_weight_vs_contribution_fails_wrong_answers(wrong, check):
    assert not check("ch01_weight_vs_contribution", wrong)


def test_box_from_threshold_passes_the_relative_threshold_box(check):
    assert check("ch01_box_from_threshold", box)


@pytest.mark.parametrize("wrong", [
    lambda h, t: tuple(v - (1 if i >= 2 else 0) for i, v in enumerate(box(h, t))),  # inclusive upper edges
    lambda h, t: box((h >= t).float(), 1.0),  # an absolute threshold, not a fraction of the maximum
    lambda h, t: (box(h, t)[1], box(h, t)[0], box(h, t)[3], box(h, t)[2]),  # rows and columns swapped
])
def test_box_from_threshold_fails_wrong_answers(wrong, check):
    assert not check("ch01_box_from_threshold", wrong)


def strictly_above(heatmap, threshold):
    keep = heatmap > threshold * heatmap.max()
    rows, cols = keep.any(dim=1).nonzero()[:, 0], keep.any(dim=0).nonzero()[:, 0]
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def only_the_first_maximum(heatmap, threshold):
    """Keeps the pixels at or above the threshold connected to nothing: just the first argmax when threshold = 1."""
    if threshold >= 1:
        y, x = divmod(int(heatmap.argmax()), heatmap.shape[1])
        return x, y, x + 1, y + 1
    return box(heatmap, threshold)


def range_fraction(heatmap, threshold):
    """A fraction of the range (min-max scaled map), not of the maximum: right while no value is negative."""
    return box((heatmap - heatmap.min()) / (heatmap.max() - heatmap.min()), threshold)


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("wrong", [strictly_above, only_the_first_maximum, range_fraction])
def test_box_from_threshold_hidden_cases_catch_the_chapters_edge_cases(wrong, hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold the edge cases the chapter warns
    about: a value exactly at the threshold, tied maxima, negative values; an answer wrong only there fails."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch01_box_from_threshold", box, hidden_seed=hidden_seed)
    assert not run_check_cell("ch01_box_from_threshold", wrong, hidden_seed=hidden_seed)
    assert wrong(*ch01.BOX_FROM_THRESHOLD[0][0]) == ch01.BOX_FROM_THRESHOLD[0][1]     # the worked example passes


def test_box_from_threshold_hidden_cases_change_with_the_hidden_seed():
    assert drawn_cases_differ_by_seed(ch01.BOX_KINDS)


def test_a_failing_hidden_case_shows_neither_its_values_nor_the_shape_of_the_result(monkeypatch):
    """A result's shape is the student's to choose, so it could carry a hidden case's inputs into the feedback:
    the visible worked examples report it, the hidden cases only their number and the hint."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    leak = lambda heatmap, threshold: torch.zeros(heatmap.shape)                      # noqa: E731
    assert "your result has shape" in ch01.check_box_from_threshold(leak).message
    hidden = ch01.check_box_from_threshold(leak, hidden_seed=5)
    assert not hidden and hidden.message.startswith("case 1 of 10 gives a wrong answer. Hint:")
