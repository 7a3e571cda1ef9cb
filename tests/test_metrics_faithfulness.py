"""Average Drop / Increase in Confidence, deletion / insertion and occlusion correlation on a two-class "region
model" whose probabilities can be written down: on an 8x8 image, logit 0 = k * mean of the top two rows (the
object R, 16 of 64 pixels), logit 1 = k * mean of the other rows. On an all-ones image both logits are k."""
import math

import pytest
import torch
from torch import nn

from camlab.metrics import (auc, average_drop, causal_curve, confidence_change, deletion_auc,
                            increase_in_confidence, insertion_auc, occlusion_correlation, occlusion_faithfulness)
from camlab.modelinfo import ModelInfo

K = 3.0
S = 1 / (1 + math.exp(-K))  # softmax of [K, 0] for class 0


class RegionModel(nn.Module):
    def forward(self, x):
        inside = x[:, :, :2].mean(dim=(1, 2, 3))
        outside = x[:, :, 2:].mean(dim=(1, 2, 3))
        return K * torch.stack([inside, outside], dim=1)


class ObjectOnly(nn.Module):
    """logit 0 = k * mean of R, logit 1 = 0: deleting R drops class 0 to 0.5."""

    def forward(self, x):
        inside = x[:, :, :2].mean(dim=(1, 2, 3))
        return K * torch.stack([inside, torch.zeros_like(inside)], dim=1)


def region_map(inverted=False):
    heat = torch.zeros(1, 8, 8)
    heat[:, :2] = 1
    return 1 - heat if inverted else heat


X = torch.ones(1, 3, 8, 8)


def test_perfect_map_keeps_and_raises_confidence():
    """x*M keeps R and blacks out the rest: logits [k, 0], p0 = S > 0.5 = p0 before: no drop, an increase."""
    result = confidence_change(RegionModel(), X, region_map(), target=0)
    assert result["average_drop"] == 0.0
    assert result["increase_in_confidence"] == 1.0


def test_inverted_map_drops_confidence_by_the_formula():
    """x*(1-M) keeps only the outside: logits [0, k], p0 = 1 - S; drop = (0.5 - (1 - S)) / 0.5 = 2S - 1."""
    drop = average_drop(RegionModel(), X, region_map(inverted=True), target=0)
    assert drop == pytest.approx(2 * S - 1)
    assert increase_in_confidence(RegionModel(), X, region_map(inverted=True), target=0) == 0.0


def test_flat_map_masks_everything_without_nan():
    """A flat map scales to all zeros (no information): the whole image is blacked out, logits [0, 0]."""
    result = confidence_change(RegionModel(), X, torch.full((1, 8, 8), 0.7), target=0)
    assert result == {"average_drop": 0.0, "increase_in_confidence": 0.0, "n": 1}


def test_hard_mask_keeps_the_top_fraction():
    soft_scaled_map = region_map() * 0.2 + 0.05  # min-max scaling makes it the perfect map again
    assert confidence_change(RegionModel(), X, soft_scaled_map, target=0)["increase_in_confidence"] == 1.0
    result = confidence_change(RegionModel(), X, region_map(), target=0, mask="hard", top_fraction=0.25)
    assert result["average_drop"] == 0.0 and result["increase_in_confidence"] == 1.0
    inverted = confidence_change(RegionModel(), X, region_map(True), target=0, mask="hard", top_fraction=0.75)
    assert inverted["average_drop"] == pytest.approx(2 * S - 1)


def test_mask_multiplies_the_image_or_the_input():
    """With mean = std = 0.5 an all-ones input is a white image (pixel 1). space='image' turns masked pixels black
    (pixel 0, input -1); space='input' turns them to input 0 (the mean colour)."""
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 2)

    model = Recorder()
    model.camlab = ModelInfo("r", ["a", "b"], (8, 8), (0.5,) * 3, (0.5,) * 3)
    confidence_change(model, X, region_map(), target=0)
    masked = seen[-1]
    assert torch.allclose(masked[:, :, :2], torch.ones(1, 3, 2, 8)) and (masked[:, :, 2:] == -1).all()
    confidence_change(model, X, region_map(), target=0, space="input")
    assert (seen[-1][:, :, 2:] == 0).all()


def test_an_explainer_is_called_with_the_predicted_class():
    calls = []

    def explainer(x, target):
        calls.append(target)
        return region_map().expand(x.shape[0], 8, 8)

    confidence_change(ObjectOnly(), X.expand(2, 3, 8, 8), explainer)
    assert calls == [[0, 0]]


def test_deletion_and_insertion_curves_by_hand():
    """ObjectOnly, steps=4 (16 pixels each). Perfect map: R goes first. Deletion: [S, .5, .5, .5, .5];
    inverted map: [S, S, S, S, .5]. Insertion from zeros: [.5, S, S, S, S] and [.5, .5, .5, .5, S]."""
    model = ObjectOnly()
    fractions, curve = causal_curve(model, X, region_map(), target=0, steps=4)
    assert fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve[0].tolist() == pytest.approx([S, .5, .5, .5, .5])
    _, curve = causal_curve(model, X, region_map(True), target=0, steps=4)
    assert curve[0].tolist() == pytest.approx([S, S, S, S, .5])
    assert deletion_auc(model, X, region_map(), target=0, steps=4) == pytest.approx(((S + 2) - (S + .5) / 2) / 4)
    assert deletion_auc(model, X, region_map(True), target=0, steps=4) == pytest.approx(
        ((4 * S + .5) - (S + .5) / 2) / 4)
    perfect = insertion_auc(model, X, region_map(), target=0, steps=4, substrate="zeros")
    inverted = insertion_auc(model, X, region_map(True), target=0, steps=4, substrate="zeros")
    assert perfect == pytest.approx(((4 * S + .5) - (S + .5) / 2) / 4)
    assert inverted == pytest.approx(((S + 2) - (S + .5) / 2) / 4)


def test_auc_is_the_trapezoid_over_unit_interval():
    assert float(auc(torch.ones(11))) == pytest.approx(1.0)
    assert float(auc(torch.linspace(0, 1, 101))) == pytest.approx(0.5)


def test_flat_map_deletes_in_a_seeded_random_order():
    flat = torch.zeros(1, 8, 8)
    first = deletion_auc(ObjectOnly(), X, flat, target=0, steps=8, seed=1)
    assert first == deletion_auc(ObjectOnly(), X, flat, target=0, steps=8, seed=1)
    assert 0.5 < first < S and not math.isnan(first)


def test_blur_substrate_and_a_batch_of_steps():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    heat = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    _, small = causal_curve(ObjectOnly(), x, heat, target=0, mode="insertion", steps=10, batch_size=3)
    _, large = causal_curve(ObjectOnly(), x, heat, target=0, mode="insertion", steps=10, batch_size=64)
    assert small.shape == (2, 11) and torch.allclose(small, large)
    # the last insertion step is the image itself
    assert torch.allclose(large[:, -1], torch.softmax(ObjectOnly()(x), 1)[:, 0].double())


def test_occlusion_correlation_perfect_inverted_flat():
    heat = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert occlusion_correlation(heat, heat) == pytest.approx(1.0)
    assert occlusion_correlation(heat, -heat) == pytest.approx(-1.0)
    assert occlusion_correlation(heat, torch.zeros(2, 8, 8)) == 0.0


def test_occlusion_faithfulness_uses_the_registered_occlusion_method():
    pytest.importorskip("camlab.methods.perturbation")
    from camlab.methods import METHODS

    if "occlusion" not in METHODS:
        pytest.skip("no occlusion method registered")
    x = torch.ones(1, 3, 8, 8)
    value = occlusion_faithfulness(ObjectOnly(), x, lambda inputs, t: region_map(), target=0, patch=2, stride=2,
                                   progress=False)
    assert value > 0.8
