"""End-to-end agreement with the peers for the methods that were first compared through their pieces: pytorch-grad-cam
1.5.7's Deep Feature Factorization (``DeepFeatureFactorization``: the concept vectors, their scores and the concept
maps that ``run_dff_on_image`` draws) and its KPCA-CAM map; torchcam 0.5.0's Finer-CAM and RefineCAM. Both sides get
the same random-weight torchvision model, layer, targets and input; the [0, 1] maps are compared by their largest
absolute difference, each tolerance about ten times the measured value. Where camlab differs on purpose, the test
rebuilds the peer's result from camlab's own pieces (so the difference is exactly the documented one) and checks that
the difference is really there."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import camlab
from camlab.methods import factorization
from tests.test_methods_peers import no_hooks_left, random_model
from tests.test_methods_peers_more import CASES, TARGETS, TOLERANCES, inputs, largest_difference, peer_map

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("sklearn.decomposition")
torchcam_methods = pytest.importorskip("torchcam.methods")

N_CONCEPTS = 4


# --- Deep Feature Factorization -------------------------------------------------------------------------------------

def scikit_learn_start(data: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's ``NMF(init="random", random_state=0)`` start, as pytorch-grad-cam's DFF calls it:
    :math:`|g|\\sqrt{\\bar X / k}` with ``RandomState(0)``'s normal draws, H (k,n) first, then W (m,k)."""
    matrix = data.numpy()
    generator = np.random.RandomState(0)
    average = np.sqrt(matrix.mean() / k)
    start_h = np.abs(average * generator.standard_normal(size=(k, matrix.shape[1])).astype(matrix.dtype))
    start_w = np.abs(average * generator.standard_normal(size=(matrix.shape[0], k)).astype(matrix.dtype))
    return torch.from_numpy(start_w), torch.from_numpy(start_h)


@pytest.fixture
def nmf_from_scikit_learns_start(monkeypatch):
    """NMF is not unique: camlab's DFF factorises from the peer's initial factors (camlab's own start is a seeded
    ``torch.Generator``), everything else as it is."""
    nmf = factorization.nmf

    def from_the_peers_start(data, n_components, *, seed=0, **options):
        return nmf(data, n_components, init=scikit_learn_start(data, n_components), **options)

    monkeypatch.setattr(factorization, "nmf", from_the_peers_start)
    return nmf


def layer_activations(model, layer: str, x: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return captured[0]


def peer_dff(model, layer: str, x: torch.Tensor, head) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pytorch-grad-cam's concepts (k,K), concept maps (N,k,H,W) and concept scores (k,classes)."""
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization

    with no_hooks_left(model), contextlib.redirect_stdout(io.StringIO()):
        peer = DeepFeatureFactorization(model, dict(model.named_modules())[layer], computation_on_concepts=head)
        concepts, maps, scores = peer(x, N_CONCEPTS)
        peer.activations_and_grads.release()  # the peer never releases its hooks itself
    return torch.from_numpy(concepts).T, torch.from_numpy(np.stack(maps)), torch.from_numpy(scores)


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def rescaled(maps: torch.Tensor) -> torch.Tensor:
    """(N,k,H,W) maps each min-max scaled to [0, 1]."""
    return camlab.scale(maps.flatten(0, 1)).view_as(maps)


def dff_model_and_head() -> tuple[torch.nn.Module, torch.nn.Module]:
    model = random_model("resnet18")
    torch.manual_seed(0)
    return model, torch.nn.Linear(64, 10)  # a head on the 64 channels of resnet18's stem


@pytest.mark.parametrize("layer", ["conv1", "relu"])
def test_dff_equals_pytorch_grad_cams_from_the_same_start(layer, nmf_from_scikit_learns_start):
    """resnet18's stem, two 64x64 images (2048 positions x 64 channels): at ``conv1`` every channel has negative
    values and at ``relu`` every channel reaches 0, so camlab's shift (channels with a negative minimum) and the
    peer's (every channel by its minimum) are the same shift. From the same start the concept vectors and their head
    scores agree to float32 rounding (measured 1.4e-5 and 9e-6 relative), the maps up to their final scaling
    (measured 1.0e-5): the peer scales each 32x32 concept map to [0, 1] and then resizes it, so its maps peak below 1
    (0.67 to 0.79 here), camlab resizes and then scales."""
    model, head = dff_model_and_head()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    activations = layer_activations(model, layer, x)
    assert (activations.transpose(0, 1).flatten(1).amin(1) <= 0).all(), "both libraries must shift alike here"
    ours = camlab.DeepFeatureFactorization(model, layer, n_components=N_CONCEPTS, head=head)(x)
    concepts, maps, scores = peer_dff(model, layer, x, head)
    assert relative_difference(ours.concepts, concepts) <= 1e-4
    assert relative_difference(ours.scores, scores) <= 1e-4
    assert largest_difference(ours.maps, rescaled(maps)) <= 1e-4
    assert float(maps.flatten(2).amax(2).min()) < 0.9 and (ours.maps.flatten(2).amax(2) == 1).all()


def test_dff_differs_from_pytorch_grad_cam_by_the_shift_of_channels_that_never_reach_zero(
        nmf_from_scikit_learns_start):
    """At resnet18's ``layer4`` (after a ReLU) some channels are positive at every position; the peer subtracts their
    minimum too, which changes the matrix it factorises (the paper factorises the activations as they are, as
    camlab does). The peer's concepts and maps are camlab's NMF of the matrix shifted the peer's way (every channel
    by its minimum, added back to the concepts), and camlab's DFF result differs from them."""
    nmf = nmf_from_scikit_learns_start
    model = random_model("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    activations = layer_activations(model, "layer4", x)
    n, channels, height, width = activations.shape
    matrix = activations.transpose(0, 1).reshape(channels, -1)
    minimum = matrix.amin(dim=1, keepdim=True)
    assert (minimum > 0).sum() >= 10
    weights, components = nmf(matrix - minimum, N_CONCEPTS, init=scikit_learn_start(matrix - minimum, N_CONCEPTS))
    peer_way_maps = components.reshape(N_CONCEPTS, n, height, width).transpose(0, 1)
    peer_way_maps = rescaled(camlab.upsample(peer_way_maps, x.shape[2:]))
    concepts, maps, scores = peer_dff(model, "layer4", x, model.fc)
    assert relative_difference((weights + minimum).T, concepts) <= 1e-4
    assert largest_difference(peer_way_maps, rescaled(maps)) <= 1e-4
    ours = camlab.DeepFeatureFactorization(model, "layer4", n_components=N_CONCEPTS, head=model.fc)(x)
    assert relative_difference(ours.concepts, concepts) > 0.1


# --- KPCA-CAM -------------------------------------------------------------------------------------------------------

def peer_projection(activations: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's signed KPCA-CAM projection (scikit-learn's ``KernelPCA``), on the activations as its
    ``KPCA_CAM`` gets them (float32 numpy)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    return torch.from_numpy(get_2d_projection_kernel(activations.numpy().copy()))


@pytest.mark.parametrize("layer", ["layer4", "layer2"])
def test_kpcacam_map_equals_pytorch_grad_cams_up_to_the_sign_rule(layer):
    """resnet18, three 96x96 images. The first kernel principal component has no sign of its own: the peer's makes the
    largest magnitude positive (scikit-learn's ``svd_flip``), camlab's correlates positively with the channel sum.
    Per image the peer's ``KPCA_CAM`` map is camlab's map where the two rules agree and the map of camlab's inverted
    component where they do not (measured 7e-7 either way; at ``layer4`` one image of three agrees, at ``layer2``
    none)."""
    import pytorch_grad_cam as pgc

    model, x = random_model("resnet18"), inputs()
    explainer = camlab.KPCACAM(model, layer=layer, relu=False)
    component = explainer(x, raw=True)
    reference = peer_projection(explainer.forward_pass(x, None).activations)
    ours = camlab.KPCACAM(model, layer=layer)(x)
    theirs = peer_map(pgc.KPCA_CAM, model, layer, x)
    for image in range(len(x)):
        scale = float(reference[image].abs().max())
        if torch.allclose(component[image], reference[image], atol=1e-4 * scale, rtol=0):
            assert largest_difference(ours[image], theirs[image]) <= 1e-5
        else:
            assert torch.allclose(component[image], -reference[image], atol=1e-4 * scale, rtol=0)
            inverted = camlab.scale(camlab.upsample(component[image:image + 1].neg().clamp_min(0), x.shape[2:]))
            assert largest_difference(inverted[0], theirs[image]) <= 1e-5


def test_kpcacam_peer_map_is_float32_rounding_where_positions_differ_little():
    """mobilenet_v3_small's random ``features.12``: the 9 positions' activations differ by about 1% of their size,
    so the sigmoid kernel :math:`\\tanh(\\gamma x^\\top y + 1)` varies by about 1e-6 around tanh(1), where float32
    resolves 1.2e-7: the peer's float32 component is rounding noise (it differs from the same function run in float64
    by about 2x its size, and is the same for all three images). camlab computes in float64 and agrees with the
    peer's float64 result (``test_kpcacam_equals_scikit_learn_kernel_pca_up_to_its_sign``), so no map comparison is
    meaningful here."""
    model, x = random_model("mobilenet_v3_small"), inputs()
    activations = camlab.KPCACAM(model, layer="features.12", relu=False).forward_pass(x, None).activations
    in_float32, in_float64 = peer_projection(activations), peer_projection(activations.double())
    for image in range(len(x)):
        assert relative_difference(in_float32[image].double(), in_float64[image]) > 0.5
    assert torch.equal(in_float32[0], in_float32[1]) and torch.equal(in_float32[1], in_float32[2])


# --- torchcam's Finer-CAM and RefineCAM -------------------------------------------------------------------------------

def torchcam_map(cls, model, layer, x: torch.Tensor, **options) -> torch.Tensor:
    """torchcam's map for TARGETS, upsampled to the input (bilinear, half-pixel centres) and scaled to [0, 1]."""
    with no_hooks_left(model), cls(model, layer, input_shape=tuple(x.shape[1:]), **options) as extractor:
        cam = extractor(class_idx=TARGETS, scores=model(x))[0].detach()
    cam = F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return camlab.scale(cam.clamp_min(0))


@pytest.mark.parametrize("model_name, layer", CASES)
def test_finercam_equals_torchcams_with_one_reference(model_name, layer):
    """One reference class (the logit closest to the target's), comparison strength 0.6 (torchcam's ``gamma``,
    camlab's ``alpha``): both explain :math:`y^c - 0.6\\, y^d` with Grad-CAM (measured 5e-7 on resnet18, 1.6e-5 on
    mobilenet_v3_small, whose random maps span little)."""
    model, x = random_model(model_name), inputs()
    ours = camlab.FinerCAM(model, layer=layer, alpha=0.6, reference_ranks=(1,))(x, target=TARGETS)
    theirs = torchcam_map(torchcam_methods.FinerCAM, model, layer, x, gamma=0.6, num_references=1)
    assert ours.flatten(1).amax(1).sum() >= 1, "degenerate test: all-zero maps"
    assert largest_difference(ours, theirs) <= TOLERANCES[model_name]


def test_finercam_with_several_references_differs_from_torchcam_by_its_weighting():
    """With three references torchcam explains :math:`y^c - \\gamma \\frac13\\sum_d y^d` (the plain mean; its
    docstring's formula), camlab :math:`\\sum_d p_d (y^c - \\alpha y^d) / \\sum_d p_d` with the references' softmax
    probabilities :math:`p_d` (the authors' code, merged into pytorch-grad-cam). torchcam's map is camlab's
    Grad-CAM of the plain-mean score with the same references (measured 5e-7), and differs from camlab's Finer-CAM
    (measured 0.39 at resnet18's ``layer4``)."""
    model, x = random_model("resnet18"), inputs()
    with torch.no_grad():
        logits = model(x)
    distance = (logits - logits[range(len(x)), TARGETS][:, None]).abs()
    distance[range(len(x)), TARGETS] = float("inf")
    references = distance.argsort(dim=1)[:, :3]

    def plain_mean(output):
        return output[range(len(x)), TARGETS] - 0.6 * output.gather(1, references).mean(dim=1)

    theirs = torchcam_map(torchcam_methods.FinerCAM, model, "layer4", x, gamma=0.6, num_references=3)
    assert largest_difference(camlab.GradCAM(model, layer="layer4")(x, target=plain_mean), theirs) <= 1e-5
    ours = camlab.FinerCAM(model, layer="layer4", alpha=0.6)(x, target=TARGETS)
    assert largest_difference(ours, theirs) > 0.1


REFINE_LAYERS = ["layer2", "layer3", "layer4"]


@pytest.mark.parametrize("method, base", [("gradcam", "GradCAM"), ("layercam", "LayerCAM")])
def test_refinecam_differs_from_torchcam_by_where_the_maps_are_multiplied(method, base):
    """resnet18, ``layer2`` to ``layer4`` (12x12, 6x6, 3x3 at 96x96). torchcam scales each layer's map at its own
    resolution, resizes them to the finest layer's grid (12x12), multiplies and scales there (the user upsamples the
    product); camlab, as pytorch-grad-cam, upsamples each map to the input, scales and multiplies there. torchcam's
    map is that recipe applied to camlab's own layer maps (measured 1.2e-6: the base maps are the same), and camlab's
    RefineCAM differs from it (measured 0.19 with Grad-CAM, 0.25 with LayerCAM): the product of upsampled maps is not
    the upsampled product. torchcam's default base, Grad-CAM++, differs further (its alpha is g squared, pinned in
    ``test_ch07_peer_claims.py``)."""
    model, x = random_model("resnet18"), inputs()
    theirs = torchcam_map(torchcam_methods.RefineCAM, model, REFINE_LAYERS, x,
                          base_method=getattr(torchcam_methods, base))
    layer_maps = [camlab.build(method, model, layer)(x, target=TARGETS, raw=True) for layer in REFINE_LAYERS]
    grid = tuple(max(sizes) for sizes in zip(*(maps.shape[1:] for maps in layer_maps)))
    product = torch.stack([F.interpolate(camlab.scale(maps)[:, None], grid, mode="bilinear", align_corners=False)[:, 0]
                           for maps in layer_maps]).prod(dim=0)
    torchcam_way = F.interpolate(camlab.scale(product)[:, None], x.shape[2:], mode="bilinear", align_corners=False)
    assert largest_difference(camlab.scale(torchcam_way[:, 0]), theirs) <= 1e-5
    ours = camlab.RefineCAM(model, REFINE_LAYERS, method=method)(x, target=TARGETS)
    assert largest_difference(ours, theirs) > 0.05
