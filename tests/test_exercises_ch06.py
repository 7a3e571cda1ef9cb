"""Chapter 06's checks pass the right answers and fail plausible wrong ones."""
from __future__ import annotations

from tests.exercise_checks import check  # noqa: F401 (the fixture)


def test_region_target_check(check):
    assert check("ch06_region_target", lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].sum(dim=(1, 2)))
    assert not check("ch06_region_target", lambda c, b: lambda out: out[:, c].sum(dim=(1, 2)))  # whole map
    assert not check("ch06_region_target", lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].mean(dim=(1, 2)))


def test_difference_target_check(check):
    assert check("ch06_difference_target", lambda a, b: lambda logits: logits[:, a] - logits[:, b])
    probabilities = lambda a, b: lambda logits: logits.softmax(1)[:, a] - logits.softmax(1)[:, b]  # noqa: E731
    assert not check("ch06_difference_target", probabilities)
    assert not check("ch06_difference_target", lambda a, b: lambda logits: logits[:, b] - logits[:, a])
