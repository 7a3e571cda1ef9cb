"""Score-CAM's two published forms (``weighting="probability"``, the authors' code; ``"paper"``, Algorithm 1 of the
CVPRW paper), worked by hand on a net whose layer is the input itself, checked against a one-mask-at-a-time
reference (through the private BatchNorm-folded copy) and against the peers that implement the paper's form."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camlab

# Layer = the input (1, 2 channels, 1x2): channel 0 = [0, 2] -> mask H0 = [0, 1]; channel 1 = [4, 0] -> H1 = [1, 0].
# Flattened masked inputs [c0p0, c0p1, c1p0, c1p1]: x*H0 = [0, 2, 0, 0], x*H1 = [0, 0, 4, 0].
X = torch.tensor([[[[0.0, 2.0]], [[4.0, 0.0]]]])


def identity_layer_net(outputs: int = 2, bias: float = 0.0) -> nn.Module:
    """Class 0's row (0, ln3/2, 0, 0) gives logit ln 3 on x*H0 and 0 on x*H1 (plus ``bias``); other rows 0."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(4, outputs))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
        model[2].weight[0, 1] = math.log(3) / 2
        model[2].bias[0] = bias
    return model.eval()


def scorecam(model, weighting, **options):
    return camlab.ScoreCAM(model, layer="0", progress=False, weighting=weighting, **options)


def test_probability_form_by_hand():
    """Logits (ln3, 0) on x*H0 and (0, 0) on x*H1: class-0 probabilities 3/4 and 1/2.
    Map = ReLU(3/4 [0, 2] + 1/2 [4, 0]) = [2, 1.5]."""
    heat = scorecam(identity_layer_net(), "probability")(X, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[2.0, 1.5]]))


def test_paper_form_by_hand():
    """S = (ln3 - f(X_b), 0 - f(X_b)); softmax over the two channels = (3/4, 1/4) whatever f(X_b) is.
    Map = ReLU(3/4 [0, 2] + 1/4 [4, 0]) = [1, 1.5]."""
    heat = scorecam(identity_layer_net(), "paper")(X, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[1.0, 1.5]]))


def test_paper_form_does_not_depend_on_the_baseline_but_the_probability_form_does():
    """A bias b on the target logit is exactly the black baseline's score f(0) = b; it shifts every S_k by the same
    amount, which the softmax over channels removes. The probability form changes: sigma-like weights move."""
    shifted = identity_layer_net(bias=2.0)
    paper = scorecam(shifted, "paper")(X, target=0, raw=True)
    assert torch.allclose(paper[0], torch.tensor([[1.0, 1.5]]))
    probability = scorecam(shifted, "probability")(X, target=0, raw=True)
    assert not torch.allclose(probability[0], torch.tensor([[2.0, 1.5]]))


def test_single_logit_model_uses_the_sigmoid():
    """One output: sigma(ln 3) = 3/4, sigma(0) = 1/2, the same weights as the two-class softmax above, so the same
    map [2, 1.5]; a softmax over one logit would give weight 1 to every channel: [4, 2]."""
    heat = scorecam(identity_layer_net(outputs=1), "probability")(X, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[2.0, 1.5]]))
    paper = scorecam(identity_layer_net(outputs=1), "paper")(X, target=0, raw=True)
    assert torch.allclose(paper[0], torch.tensor([[1.0, 1.5]]))


def test_callable_target_is_the_weight_or_the_paper_score():
    """target = 2 * logit_0: probability form uses (2 ln3, 0) as weights; paper form softmax -> (9/10, 1/10)."""
    model = identity_layer_net()
    target = lambda logits: 2 * logits[:, 0]  # noqa: E731
    weights = scorecam(model, "probability")(X, target=target, raw=True)
    assert torch.allclose(weights[0], torch.tensor([[0.0, 4 * math.log(3)]]))
    paper = scorecam(model, "paper")(X, target=target, raw=True)
    assert torch.allclose(paper[0], 0.9 * X[0, 0] + 0.1 * X[0, 1])


def test_constant_and_duplicate_channels_in_the_paper_softmax():
    """Channels: [0, 2], the same again, and a constant [1, 1]. The constant one has no mask: weight 0, outside the
    softmax. The duplicate counts twice: softmax over (ln3, ln3) = (1/2, 1/2). Map = 1/2 [0,2] + 1/2 [0,2] = [0, 2]."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(6, 1, bias=False)).eval()
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0, 1] = model[2].weight[0, 3] = math.log(3) / 4
    x = torch.tensor([[[[0.0, 2.0]], [[0.0, 2.0]], [[1.0, 1.0]]]])
    heat = scorecam(model, "paper")(x, target=0, raw=True)
    assert torch.allclose(heat[0], torch.tensor([[0.0, 2.0]]))


def test_unknown_weighting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'probability', 'paper'"):
        camlab.ScoreCAM(identity_layer_net(), layer="0", weighting="softmax")


class ConvBNNet(nn.Module):
    """conv-BN-ReLU-conv-BN (the layer, 8x8, no ReLU so no channel is constant) -> GAP -> linear (5 classes)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                                      nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.features(x).relu().mean((2, 3)))


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    model = ConvBNNet()
    with torch.no_grad():
        for norm in (model.features[1], model.features[4]):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
        model.features[4].bias.add_(1.0)  # mostly positive activations: maps that are not all zero
    return model.eval()


def reference(model, x, layer, targets, weighting):
    """One mask at a time through the original model (no folding, no batching, no deduplication)."""
    captured = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    maps = []
    with torch.no_grad():
        for image, activation, target in zip(x, captured[0], targets):
            channel_scores, channels = [], []
            for channel in activation:
                up = F.interpolate(channel[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
                if up.max() == up.min():
                    continue
                logits = model(image[None] * (up - up.min()) / (up.max() - up.min()))[0]
                channel_scores.append(logits.softmax(0)[target] if weighting == "probability" else logits[target])
                channels.append(channel)
            weights = torch.stack(channel_scores)
            if weighting == "paper":
                weights = weights.softmax(0)
            maps.append(F.relu(torch.einsum("k,khw->hw", weights, torch.stack(channels))))
    return torch.stack(maps)


@pytest.mark.parametrize("weighting", ["probability", "paper"])
def test_batched_folded_run_matches_the_one_mask_at_a_time_reference(weighting):
    model = conv_bn_net()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    ours = camlab.ScoreCAM(model, layer="features.3", progress=False, weighting=weighting)(x, target=[1, 4], raw=True)
    expected = reference(model, x, "features.3", [1, 4], weighting)
    assert (expected.flatten(1).amax(1) > 0).all()
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_paper_form_matches_pytorch_grad_cam_where_their_masks_agree():
    """Layer at the input's resolution (no upsampling, so align_corners does not matter) and no constant channel:
    pytorch-grad-cam's ScoreCAM (softmax over channels of raw logits) is the paper form; its 1e-8 and 1e-7 guards
    leave ~1e-6 differences on the [0, 1] map."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = conv_bn_net()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = camlab.ScoreCAM(model, layer="features.4", progress=False, weighting="paper")(x, target=2)
    with pgc.ScoreCAM(model=model, target_layers=[model.features[4]]) as cam:
        cam.batch_size = 64
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(2)]))
    assert ours.amax() == 1 and (ours > 0.1).sum() > 10
    assert torch.allclose(ours, theirs, atol=1e-5)
    probability = camlab.ScoreCAM(model, layer="features.4", progress=False)(x, target=2)
    assert (probability - theirs).abs().max() > 1e-4  # the other form is measurably different (~1e-3 here)


def test_paper_form_matches_torchcam_whose_unmasked_score_cancels():
    """torchcam subtracts the unmasked input's logit before its softmax over channels: the same shift invariance
    makes it the paper form (raw maps at the layer's 8x8 resolution; torchcam's 1e-12 guard is negligible)."""
    methods = pytest.importorskip("torchcam.methods")
    model = conv_bn_net()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    ours = camlab.ScoreCAM(model, layer="features.4", progress=False, weighting="paper")(x, target=3, raw=True)
    with methods.ScoreCAM(model, target_layer="features.4", input_shape=(3, 8, 8)) as extractor:
        with torch.no_grad():
            theirs = extractor(3, model(x), normalized=False)[0]
    assert (ours > 0.1 * ours.max()).sum() > 10
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_masked_logits_by_hand_are_the_raw_material_of_both_forms():
    """On the hand-worked net: the masked inputs x*H0, x*H1 give logits (ln 3, 0) and (0, 0); both forms' weights for
    class 0 follow from them (probability: 3/4 and 1/2; paper: softmax(ln 3, 0) = 3/4, 1/4)."""
    model = identity_layer_net()
    score_cam = camlab.ScoreCAM(model, layer="0", progress=False)
    logits, varying = score_cam.masked_logits(X)
    expected = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]]])
    assert varying.tolist() == [[True, True]]
    assert torch.allclose(logits, expected, atol=1e-6)
    assert torch.allclose(logits.softmax(-1)[..., 0], torch.tensor([[0.75, 0.5]]), atol=1e-6)
    assert torch.allclose(logits[..., 0].softmax(-1), torch.tensor([[0.75, 0.25]]), atol=1e-6)


@pytest.mark.parametrize("weighting", ["probability", "paper"])
def test_masked_logits_give_the_weights_of_either_form_on_a_lab_model(weighting):
    lab = camlab.load_model("lab_gap")
    x = camlab.preprocess(camlab.lab.make_scenes(3, seed=5).images, lab)
    score_cam = camlab.ScoreCAM(lab, layer="features", progress=False, weighting=weighting)
    weights = score_cam.weights(score_cam.forward_pass(x, None))
    logits, varying = score_cam.masked_logits(x)
    classes = lab(x).argmax(1)[:, None, None].expand(-1, logits.shape[1], 1)
    if weighting == "paper":
        chosen = logits.gather(2, classes)[..., 0].masked_fill(~varying, -torch.inf).softmax(dim=1)
    else:
        chosen = logits.softmax(-1).gather(2, classes)[..., 0]
    assert torch.allclose(torch.where(varying, chosen, 0.0), weights, atol=1e-5)
