"""Chapter 00's checks pass the right answers and fail plausible wrong ones."""
import pytest

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def top_classes(logits, k):
    top = logits.softmax(dim=1).topk(k, dim=1)
    return top.indices, top.values


def last_spatial_layer(rows):
    for name, shape in reversed(rows):
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            return name
    return None


def test_top_classes_passes_softmax_topk(check):
    assert check("ch00_top_classes", top_classes)


@pytest.mark.parametrize("wrong", [
    lambda logits, k: (logits.topk(k, dim=1).indices, logits.topk(k, dim=1).values),  # logits, not probabilities
    lambda logits, k: (logits.softmax(dim=0).topk(k, dim=1).indices, logits.softmax(dim=0).topk(k, dim=1).values),
    lambda logits, k: (logits.softmax(dim=1).topk(k, dim=1, largest=False).indices,
                       logits.softmax(dim=1).topk(k, dim=1, largest=False).values),
])
def test_top_classes_fails_wrong_answers(wrong, check):
    assert not check("ch00_top_classes", wrong)


def test_last_spatial_layer_passes_the_shape_rule(check):
    assert check("ch00_last_spatial_layer", last_spatial_layer)


@pytest.mark.parametrize("wrong", [
    lambda rows: rows[-1][0],  # the last layer whatever its shape
    lambda rows: next(name for name, shape in reversed(rows) if len(shape) == 4),  # accepts the 1x1 pooled map
    lambda rows: next(name for name, shape in rows if len(shape) == 4 and shape[2] * shape[3] > 1),  # the first
])
def test_last_spatial_layer_fails_wrong_answers(wrong, check):
    assert not check("ch00_last_spatial_layer", wrong)
