"""The chapter-05 toys: the gate's forward values and slopes are the closed forms of its docstring, and the blobs
are seeded, apart and boxed."""
import math

import pytest
import torch

import camlab
from camlab.lab.toys import GatedHead, two_blob_activations


@pytest.mark.parametrize("gain", [0.5, 4.0, 10.0])
def test_gate_maps_zero_to_zero_and_one_to_one_for_every_gain(gain):
    gate = GatedHead(gain).gate(torch.tensor([0.0, 1.0]))
    assert torch.allclose(gate, torch.tensor([0.0, 1.0]), atol=1e-6)


@pytest.mark.parametrize("gain", [0.5, 4.0, 10.0])
def test_gate_slope_at_zero_and_one_is_the_closed_form(gain):
    """g'(a) = gain sigma'(gain (a - 1/2)) / (sigma(gain/2) - sigma(-gain/2)); at a = 0 and 1, sigma' = s (1 - s)
    with s = sigma(gain/2)."""
    s = 1 / (1 + math.exp(-gain / 2))
    expected = gain * s * (1 - s) / (2 * s - 1)
    a = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(GatedHead(gain).gate(a).sum(), a)
    assert torch.allclose(slope, torch.full((2,), expected, dtype=torch.float64), rtol=1e-6)


def test_gated_head_score_on_blobs_is_the_blob_areas_whatever_the_gain():
    """On 0/1 activations g is the identity, so y = (area_0 + area_1) / Z for every gain."""
    activations, boxes = two_blob_activations(5, seed=1)
    areas = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).sum(1).float() / 256
    for gain in [0.5, 10.0]:
        assert torch.allclose(GatedHead(gain)(activations)[:, 0], areas, atol=1e-5)


def test_gradcam_on_a_saturated_gate_loses_the_gated_blob():
    """Grad-CAM's alpha_0 = g'(1)/Z (g'(0) = g'(1)) and alpha_1 = 1/Z: the map on blob 0 is g'(1) times that on
    blob 1 per pixel, about 0.067 at gain 10."""
    activations, _ = two_blob_activations(1, seed=3)
    heat = camlab.GradCAM(GatedHead(10.0), layer="features")(activations, target=0, raw=True)[0]
    ratio = heat[activations[0, 0] > 0].mean() / heat[activations[0, 1] > 0].mean()
    s = 1 / (1 + math.exp(-5))
    assert math.isclose(float(ratio), 10 * s * (1 - s) / (2 * s - 1), rel_tol=1e-4)


def test_two_blob_activations_are_seeded_apart_and_boxed():
    first, boxes = two_blob_activations(50, seed=7)
    again, _ = two_blob_activations(50, seed=7)
    other, _ = two_blob_activations(50, seed=8)
    assert torch.equal(first, again) and not torch.equal(first, other)
    for i in range(50):
        for k in range(2):
            x0, y0, x1, y1 = boxes[i, k].tolist()
            assert first[i, k, y0:y1, x0:x1].min() == 1 and first[i, k].sum() == (x1 - x0) * (y1 - y0)
        b0, b1 = boxes[i].tolist()
        assert b1[0] > b0[2] or b0[0] > b1[2] or b1[1] > b0[3] or b0[1] > b1[3]


def test_bad_gain_and_bad_shape_raise_clear_errors():
    with pytest.raises(ValueError, match="gain must be a positive number"):
        GatedHead(0.0)
    with pytest.raises(ValueError, match=r"reads \(N, 2, h, w\)"):
        GatedHead(1.0)(torch.zeros(1, 3, 4, 4))
