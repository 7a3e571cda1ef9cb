"""Chapter 03's checks pass a right answer and fail plausible wrong ones; the per-student experiment's check passes
a correct answer for its own seed only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, rankdata

import camlab
from camlab.exercises import ExerciseFailed, ch03, check_guided_relu6_backward
from camlab.lab import class_index, make_scenes
from camlab.metrics import saliency
from camlab.metrics.discrimination import symmetric_discrimination
from tests.exercise_checks import check  # noqa: F401 (the fixture)


def test_guided_relu6_backward_passes_the_rule_and_fails_plain_deconvnet_and_relu_gates(check):
    assert check("ch03_guided_relu6_backward", lambda x, g: g * ((x > 0) & (x < 6)) * (g > 0))
    assert check("ch03_guided_relu6_backward", lambda x, g: g.clamp_min(0) * ((x > 0) & (x < 6)))
    assert not check("ch03_guided_relu6_backward", lambda x, g: g * ((x > 0) & (x < 6)))    # plain backprop
    assert not check("ch03_guided_relu6_backward", lambda x, g: g.clamp_min(0))             # deconvnet
    assert not check("ch03_guided_relu6_backward", lambda x, g: g * (x > 0) * (g > 0))      # a ReLU's gate, not ReLU6's
    assert not check("ch03_guided_relu6_backward", lambda x, g: g * ((x >= 0) & (x <= 6)) * (g > 0))  # kinks let through


def _guided_gradcam(guided, cam, mode="bilinear", scaled=True):
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(cam[:, None], size=guided.shape[-2:], mode=mode, **kwargs)[:, 0]
    if scaled:
        low = up.flatten(1).amin(1)[:, None, None]
        high = up.flatten(1).amax(1)[:, None, None]
        span = high - low
        up = torch.where(span > 0, (up - low) / torch.where(span > 0, span, torch.ones_like(span)),
                         torch.zeros_like(up))
    return guided * up[:, None]


def nan_for_flat_maps(guided, cam):
    up = F.interpolate(cam[:, None], size=guided.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low, high = up.flatten(1).amin(1)[:, None, None], up.flatten(1).amax(1)[:, None, None]
    return guided * ((up - low) / (high - low))[:, None]


def test_guided_gradcam_hidden_cases_catch_a_flat_map():
    """The hidden cases hold the edge case the chapter warns about: a constant map scales to 0, never NaN."""
    from camlab.course.student import run_check_cell
    assert run_check_cell("ch03_guided_gradcam", _guided_gradcam)
    assert not run_check_cell("ch03_guided_gradcam", nan_for_flat_maps)


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
    with pytest.raises(ExerciseFailed, match="guided_relu6_backward"):
        check_guided_relu6_backward(lambda x, g: g.clamp_min(0))


def test_lenient_mode_prints_and_returns_the_failure(monkeypatch, capsys):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert not check_guided_relu6_backward(lambda x, g: g.clamp_min(0))
    assert "FAIL guided_relu6_backward" in capsys.readouterr().out


def discrimination_experiment(model, seed, methods=(camlab.GuidedBackprop, camlab.GuidedGradCAM), raw=True,
                              second=1):
    scenes = make_scenes(40, seed=seed, distractors=1)
    inputs = camlab.preprocess(scenes.images, model)
    other = [class_index(objects[second]["class"]) for objects in scenes.objects]
    boxes_a = torch.tensor([objects[0]["box"] for objects in scenes.objects])
    boxes_b = torch.tensor([objects[1]["box"] for objects in scenes.objects])
    results = []
    for method in methods:
        explainer = method(model)
        maps_a = saliency(explainer(inputs, target=scenes.labels.tolist(), raw=raw))
        maps_b = saliency(explainer(inputs, target=other, raw=raw))
        results.append(symmetric_discrimination(maps_a, maps_b, boxes_a, boxes_b))
    return results[0], results[1]


def test_discrimination_experiment_passes_the_experiment(check):
    assert check("ch03_discrimination_experiment", discrimination_experiment)


@pytest.mark.parametrize("wrong", [
    lambda model, seed: discrimination_experiment(model, seed)[::-1],                        # methods swapped
    lambda model, seed: discrimination_experiment(model, seed, second=0),                   # the label twice: d = 0
    lambda model, seed: discrimination_experiment(model, seed + 1),                         # another seed's scenes
])
def test_discrimination_experiment_fails_wrong_answers(wrong, monkeypatch):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)  # a failing check returns False
    assert not ch03.check_discrimination_experiment(wrong, seed=0)


def test_discrimination_experiment_passes_only_for_its_own_seed(monkeypatch):
    """Answers computed for seed 0 (copied from a classmate) pass seed 0's check and fail seed 1's."""
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    answers = discrimination_experiment(camlab.load_model("lab_vgg"), 0)
    assert ch03.check_discrimination_experiment(lambda model, seed: answers, seed=0)
    assert not ch03.check_discrimination_experiment(lambda model, seed: answers, seed=1)
