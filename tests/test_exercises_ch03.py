"""Chapter 03's checks pass a right answer and fail plausible wrong ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, rankdata

from camlab.exercises import ExerciseFailed, check_guided_relu_backward
from tests.exercise_checks import check  # noqa: F401 (the fixture)


def test_guided_relu_backward_passes_the_rule_and_fails_plain_and_deconvnet(check):
    assert check("ch03_guided_relu_backward", lambda x, g: g * (x > 0) * (g > 0))
    assert check("ch03_guided_relu_backward", lambda x, g: g.clamp_min(0) * (x > 0))
    assert not check("ch03_guided_relu_backward", lambda x, g: g * (x > 0))          # plain backprop
    assert not check("ch03_guided_relu_backward", lambda x, g: g.clamp_min(0))       # deconvnet
    assert not check("ch03_guided_relu_backward", lambda x, g: g * (x >= 0) * (g > 0))  # gradient 1 at the kink


def _guided_gradcam(guided, cam, mode="bilinear", scaled=True):
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(cam[:, None], size=guided.shape[-2:], mode=mode, **kwargs)[:, 0]
    if scaled:
        low = up.flatten(1).amin(1)[:, None, None]
        high = up.flatten(1).amax(1)[:, None, None]
        up = (up - low) / (high - low)
    return guided * up[:, None]


def test_guided_gradcam_passes_bilinear_scaled_and_fails_nearest_or_unscaled(check):
    assert check("ch03_guided_gradcam", _guided_gradcam)
    assert not check("ch03_guided_gradcam", lambda g, c: _guided_gradcam(g, c, mode="nearest"))
    assert not check("ch03_guided_gradcam", lambda g, c: _guided_gradcam(g, c, scaled=False))


def _spearman(a, b):
    return np.corrcoef(rankdata(np.ravel(a)), rankdata(np.ravel(b)))[0, 1]


def test_rank_correlation_passes_spearman_and_fails_pearson_and_ordinal_ranks(check):
    assert check("ch03_rank_correlation", _spearman)
    assert not check("ch03_rank_correlation", lambda a, b: pearsonr(np.ravel(a), np.ravel(b))[0])
    ordinal = lambda a, b: np.corrcoef(rankdata(np.ravel(a), "ordinal"), rankdata(np.ravel(b), "ordinal"))[0, 1]
    assert not check("ch03_rank_correlation", ordinal)


def test_strict_mode_raises_on_a_wrong_rule(monkeypatch):
    monkeypatch.setenv("CAMLAB_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed, match="guided_relu_backward"):
        check_guided_relu_backward(lambda x, g: g.clamp_min(0))


def test_lenient_mode_prints_and_returns_the_failure(monkeypatch, capsys):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert not check_guided_relu_backward(lambda x, g: g.clamp_min(0))
    assert "FAIL guided_relu_backward" in capsys.readouterr().out
