"""Chapter 03's checks pass a right answer and fail plausible wrong ones; the first two exercises' hidden cases come
from the grader's HIDDEN_SEED; the per-student experiment's check passes a correct answer for its own seed only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, rankdata

import camlab
from camlab.exercises import ExerciseFailed, ch03, check_guided_leaky_relu_backward
from camlab.lab import class_index, make_scenes
from camlab.metrics import saliency
from camlab.metrics.discrimination import symmetric_discrimination
from tests.exercise_checks import check  # noqa: F401 (the fixture)


def guided_leaky(x, g, slope):
    """Exercise 1 written another way than the instructor's."""
    return torch.where(x > 0, g, slope * g) * (g > 0)


def test_guided_leaky_relu_backward_passes_the_construction(check):
    assert check("ch03_guided_leaky_relu_backward", guided_leaky)


@pytest.mark.parametrize("wrong", [
    lambda x, g, slope: g * (x > 0) * (g > 0),                               # a ReLU's gate: the leak dropped
    lambda x, g, slope: torch.where(x > 0, g, slope * g),                    # plain gradient: negative signals pass
    lambda x, g, slope: torch.where(x >= 0, g, slope * g) * (g > 0),         # the kink at 0 given factor 1
    lambda x, g, slope: g.clamp_min(0),                                      # deconvnet: the forward factor ignored
    lambda x, g, slope: torch.where(x > 0, g, 0.01 * g) * (g > 0),          # PyTorch's default slope, not slope
], ids=["relu gate", "plain gradient", "kink", "deconvnet", "default slope"])
def test_guided_leaky_relu_backward_fails_plausible_wrong_rules(wrong, check):
    assert not check("ch03_guided_leaky_relu_backward", wrong)


def test_the_leaky_reference_is_the_chapters_construction_run_by_autograd():
    """The reference equals the chapter's PositiveSignal node after nn.LeakyReLU, run through autograd, and the
    worked example's values worked out by hand."""
    class PositiveSignal(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return z.clone()

        @staticmethod
        def backward(ctx, signal):
            return signal.clamp_min(0)

    x = torch.tensor([-2., -0.5, 0., 0.5, 2.]).requires_grad_(True)
    signal = torch.tensor([1., -1., 3., 2., -4.])
    (by_autograd,) = torch.autograd.grad(PositiveSignal.apply(torch.nn.LeakyReLU(0.2)(x)), x, signal)
    assert torch.allclose(ch03.guided_leaky_relu_reference(x.detach(), signal, 0.2), by_autograd)
    assert ch03.GUIDED_LEAKY_RELU[0][1].tolist() == pytest.approx([0.1, 0.1, 2.0, 0.0, 0.0])


def _min_max(maps, safe=True):
    low, high = maps.flatten(1).amin(1)[:, None, None], maps.flatten(1).amax(1)[:, None, None]
    if safe:
        return torch.where(high > low, (maps - low) / (high - low).clamp_min(1e-12), torch.zeros_like(maps))
    return (maps - low) / (high - low)


def _counterfactual(guided, activations, gradients, negate=True, relu_first=True, mode="bilinear", safe=True,
                    scale_first=False):
    alpha = (-1 if negate else 1) * gradients.mean(dim=(2, 3))
    cam = torch.einsum("nk,nkhw->nhw", alpha, activations)
    if relu_first:
        cam = F.relu(cam)
    if scale_first:
        cam = _min_max(cam, safe)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(cam[:, None], size=guided.shape[-2:], mode=mode, **kwargs)[:, 0]
    if not relu_first:
        up = F.relu(up)
    scaled = up if scale_first else _min_max(up, safe)
    return guided * scaled[:, None]


def test_counterfactual_guided_gradcam_passes_the_formulas_order(check):
    assert check("ch03_counterfactual_guided_gradcam", _counterfactual)


@pytest.mark.parametrize("wrong", [
    lambda g, a, d: _counterfactual(g, a, d, negate=False),          # the factual map
    lambda g, a, d: _counterfactual(g, a, d, relu_first=False),      # the ReLU after the upsampling
    lambda g, a, d: _counterfactual(g, a, d, mode="nearest"),        # Captum's nearest-neighbour upsampling
], ids=["factual", "relu after upsampling", "nearest"])
def test_counterfactual_guided_gradcam_fails_plausible_wrong_images(wrong, check):
    assert not check("ch03_counterfactual_guided_gradcam", wrong)


@pytest.mark.parametrize("wrong", [
    lambda g, a, d: _counterfactual(g, a, d, safe=False),         # NaN on a flat map
    lambda g, a, d: _counterfactual(g, a, d, scale_first=True),   # scaled at the layer's size, then upsampled
], ids=["nan on a flat map", "scaled before upsampling"])
@pytest.mark.parametrize("hidden_seed", range(5))
def test_counterfactual_hidden_cases_catch_what_the_worked_example_cannot(wrong, hidden_seed):
    """The visible example has no flat map, and a 2 -> 4 upsampling keeps its extremes; every hidden set has a flat
    map (an image with no counterfactual evidence) and upsampled maps whose extremes move."""
    from camlab.course.student import run_check_cell

    assert run_check_cell("ch03_counterfactual_guided_gradcam", wrong, hidden=False)
    assert not run_check_cell("ch03_counterfactual_guided_gradcam", wrong, hidden_seed=hidden_seed)


@pytest.mark.parametrize("make", ["_leaky_case", "_counterfactual_case"])
def test_two_hidden_seeds_give_different_cases_and_the_right_answer_passes_both(make):
    from camlab.course.student import run_check_cell
    from camlab.exercises import cases_from_seed

    first, again, other = (cases_from_seed(seed, getattr(ch03, make), 4) for seed in (3, 3, 4))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(a[1].shape != b[1].shape or not torch.equal(a[1], b[1]) for a, b in zip(first, other))
    exercise, answer = (("ch03_guided_leaky_relu_backward", guided_leaky) if make == "_leaky_case"
                        else ("ch03_counterfactual_guided_gradcam", _counterfactual))
    assert run_check_cell(exercise, answer, hidden_seed=3) and run_check_cell(exercise, answer, hidden_seed=4)


@pytest.mark.parametrize("seed", range(5))
def test_every_hidden_seed_draws_every_edge_case(seed):
    """Each seed's leaky cases include slope 0 (a ReLU) and PyTorch's default 0.01, and every case has an input
    exactly 0 (the kink) and a neuron that was off with a positive signal; each seed's counterfactual cases include
    an image with no counterfactual evidence (a flat map, 0 after scaling) and all of them are upsampled."""
    from camlab.exercises._checking import cases_from_kinds

    leaky = cases_from_kinds(seed, ch03.LEAKY_KINDS)
    assert {0.0, 0.01} <= {args[2] for args, _ in leaky}
    assert all((args[0] == 0).any() and ((args[0] < 0) & (args[1] > 0)).any() for args, _ in leaky)
    counterfactual = cases_from_kinds(seed, ch03.COUNTERFACTUAL_KINDS)
    flat = [expected[1] for (guided, _, _), expected in counterfactual if guided.shape[0] == 2]
    assert flat and all(torch.equal(image, torch.zeros_like(image)) for image in flat)
    assert all(guided.shape[-2] > activations.shape[-2] for (guided, activations, _), _ in counterfactual)


def _spearman(a, b):
    return np.corrcoef(rankdata(np.ravel(a)), rankdata(np.ravel(b)))[0, 1]


def test_rank_correlation_passes_spearman_and_fails_pearson_and_ordinal_ranks(check):
    assert check("ch03_rank_correlation", _spearman)
    assert not check("ch03_rank_correlation", lambda a, b: pearsonr(np.ravel(a), np.ravel(b))[0])
    ordinal = lambda a, b: np.corrcoef(rankdata(np.ravel(a), "ordinal"), rankdata(np.ravel(b), "ordinal"))[0, 1]
    assert not check("ch03_rank_correlation", ordinal)


def test_strict_mode_raises_on_a_wrong_rule(monkeypatch):
    monkeypatch.setenv("CAMLAB_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed, match="guided_leaky_relu_backward"):
        check_guided_leaky_relu_backward(lambda x, g, slope: g.clamp_min(0))


def test_lenient_mode_prints_and_returns_the_failure(monkeypatch, capsys):
    monkeypatch.delenv("CAMLAB_STRICT_CHECKS", raising=False)
    assert not check_guided_leaky_relu_backward(lambda x, g, slope: g.clamp_min(0))
    assert "FAIL guided_leaky_relu_backward" in capsys.readouterr().out


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


def test_grading_traps_the_references():
    from camlab.exercises._own_work import own_work_for

    assert {"camlab.exercises.ch03:guided_leaky_relu_reference",
            "camlab.exercises.ch03:counterfactual_guided_gradcam_reference",
            "camlab.exercises.ch03:discrimination_reference"} <= set(own_work_for("03_guided_gradcam"))
