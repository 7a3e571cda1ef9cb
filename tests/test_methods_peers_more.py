"""Agreement with pytorch-grad-cam 1.5.7 for Grad-CAM element-wise, FEM, ShapleyCAM, Finer-CAM, Eigen-Grad-CAM,
KPCA-CAM, ``eigen_smooth`` and ``aug_smooth`` on random-weight torchvision models (resnet18 at layer4 and at the inner
layer2, mobilenet_v3_small), batch of 3, one target per image, 96x96 inputs; each peer runs on the shared model with
no hooks left behind. Where camlab differs on purpose (the sign of a principal component) the tests pin the
difference. The [0,1] maps are compared by their largest absolute difference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import camlab
from tests.test_methods_peers import no_hooks_left, random_model

pytest.importorskip("pytorch_grad_cam")

CASES = [("resnet18", "layer4"), ("resnet18", "layer2"), ("mobilenet_v3_small", "features.12")]
TARGETS = [1, 4, 7]
#: max |difference| of the [0,1] maps, per model. resnet18: measured <= 7e-6 (float32 maths, cv2's resize).
#: mobilenet_v3_small's random last layer gives raw maps that span only ~7e-6 (Grad-CAM element-wise, Finer-CAM) to
#: 1e-3 (FEM) around their level, so float32 rounding in either library is magnified by the min-max scaling:
#: measured up to 2.1e-4 (element-wise), 1.5e-5 (FEM), 1.2e-5 (Finer-CAM)
TOLERANCES = {"resnet18": 1e-5, "mobilenet_v3_small": 5e-4}
TOLERANCE = TOLERANCES["resnet18"]


def inputs() -> torch.Tensor:
    return torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))


def peer_map(cls, model, layer: str, x: torch.Tensor, targets="classes", **call) -> torch.Tensor:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if targets == "classes":
        targets = [ClassifierOutputTarget(t) for t in TARGETS]
    with no_hooks_left(model), cls(model=model, target_layers=[dict(model.named_modules())[layer]]) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=targets, **call))


def largest_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape
    return float((ours - theirs).abs().max())


@pytest.mark.parametrize("model_name, layer", CASES)
@pytest.mark.parametrize("method, peer", [("gradcam_elementwise", "GradCAMElementWise"), ("fem", "FEM"),
                                          ("shapleycam", "ShapleyCAM")])
def test_same_maps_as_pytorch_grad_cam(model_name, layer, method, peer):
    import pytorch_grad_cam as pgc

    model, x = random_model(model_name), inputs()
    ours = camlab.build(method, model, layer)(x, target=TARGETS)
    theirs = peer_map(getattr(pgc, peer), model, layer, x)
    assert ours.flatten(1).amax(1).sum() >= 1, "degenerate test: all-zero maps"
    assert largest_difference(ours, theirs) <= TOLERANCES[model_name]


def test_shapleycam_hessian_term_matches_the_peer_on_a_softmax_target():
    """On a ReLU network with a logit target H A = 0 (ShapleyCAM = Grad-CAM); the softmax probability is curved, so
    the Hessian-vector product changes the weights: both libraries agree, and differ from Grad-CAM."""
    import pytorch_grad_cam as pgc

    model, x = random_model("resnet18"), inputs()
    ours_targets = [lambda output, t=t: torch.softmax(output, dim=-1)[:, t] for t in TARGETS]
    peer_targets = [lambda output, t=t: torch.softmax(output, dim=-1)[t] for t in TARGETS]
    ours = camlab.ShapleyCAM(model, layer="layer2")(x, target=ours_targets)
    theirs = peer_map(pgc.ShapleyCAM, model, "layer2", x, targets=peer_targets)
    gradcam = camlab.GradCAM(model, layer="layer2")(x, target=ours_targets)
    assert largest_difference(ours, theirs) <= TOLERANCE
    assert largest_difference(ours, gradcam) > 1e-2


def test_shapleycam_says_when_torch_has_no_second_derivative():
    """mobilenet_v3_small's squeeze-excitation uses hardsigmoid, whose backward torch cannot differentiate: the
    peer fails with torch's raw error; camlab says what it needs and what to do."""
    model, x = random_model("mobilenet_v3_small"), inputs()
    with pytest.raises(RuntimeError, match="needs second derivatives of the score.*choose a later layer"):
        camlab.ShapleyCAM(model, layer="features.8")(x, target=TARGETS)


@pytest.mark.parametrize("model_name, layer", CASES)
def test_finercam_same_maps_as_pytorch_grad_cam(model_name, layer):
    """target None: each image's top-1 class against the 2nd to 4th closest logits, in both."""
    import pytorch_grad_cam as pgc

    model, x = random_model(model_name), inputs()
    ours = camlab.FinerCAM(model, layer=layer)(x)
    theirs = peer_map(pgc.FinerCAM, model, layer, x, targets=None)
    assert ours.flatten(1).amax(1).sum() >= 1, "degenerate test: all-zero maps"
    assert largest_difference(ours, theirs) <= TOLERANCES[model_name]


@pytest.mark.parametrize("model_name, layer", CASES)
@pytest.mark.parametrize("method, peer", [("gradcam", "GradCAM"), ("hirescam", "HiResCAM")])
def test_aug_smooth_same_maps_as_pytorch_grad_cam_up_to_the_final_scaling(model_name, layer, method, peer):
    """The peer returns the mean of its six [0,1] maps as it is; camlab scales that mean to [0,1] again."""
    import pytorch_grad_cam as pgc

    model, x = random_model(model_name), inputs()
    ours = camlab.build(method, model, layer, aug_smooth=True)(x, target=TARGETS)
    theirs = peer_map(getattr(pgc, peer), model, layer, x, aug_smooth=True)
    assert theirs.flatten(1).amax(1).max() <= 1
    assert largest_difference(ours, camlab.scale(theirs)) <= TOLERANCES[model_name]


def _same_up_to_sign(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float) -> list[int]:
    """Per image, +1 or -1: the sign s with ours = s * theirs (to ``tolerance`` of the largest magnitude)."""
    signs = []
    for mine, peer in zip(ours, theirs):
        atol = tolerance * float(peer.abs().max())
        matches = [s for s in (1, -1) if torch.allclose(mine, s * peer, atol=atol, rtol=0)]
        assert matches, float(torch.minimum((mine - peer).abs().max(), (mine + peer).abs().max()))
        signs.append(matches[0])
    return signs


@pytest.mark.parametrize("model_name, layer", CASES)
@pytest.mark.parametrize("method, smoothed, peer", [
    ("eigengradcam", {}, "EigenGradCAM"),
    ("gradcam", {"eigen_smooth": True}, "GradCAM"),
    ("layercam", {"eigen_smooth": True}, "LayerCAM"),
])
def test_principal_component_equals_the_peers_up_to_its_sign(model_name, layer, method, smoothed, peer):
    """The projection (signed, at the layer) is pytorch-grad-cam's ``get_2d_projection`` of the same weighted
    activations up to sign; where the signs agree the [0,1] maps agree, where they differ the peer's map is the
    ReLU of the inverted projection (camlab's sign follows the unsmoothed map, the peer's is numpy's)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, x = random_model(model_name), inputs()
    explainer = camlab.build(method, model, layer, relu=False, **smoothed)
    forward = explainer.forward_pass(x, TARGETS)
    weighted = camlab.methods.base.weighted_activations(explainer.weights(forward), forward.activations)
    reference = torch.from_numpy(get_2d_projection(weighted.numpy()))
    ours_raw = explainer(x, target=TARGETS, raw=True)
    signs = _same_up_to_sign(ours_raw, reference, 1e-4)
    ours = camlab.build(method, model, layer, **smoothed)(x, target=TARGETS)
    theirs = peer_map(getattr(pgc, peer), model, layer, x, **({"eigen_smooth": True} if smoothed else {}))
    for image, sign in enumerate(signs):
        if sign == 1:
            assert largest_difference(ours[image], theirs[image]) <= TOLERANCES[model_name]
        else:
            inverted = camlab.scale(camlab.upsample(ours_raw[image:image + 1].neg().clamp_min(0), x.shape[2:]))
            assert largest_difference(inverted[0], theirs[image]) <= TOLERANCES[model_name]


@pytest.mark.parametrize("model_name, layer", CASES)
def test_kpcacam_equals_scikit_learn_kernel_pca_up_to_its_sign(model_name, layer):
    """pytorch-grad-cam's ``get_2d_projection_kernel`` (scikit-learn's ``KernelPCA``, sigmoid kernel) on the same
    activations in float64 gives camlab's signed map up to sign; the peer's sign makes the largest magnitude
    positive (``svd_flip``), camlab's follows the channel sum, so some images come out inverted in the peer."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    model, x = random_model(model_name), inputs()
    explainer = camlab.KPCACAM(model, layer=layer, relu=False)
    activations = explainer.forward_pass(x, None).activations
    reference = torch.from_numpy(get_2d_projection_kernel(activations.double().numpy()).astype(np.float64))
    ours = explainer(x, raw=True).double()
    _same_up_to_sign(ours, reference, 1e-4)
    channel_sum = activations.sum(dim=1).double()
    assert ((ours * channel_sum).sum(dim=(1, 2)) >= 0).all()
    assert all(peer.abs().max() == peer.max() for peer in reference)


def test_sobel_baseline_matches_pytorch_grad_cam_where_nothing_saturates():
    """A low-contrast photo (pixels in [0, 0.2], so no derivative exceeds 255 and the peer's ``convertScaleAbs``
    clips nothing), quantised to uint8 for the peer: the maps agree to the peer's uint8 rounding (grey level, each
    derivative and the average rounded: at most 4 units of 255) relative to its peak."""
    from pytorch_grad_cam.sobel_cam import sobel_cam

    picture = camlab.load_image("cat")
    pixels = torch.tensor(np.array(picture.resize((64, 64))), dtype=torch.float64).permute(2, 0, 1)[None]
    pixels = torch.round(pixels * 0.2) / 255
    theirs = torch.from_numpy(sobel_cam(np.uint8(np.round(pixels[0].permute(1, 2, 0).numpy() * 255)))).double()
    ours = camlab.SobelCAM(torch.nn.Identity())(pixels.float()).double()
    assert theirs.max() < 255
    assert float((ours - theirs / theirs.max()).abs().max()) <= 4 / float(theirs.max())
