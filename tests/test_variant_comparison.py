"""Comparing the CAM variants where they differ: one shared pass for every variant (compare.variant_maps), identical
methods counted once (compare.merge_identical), tiers as ties within a tolerance (scorecard.tiers), and the power of
the exact McNemar test (stats.mcnemar_power, stats.detectable_difference)."""
import math

import numpy as np
import pytest
import torch

import camlab
from camlab.compare import merge_identical, variant_maps
from camlab.scorecard import tiers
from camlab.stats import detectable_difference, mcnemar_power

VARIANTS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "eigencam", "ablationcam",
            "random"]


class FcHead(torch.nn.Module):
    """Conv trunk -> flatten -> linear: the gradient varies over positions, so the variants differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(5 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


@pytest.fixture(scope="module")
def model_and_input():
    model = FcHead().eval()
    torch.manual_seed(1)
    return model, torch.randn(3, 3, 6, 6)


@pytest.mark.parametrize("layer", ["features.1", "features"])
def test_every_variant_from_one_pass_equals_the_methods_own_call(model_and_input, layer):
    model, x = model_and_input
    maps = variant_maps(model, x, [0, 2, 1], VARIANTS, layer, batch_size=8, progress=False)
    for name in VARIANTS:
        options = {"batch_size": 8, "progress": False} if name in ("scorecam", "ablationcam") else {}
        assert torch.allclose(maps[name], camlab.METHODS[name](model, layer=layer, **options)(x, [0, 2, 1]),
                              atol=1e-6), name


def test_several_layers_share_one_pass_and_leave_the_model_as_it_was(model_and_input):
    model, x = model_and_input
    model.train()
    both = variant_maps(model, x, 1, ["gradcam", "layercam"], ["features.1", "features"])
    assert model.training and not model._forward_hooks and not model.features[1]._forward_hooks
    model.eval()
    assert set(both) == {"features.1", "features"}
    assert torch.allclose(both["features.1"]["gradcam"], camlab.GradCAM(model, layer="features.1")(x, 1), atol=1e-6)


def test_a_method_that_is_not_a_single_layer_channel_method_is_refused(model_and_input):
    model, x = model_and_input
    with pytest.raises(ValueError, match="single-layer channel-weight methods"):
        variant_maps(model, x, 0, ["gradient"], "features")


def test_identical_maps_are_counted_once_and_different_ones_kept():
    a = torch.rand(2, 4, 4)
    merged = merge_identical({"gradcam": a, "xgradcam": a + 1e-6, "hirescam": a.clone(), "layercam": a.flip(-1)})
    assert set(merged) == {"gradcam = hirescam = xgradcam", "layercam"}


def test_a_gap_layer_merges_gradcam_xgradcam_and_hirescam():
    model = camlab.load_model("lab_gap")
    x = camlab.preprocess(camlab.lab.make_scenes(4, seed=0).images, model)
    merged = merge_identical(variant_maps(model, x, [0, 1, 2, 3], ["gradcam", "xgradcam", "hirescam", "layercam"],
                                          "features"))
    assert "gradcam = hirescam = xgradcam" in merged and "layercam" in merged


def test_differences_inside_the_tolerance_neither_split_nor_reorder_a_tier():
    rng = np.random.default_rng(0)
    base = rng.random(120)
    values = {"b": base + 1e-7, "a": base, "c": base - 0.5}
    assert tiers(values, higher_is_better=True) == [["b"], ["a"], ["c"]]          # float noise splits ...
    assert tiers(values, higher_is_better=True, tolerance=0.01) == [["a", "b"], ["c"]]   # ... unless tolerated


def test_mcnemar_power_is_the_level_at_no_difference_and_grows_with_the_difference():
    assert mcnemar_power(200, 0.1, 0.0) <= 0.05
    assert mcnemar_power(200, 0.1, 0.02) < mcnemar_power(200, 0.1, 0.06) < mcnemar_power(200, 0.1, 0.1)
    # all 20 expected discordant pairs one way: p = 2 * 0.5**20, rejected whenever m >= 6 (almost surely)
    assert mcnemar_power(200, 0.1, 0.1) > 0.999


def test_the_detectable_difference_shrinks_with_more_cases_and_is_infinite_without_power():
    assert detectable_difference(400, 0.1) < detectable_difference(100, 0.1)
    assert math.isinf(detectable_difference(20, 0.05))
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_power(100, 0.05, 0.1)
