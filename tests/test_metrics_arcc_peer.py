"""Complexity, Coherency and ARCC against pytorch-grad-cam 1.5.7 (``pytorch_grad_cam.metrics.arcc``) on a
random-weight torchvision ResNet-18 with the same maps."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import camlab
from camlab.metrics import arcc, arcc_scores

peer_arcc = pytest.importorskip("pytorch_grad_cam.metrics.arcc")
peer_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
peer_cam = pytest.importorskip("pytorch_grad_cam")
peer_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")


@pytest.fixture(scope="module")
def peer_case():
    """A random-weight torchvision ResNet-18 on two 40x40 inputs, pytorch-grad-cam's Grad-CAM maps of layer3 for the
    top-1 class's probability with a 1e-3 jitter (so that no two pixels tie; rescaled to [0, 1]), and camlab's
    Grad-CAM of the same layer and probability as the explainer."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        classes = model(x).argmax(dim=1).tolist()
    targets = [peer_targets.ClassifierOutputSoftmaxTarget(c) for c in classes]
    peer_explainer = peer_cam.GradCAM(model, [model.layer3])
    cams = peer_explainer(input_tensor=x, targets=targets)
    cams = cams + 1e-3 * np.random.default_rng(0).random(cams.shape).astype(np.float32)
    low, high = cams.min(axis=(1, 2), keepdims=True), cams.max(axis=(1, 2), keepdims=True)
    cams = ((cams - low) / (high - low)).astype(np.float32)
    assert all(len(np.unique(one)) == one.size for one in cams)
    gradcam = camlab.GradCAM(model, "layer3")

    def explainer(batch, classes):
        return gradcam(batch, [lambda output, c=c: output.softmax(dim=1)[:, c] for c in classes])

    return model, x, classes, targets, cams, peer_explainer, explainer


def test_complexity_and_coherency_equal_pytorch_grad_cams(peer_case):
    """Measured max |difference|: complexity 1e-8, coherency 6e-8 (the two Grad-CAMs of the masked images agree);
    asserted 1e-6 and 1e-5. The peer's coherencies here are 0.961 and 0.938."""
    model, x, classes, targets, cams, peer_explainer, explainer = peer_case
    peer_complexity = peer_arcc.Complexity()(cams)
    peer_coherency = peer_arcc.Coherency()(x, cams, targets, model, peer_explainer)
    scores = arcc_scores(model, x, explainer, classes, maps=torch.from_numpy(cams), noise=0.0)
    assert np.abs(peer_complexity - scores["complexity"].numpy()).max() < 1e-6
    assert np.abs(peer_coherency - scores["coherency"].numpy()).max() < 1e-5
    assert float(np.ptp(peer_coherency)) > 0 or float(np.abs(peer_coherency - 0.5).max()) > 1e-3


def test_arcc_equals_pytorch_grad_cams_without_noise(peer_case, monkeypatch):
    """pytorch-grad-cam's ARCC (ROAD at percentiles 20..80) with its imputation noise set to 0, against camlab's
    with noise 0: ARCC 0.0506 for the first image (ROAD combined 0.0089), and 3e-8 where camlab's is 0 for the
    second (its ROAD is negative; the peer's 1e-8 in each denominator). Measured max |difference| 1.0e-7; asserted
    1e-6."""
    model, x, classes, targets, cams, peer_explainer, explainer = peer_case
    monkeypatch.setattr(peer_road.NoisyLinearImputer.__init__, "__defaults__", (0.0, peer_road.neighbors_weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = peer_arcc.ARCC(base_method=peer_explainer)(x, cams, targets, model)
    scores = arcc_scores(model, x, explainer, classes, maps=torch.from_numpy(cams), noise=0.0)
    assert np.abs(peer - scores["arcc"].numpy()).max() < 1e-6
    assert arcc(model, x, explainer, classes, maps=torch.from_numpy(cams), noise=0.0) == \
        pytest.approx(float(peer.mean()), abs=1e-6)
