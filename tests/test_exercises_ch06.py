"""Chapter 06's checks pass the right answers and fail plausible wrong ones."""
from __future__ import annotations

from camlab.exercises import check_difference_target, check_region_target


def test_region_target_check(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert check_region_target(lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].sum(dim=(1, 2)))
    assert not check_region_target(lambda c, b: lambda out: out[:, c].sum(dim=(1, 2)))  # whole map
    assert not check_region_target(lambda c, b: lambda out: out[:, c, b[1]:b[3], b[0]:b[2]].mean(dim=(1, 2)))


def test_difference_target_check(monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert check_difference_target(lambda a, b: lambda logits: logits[:, a] - logits[:, b])
    assert not check_difference_target(lambda a, b: lambda logits: (logits.softmax(1)[:, a] - logits.softmax(1)[:, b]))
    assert not check_difference_target(lambda a, b: lambda logits: logits[:, b] - logits[:, a])
