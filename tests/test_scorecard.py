"""camlab.scorecard: per-scene scores agree with camlab.metrics' means; tiers never split exact ties."""
import numpy as np
import pytest
import torch

import camlab
from camlab import metrics
from camlab.lab import make_scenes
from camlab.scorecard import Scorecard, per_scene_scores


@pytest.fixture(scope="module")
def lab_case():
    torch.manual_seed(0)
    lab = camlab.load_model("lab_gap")
    scenes = make_scenes(6, seed=3, distractors=1)
    x = camlab.preprocess(scenes.images, lab)
    labels = scenes.labels.tolist()
    maps = camlab.GradCAM(lab, layer="features")(x, target=labels)
    return lab, x, labels, maps, scenes.masks


def test_per_scene_means_are_the_metrics_means(lab_case):
    lab, x, labels, maps, masks = lab_case
    scores = per_scene_scores(lab, x, maps, labels, masks, steps=8)
    assert all(v.shape == (6,) for v in scores.values())
    assert scores["pointing"].mean() == pytest.approx(metrics.pointing_game(maps, masks, tolerance=15 * 64 / 224))
    assert scores["mass_inside"].mean() == pytest.approx(metrics.mass_inside(maps, masks).mean().item())
    change = metrics.confidence_change(lab, x, maps, labels)
    assert scores["average_drop"].mean() == pytest.approx(change["average_drop"])
    assert scores["increase"].mean() == pytest.approx(change["increase_in_confidence"])
    assert scores["deletion"].mean() == pytest.approx(metrics.deletion_auc(lab, x, maps, labels, steps=8))
    assert scores["insertion"].mean() == pytest.approx(metrics.insertion_auc(lab, x, maps, labels, steps=8))


def test_per_scene_scores_rejects_mismatched_inputs(lab_case):
    lab, x, labels, maps, masks = lab_case
    with pytest.raises(ValueError, match="one map and one target per input"):
        per_scene_scores(lab, x, maps[:3], labels, masks)
    with pytest.raises(ValueError, match="unknown metrics"):
        per_scene_scores(lab, x, maps, labels, masks, metrics=("accuracy",))
    with pytest.raises(ValueError, match="need ground_truth"):
        per_scene_scores(lab, x, maps, labels, None, metrics=("pointing",))


def test_exact_ties_form_one_tier_whatever_the_names():
    ones = np.ones(50)
    card = Scorecard({"zeta": {"pointing": ones}, "alpha": {"pointing": ones}, "mid": {"pointing": ones * 0.0}})
    assert card.tiers("pointing") == [["alpha", "zeta"], ["mid"]]


def test_tiers_follow_the_paired_interval_and_the_metric_direction():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 100)
    scores = {"small_gap": {"deletion": base + 0.001 * rng.standard_normal(100)},   # indistinguishable from base
              "base": {"deletion": base},
              "worse": {"deletion": base + 0.1}}                                 # higher deletion AUC is worse
    card = Scorecard(scores)
    tiers = card.tiers("deletion")
    assert sorted(tiers[0]) == ["base", "small_gap"] and tiers[1] == ["worse"]
    assert card.difference("worse", "base", "deletion").difference.value == pytest.approx(0.1)


def test_scorecard_prints_mean_and_interval_per_cell():
    card = Scorecard({"a": {"mass_inside": [0.2, 0.4]}, "b": {"mass_inside": [0.5, 0.5]}})
    text = str(card)
    assert "0.300 [0.200, 0.400]" in text and "0.500 [0.500, 0.500]" in text and "n=2 scenes" in text
    with pytest.raises(ValueError, match="same metrics"):
        Scorecard({"a": {"mass_inside": [0.2, 0.4]}, "b": {"mass_inside": [0.5]}})
