"""Chapter 00's checks pass the right answers and fail plausible wrong ones; the per-student check passes a correct
answer for its own seed only."""
import pytest
import torch

import camlab
from camlab.exercises import ch00

from tests.exercise_checks import HIDDEN_SEEDS, check, drawn_cases_differ_by_seed  # noqa: F401 (check: the fixture)


def top_classes(logits, k, labels):
    probabilities = logits.softmax(dim=1)
    order = torch.sort(-probabilities, dim=1, stable=True).indices[:, :k]
    return order, probabilities.gather(1, order), [[labels[int(i)] for i in row] for row in order]


def last_spatial_layer(rows):
    for name, shape in reversed(rows):
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            return name
    return None


def test_top_classes_passes_a_stable_ranking_with_names(check):
    assert check("ch00_top_classes", top_classes)


def ties_in_reverse_index_order(logits, k, labels):
    probabilities = logits.softmax(dim=1)
    order = probabilities.size(1) - 1 - torch.sort(-probabilities.flip(1), dim=1, stable=True).indices[:, :k]
    return order, probabilities.gather(1, order), [[labels[int(i)] for i in row] for row in order]


@pytest.mark.parametrize("wrong", [
    lambda logits, k, labels: (lambda i, p, n: (i, logits.gather(1, i), n))(*top_classes(logits, k, labels)),
    lambda logits, k, labels: (lambda i, p, n: (i, p, [[str(int(j)) for j in row] for row in i]))(
        *top_classes(logits, k, labels)),                                             # indices, not names
    lambda logits, k, labels: top_classes(logits.T, k, labels),                        # softmax over the batch
    ties_in_reverse_index_order,                                                       # equal values: higher first
])
def test_top_classes_fails_wrong_answers(wrong, check):
    assert not check("ch00_top_classes", wrong)


def test_the_seeded_cases_hold_ties_so_the_tie_rule_matters():
    """Every seed used in the tests draws a case with equal probabilities inside an image's top k."""
    for seed in range(3):
        (logits, k, _), (indices, _, _) = ch00.top_classes_case(seed)
        kept = logits.gather(1, indices)
        assert (kept[:, 1:] == kept[:, :-1]).any()


def test_top_classes_pass_only_for_their_own_seed(monkeypatch):
    """An answer typed in for seed 0 (copied from a classmate) passes seed 0 and fails seed 1."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)  # a failing check returns False
    expected = ch00.top_classes_case(0)[1]
    assert ch00.check_top_classes(lambda logits, k, labels: expected, seed=0)
    assert not ch00.check_top_classes(lambda logits, k, labels: expected, seed=1)


def test_last_spatial_layer_passes_the_shape_rule(check):
    assert check("ch00_last_spatial_layer", last_spatial_layer)


@pytest.mark.parametrize("wrong", [
    lambda rows: rows[-1][0],  # the last layer whatever its shape
    lambda rows: next(name for name, shape in reversed(rows) if len(shape) == 4),  # accepts the 1x1 pooled map
    lambda rows: next(name for name, shape in rows if len(shape) == 4 and shape[2] * shape[3] > 1),  # the first
])
def test_last_spatial_layer_fails_wrong_answers(wrong, check):
    assert not check("ch00_last_spatial_layer", wrong)


@pytest.mark.parametrize("hidden_seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("wrong", [
    lambda rows: next(name for name, shape in reversed(rows) if len(shape) == 4 and min(shape[2:]) > 1),  # 1 x W
    lambda rows: next(name for name, shape in reversed(rows) if len(shape) == 4 and shape[2] * shape[3] > 1
                      and not any(other.startswith(f"{name}.") for other, _ in rows)),   # skips a container's row
    lambda rows: next(name for name, shape in reversed(rows[:-1]) if len(shape) == 4 and shape[2] * shape[3] > 1),
    lambda rows: next(rows[i - 1][0] for i, (_, shape) in enumerate(rows) if len(shape) == 4 and shape[2] * shape[3]
                      == 1),                                                     # the row before the first 1x1
])
def test_last_spatial_layer_hidden_cases_catch_the_chapters_traps(wrong, hidden_seed):
    """The hidden cases are drawn from the grader's HIDDEN_SEED and always hold the chapter's traps: a one-row map, a
    container after its last child, no classifier at the end, a squeeze gate's 1x1 rows; an answer right on the
    worked example but wrong on one of them fails."""
    from camlab.course.student import run_check_cell
    assert wrong(*ch00.LAST_SPATIAL_LAYER[0][0]) == ch00.LAST_SPATIAL_LAYER[0][1]
    assert run_check_cell("ch00_last_spatial_layer", last_spatial_layer, hidden_seed=hidden_seed)
    assert not run_check_cell("ch00_last_spatial_layer", wrong, hidden_seed=hidden_seed)


def test_last_spatial_layer_hidden_cases_change_with_the_hidden_seed():
    assert drawn_cases_differ_by_seed(ch00.LAYER_KINDS)


def two_halves(model, image_name, target=None, threshold=0.15):
    x = camlab.preprocess(camlab.load_image(image_name), model)
    with torch.no_grad():
        probabilities = model(x).softmax(dim=1)[0]
    top1 = int(probabilities.argmax())
    heatmap = camlab.GradCAM(model)(x, target=top1 if target is None else target)[0]
    left_share = (heatmap[:, :112].sum() / heatmap.sum()).item()
    return top1, probabilities[top1].item(), left_share, camlab.metrics.box_from_map(heatmap, threshold)


def test_two_halves_passes_the_measurement(check):
    assert check("ch00_two_halves", two_halves)


@pytest.mark.parametrize("wrong", [
    lambda model, name: (lambda t, p, s, b: (t, p, 1 - s, b))(*two_halves(model, name)),      # the right half
    lambda model, name: two_halves(model, name, threshold=0.5),                               # another threshold
    lambda model, name: (lambda t, p, s, b: (t, 1.0, s, b))(*two_halves(model, name)),        # not a probability
])
def test_two_halves_fails_wrong_answers(wrong, check):
    assert not check("ch00_two_halves", wrong)
