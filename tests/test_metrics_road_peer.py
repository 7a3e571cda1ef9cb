"""ROAD against pytorch-grad-cam 1.5.7 (``pytorch_grad_cam.metrics.road``) on a random-weight torchvision ResNet-18:
equal numbers on maps without ties, and the pinned differences where it departs from the paper (ties, the rounding
of the share)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from camlab.metrics import linear_imputation, road, road_curves
from camlab.metrics.road import removal_masks

peer_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
peer_perturbation = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
peer_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")


@pytest.fixture(scope="module")
def peer_case():
    """A random-weight torchvision ResNet-18 on two 40x40 inputs (1600 pixels, so r * 1600 is whole for every
    share r = 0.1, ..., 0.9) and smooth maps without ties (upsampled 5x5 noise plus a 1e-4 jitter, float64)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 40, 40, generator=generator)
    coarse = torch.rand(2, 1, 5, 5, generator=generator)
    heat = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bilinear")[:, 0].double()
    heat = heat + 1e-4 * torch.rand(2, 40, 40, generator=generator, dtype=torch.float64)
    assert all(len(one.unique()) == 1600 for one in heat)
    with torch.no_grad():
        classes = model(x).argmax(dim=1).tolist()
    return model, x, heat, classes


def _peer_change(order, percentile, case, noise=0.0):
    model, x, heat, classes = case
    targets = [peer_targets.ClassifierOutputSoftmaxTarget(c) for c in classes]
    remover = getattr(peer_perturbation, order)(percentile, peer_road.NoisyLinearImputer(noise=noise))
    return peer_perturbation.PerturbationConfidenceMetric(remover)(x, heat.numpy(), targets, model)


def test_every_share_equals_pytorch_grad_cams_percentile_without_noise(peer_case):
    """pytorch-grad-cam's percentile p removes the share r = 1 - p/100, most or least relevant first. Measured
    max |difference| of the probability changes: 1.0e-7 (float32 model outputs); asserted: 1e-6."""
    model, x, heat, classes = peer_case
    fractions, most, least = road_curves(model, x, heat, classes, noise=0.0)
    for column, fraction in enumerate(fractions.tolist()):
        percentile = round(100 * (1 - fraction))
        peer_most = _peer_change("RemoveMostRelevantFirst", percentile, peer_case)
        peer_least = _peer_change("RemoveLeastRelevantFirst", percentile, peer_case)
        assert np.abs(peer_most).max() > 1e-3  # the model responds: a comparison that can fail
        assert np.abs(peer_most - most[:, column].numpy()).max() < 1e-6
        assert np.abs(peer_least - least[:, column].numpy()).max() < 1e-6


def test_road_combined_equals_pytorch_grad_cams_with_its_own_noise_level(peer_case, monkeypatch):
    """pytorch-grad-cam's ROADCombined (percentiles 20, 50, 80; noise 0.01 from the global RNG) against camlab's with
    noise 0.01 from its seed: the draws differ, so the two agree to the noise's effect (measured 5e-5 to 7e-5 at
    percentiles 10..90 over three seeds; asserted 5e-4), and to 1e-6 once both have noise 0."""
    model, x, heat, classes = peer_case
    targets = [peer_targets.ClassifierOutputSoftmaxTarget(c) for c in classes]
    torch.manual_seed(1)
    peer = peer_road.ROADCombined([20, 50, 80])(x, heat.numpy(), targets, model)
    _, most, least = road_curves(model, x, heat, classes, fractions=(0.8, 0.5, 0.2))
    assert np.abs(peer - ((least - most) / 2).mean(dim=1).numpy()).max() < 5e-4
    monkeypatch.setattr(peer_road.NoisyLinearImputer.__init__, "__defaults__", (0.0, peer_road.neighbors_weights))
    peer = peer_road.ROADCombined([20, 50, 80])(x, heat.numpy(), targets, model)
    _, most, least = road_curves(model, x, heat, classes, fractions=(0.8, 0.5, 0.2), noise=0.0)
    assert np.abs(peer - ((least - most) / 2).mean(dim=1).numpy()).max() < 1e-6
    combined = road(model, x, heat, classes, fractions=(0.8, 0.5, 0.2), noise=0.0)["combined"]
    assert combined == pytest.approx(float(peer.mean()), abs=1e-6)


def _peer_removed(percentile, heat):
    """The pixels pytorch-grad-cam's RemoveMostRelevantFirst removes (its imputer replaced by a recorder)."""
    keep = peer_perturbation.RemoveMostRelevantFirst(percentile, lambda image, mask: mask)(None, heat)
    return keep == 0


def test_ties_remove_exactly_the_share_where_pytorch_grad_cam_removes_every_tied_pixel():
    """A map that is 0 on half the image (a ReLU'd CAM): at percentile 10 the threshold is 0 and pytorch-grad-cam
    keeps only pixels below 0, i.e. removes all 100 (its system is then singular). camlab removes floor(90 + 0.5)
    = 90, the 50 non-zero ones and 40 of the zeros in a seeded order."""
    heat = torch.zeros(10, 10)
    heat[:5] = torch.rand(5, 10, generator=torch.Generator().manual_seed(0)) + 0.1
    assert int(_peer_removed(10, heat).sum()) == 100
    most, _ = removal_masks(heat, (0.9,), torch.Generator().manual_seed(0))
    assert int(most.sum()) == 90 and bool(most[0, :5].all())


def test_the_share_is_the_papers_where_pytorch_grad_cams_percentile_rounds_up():
    """12 pixels without ties, share 0.1: the paper's 10% is 1.2 pixels, camlab removes 1; pytorch-grad-cam removes
    the pixels at or above the 90th percentile (position 0.9 * 11 = 9.9 of the sorted values), 2 of them."""
    heat = torch.arange(12.0).view(3, 4)
    assert int(_peer_removed(90, heat).sum()) == 2
    most, _ = removal_masks(heat, (0.1,), torch.Generator().manual_seed(0))
    assert int(most.sum()) == 1 and bool(most[0].view(-1)[11])


def test_without_ties_pytorch_grad_cam_imputes_the_same_pixels_as_camlab():
    """Its NoisyLinearImputer with noise 0 on a 3-channel 9x11 image with 40 removed pixels: the same values to
    float32 precision (both solve in float64)."""
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(3, 9, 11, generator=generator)
    removed = torch.zeros(99, dtype=torch.bool)
    removed[torch.randperm(99, generator=generator)[:40]] = True
    removed = removed.view(9, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = peer_road.NoisyLinearImputer(noise=0.0)(image, (~removed).float())
    assert torch.allclose(peer, linear_imputation(image, removed), atol=1e-6)
