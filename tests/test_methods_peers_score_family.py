"""Agreement with the peers for SS-CAM, IS-CAM (torchcam 0.5), FullGrad, Seg-Eigen-CAM, RefineCAM, SESS and Deep
Feature Factorization's NMF (pytorch-grad-cam 1.5.7, scikit-learn) on random-weight torchvision resnet18, at layer4
and at an inner layer, same layer and target; maps compared in [0, 1] (max |difference|). Each peer runs on its own
deep copy of the model. Tolerances are about twice the measured difference; each test's docstring says where the
difference comes from."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import camlab
from tests.test_methods_peers import random_model

pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
sklearn_decomposition = pytest.importorskip("sklearn.decomposition")

TARGETS = [1, 4]


def inputs(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def torchcam_map(cls, layer: str, x: torch.Tensor, target: int, **options) -> torch.Tensor:
    model = copy.deepcopy(random_model("resnet18"))
    with cls(model, layer, batch_size=64, input_shape=tuple(x.shape[1:]), **options) as extractor:
        with torch.no_grad():
            model(x)
        cam = extractor(class_idx=target)[0]
    cam = F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return camlab.maps.scale(cam.clamp_min(0))


def pgc_map(cls, layers: list[str], x: torch.Tensor, **options) -> torch.Tensor:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(random_model("resnet18"))
    modules = dict(model.named_modules())
    cam = cls(model=model, target_layers=[modules[name] for name in layers], **options)
    return torch.from_numpy(np.asarray(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])))


@pytest.mark.parametrize("method, layer, size, n_samples, tolerance", [
    ("sscam", "layer4", 64, 1, 1e-4), ("sscam", "layer2", 32, 1, 1e-2),
    ("iscam", "layer4", 64, 1, 1e-4), ("iscam", "layer2", 32, 2, 1e-2),
])
def test_score_variants_match_torchcam(method, layer, size, n_samples, tolerance):
    """torchcam follows the papers with Score-CAM's paper weighting and, for SS-CAM, the same noise draw (one
    (1,K,H,W) normal tensor per sample: ``torch.manual_seed(seed)`` for torchcam, a Generator seeded with ``seed`` for
    camlab). The difference: torchcam min-max normalises each channel at the layer's resolution before upsampling,
    camlab after (as Score-CAM's paper). At layer4 (2x2, upsampling keeps the extremes) they agree to float error
    (measured 2e-6); at layer2 (4x4 -> 32x32) the masks differ by a few percent at their extremes (measured ~5e-3).
    Constant channels: camlab gives them weight 0, torchcam a softmax share; an all-zero channel adds nothing to the
    map either way, and the softmax's normalisation disappears in the scaling. Few samples keep the test fast: one
    noisy draw already pins the noise, two steps pin IS-CAM's cumulative coefficients (1/2, 3/2)."""
    x = inputs(size, n=1)
    options = {"sscam": {"sigma": 2.0, "seed": 5}, "iscam": {}}[method]
    ours = camlab.build(method, random_model("resnet18"), layer, weighting="paper", n_samples=n_samples,
                        progress=False, **options)(x, target=TARGETS[1])
    torch.manual_seed(5)
    peer = {"sscam": (torchcam_methods.SSCAM, {"num_samples": n_samples, "std": 2.0}),
            "iscam": (torchcam_methods.ISCAM, {"num_samples": n_samples})}[method]
    theirs = torchcam_map(peer[0], layer, x, TARGETS[1], **peer[1])
    assert (ours - theirs).abs().max() < tolerance


def test_fullgrad_matches_pytorch_grad_cam():
    """Same bias sites (resnet18: every BatchNorm2d; its convolutions have no bias) and per-channel scaling of the
    bias-gradients. The difference is the input-gradient term: pytorch-grad-cam scales each colour channel on its
    own, camlab once over the three (the paper's single psi; the authors' code), plus pytorch-grad-cam's 1e-7 in the
    denominators. Measured 6e-3 at 64x64."""
    from pytorch_grad_cam import FullGrad

    x = inputs(64)
    ours = camlab.FullGrad(random_model("resnet18"))(x, target=TARGETS)
    theirs = pgc_map(FullGrad, [], x)
    assert (ours - theirs).abs().max() < 1.5e-2


@pytest.mark.parametrize("layer", ["layer4", "layer2"])
def test_seg_eigen_cam_matches_pytorch_grad_cam(layer):
    """Same formula (|gradient| . activations, centred SVD, sign rule); float32 numpy vs float64 torch."""
    from pytorch_grad_cam import SegEigenCAM

    x = inputs(64)
    ours = camlab.SegEigenCAM(random_model("resnet18"), layer)(x, target=TARGETS)
    theirs = pgc_map(SegEigenCAM, [layer], x)
    assert (ours - theirs).abs().max() < 1e-5


def test_refinecam_matches_pytorch_grad_cam():
    """Same product of Grad-CAM++ maps at layer2, layer3, layer4. pytorch-grad-cam scales each layer's map and then
    resizes it (cv2), camlab upsamples and then scales; the product of three maps adds those differences up
    (measured 1.1e-2)."""
    from pytorch_grad_cam import RefineCAM

    layers = ["layer2", "layer3", "layer4"]
    x = inputs(64)
    ours = camlab.RefineCAM(random_model("resnet18"), layers)(x, target=TARGETS)
    theirs = pgc_map(RefineCAM, layers, x)
    assert (ours - theirs).abs().max() < 2.5e-2


@pytest.mark.parametrize("layer", ["layer4", "layer2"])
def test_sess_matches_pytorch_grad_cam(layer):
    """Same scales (3 here, 64, 82, 100 px), windows, weights, mean fusion and 11x11 Gaussian smoothing around
    Grad-CAM; measured 1.4e-6."""
    from pytorch_grad_cam.sess import SESS

    x = inputs(64)
    ours = camlab.SESS(random_model("resnet18"), layer, num_scales=3)(x, target=TARGETS)
    theirs = pgc_map(SESS, [layer], x, num_scales=3)
    assert (ours - theirs).abs().max() < 1e-4


def layer_matrix(layer: str) -> torch.Tensor:
    """resnet18's layer activations for two 64x64 images as DFF factorises them: channels x positions, float64."""
    captured = []
    model = random_model("resnet18")
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(inputs(64))
    handle.remove()
    return captured[0].transpose(0, 1).reshape(captured[0].shape[1], -1).double()


@pytest.mark.parametrize("layer", ["layer4", "layer2"])
def test_nmf_matches_scikit_learn_from_a_shared_initialisation(layer):
    """NMF is not unique, so the factors are compared from the same initial factors (scikit-learn's
    ``init="custom"``): camlab's coordinate descent and scikit-learn's ``solver="cd"`` take the same steps and stop
    at the same iteration (factors equal to 1e-8 relative)."""
    data = layer_matrix(layer)
    k = 5
    generator = torch.Generator().manual_seed(1)
    average = torch.sqrt(data.mean() / k)
    start_w = average * torch.randn(data.shape[0], k, generator=generator, dtype=torch.float64).abs()
    start_h = average * torch.randn(k, data.shape[1], generator=generator, dtype=torch.float64).abs()
    ours_w, ours_h = camlab.nmf(data, k, init=(start_w, start_h))
    peer = sklearn_decomposition.NMF(n_components=k, init="custom", solver="cd", max_iter=200, tol=1e-4)
    theirs_w = peer.fit_transform(data.numpy(), W=start_w.numpy().copy(), H=start_h.numpy().copy())
    theirs_h = peer.components_
    assert np.abs(ours_w.numpy() - theirs_w).max() <= 1e-8 * np.abs(theirs_w).max()
    assert np.abs(ours_h.numpy() - theirs_h).max() <= 1e-8 * np.abs(theirs_h).max()


def test_nmf_reconstruction_error_matches_scikit_learn_from_random_starts():
    """From each library's own seeded random start (as pytorch-grad-cam's DFF calls it: ``init="random"``) the
    relative reconstruction errors agree within 5% (measured under 1%)."""
    data = layer_matrix("layer3")
    ours_w, ours_h = camlab.nmf(data, 5, seed=0)
    ours = float(torch.linalg.norm(data - ours_w @ ours_h) / torch.linalg.norm(data))
    peer = sklearn_decomposition.NMF(n_components=5, init="random", random_state=0, max_iter=200)
    theirs_w = peer.fit_transform(data.numpy())
    theirs = float(np.linalg.norm(data.numpy() - theirs_w @ peer.components_) / np.linalg.norm(data.numpy()))
    assert abs(ours - theirs) <= 0.05 * theirs
