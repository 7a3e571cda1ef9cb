"""Specification of LeGrad (Bousselham et al., arXiv 2404.03214): per block l, the positive part of
d s^l / d A^l (s^l: the final norm, pooling and head applied to block l's output), mean over heads and query
tokens, prefix keys dropped, mean over the selected blocks, then upsampled and min-max scaled."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from camlab.legrad import LeGrad


def hand_set_vit(depth: int = 1) -> VisionTransformer:
    """``depth`` identical blocks, embedding width 2, one head, a 16x16 input cut into 8x8 patches: T = 1 + 4 tokens.

    Everything is zero except: patch token j enters as its position embedding p_1..p_4 = (1, 0), (0, 1), (-1, 0),
    (2, 2) (the class token enters as (0, 0)); the v rows of every qkv and every output projection are the identity;
    the head is the identity, w_0 = (1, 0), w_1 = (0, 1). The q and k rows are zero, so every attention is uniform,
    A = J / 5; the MLPs are zero and the LayerNorms (norm1 and the final norm) are identities. So a block maps
    tokens z to z_i + O_i with O_i = sum_j A[i, j] v_j = mean_j z_j (the same for every token i), and the score of
    a block's output z is s = w_c . z_0 (the class token).

    Block 1: s^1 = w_c . (z_0 + sum_j A[0, j] v_j), so d s^1 / d A[0, j] = w_c . p_j (v_0 = 0) and d s^1 / d A[i, j] = 0
    for the queries i > 0 (only the class token is read). ReLU, mean over the one head and the 5 queries:
    E^1_j = (w_c . p_j)^+ / 5. Class 0: w_0 . p_j = 1, 0, -1, 2 -> [0.2, 0, 0, 0.4]; class 1: 0, 1, 0, 2 ->
    [0, 0.2, 0, 0.4].

    Block 2 (depth 2): its input is z_j = p_j + m with m = mean_j p_j = (0.4, 0.6) for the patches, z_0 = m; its score
    s^2 (the model's logit) gives d s^2 / d A[0, j] = w_c . z_j. Class 0: 1.4, 0.4, -0.6, 2.4 -> E^2 = [0.28, 0.08,
    0, 0.48]; class 1: 0.6, 1.6, 0.6, 2.6 -> E^2 = [0.12, 0.32, 0.12, 0.52]. Block 1 keeps E^1 above, because s^1 is
    read at block 1's own output (were it the final score, block 1's gradient would also flow through block 2).
    Both blocks: E = (E^1 + E^2) / 2: class 0 [0.24, 0.04, 0, 0.44], class 1 [0.06, 0.26, 0.06, 0.46]."""
    with torch.random.fork_rng(devices=[]):
        vit = VisionTransformer(img_size=16, patch_size=8, num_classes=2, embed_dim=2, depth=depth, num_heads=1,
                                mlp_ratio=1.0)
    vit.norm = nn.Identity()
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.zero_()
        vit.pos_embed[0, 1:] = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [2, 2]])
        vit.head.weight.copy_(torch.eye(2))
        for block in vit.blocks:
            block.norm1 = nn.Identity()
            block.attn.qkv.weight[4:] = torch.eye(2)       # v = z
            block.attn.proj.weight.copy_(torch.eye(2))
    return vit.eval()


def random_vit(depth: int = 2, seed: int = 0, **options) -> VisionTransformer:
    """timm ViT, 16x16 input, 8x8 patches: a 2x2 grid, T = 5 tokens; random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = VisionTransformer(img_size=16, patch_size=8, num_classes=3, embed_dim=8, depth=depth, num_heads=2,
                                mlp_ratio=2.0, **options)
    return vit.eval()


def torchvision_vit(seed: int = 0) -> nn.Module:
    """torchvision's VisionTransformer, 32x32 input, 8x8 patches (a 4x4 grid), 2 blocks of width 16, 2 heads, 5
    classes; random weights, with the head (which torchvision initialises to zero) drawn at random too."""
    from torchvision.models import VisionTransformer as TorchvisionViT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = TorchvisionViT(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=5)
        nn.init.normal_(vit.heads.head.weight)
    return vit.eval()


def images(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_one_hand_set_block_gives_the_map_derived_on_paper_for_each_class():
    vit, x = hand_set_vit(), images(2)
    for target, expected in [(0, [[0.2, 0.0], [0.0, 0.4]]), (1, [[0.0, 0.2], [0.0, 0.4]])]:
        torch.testing.assert_close(LeGrad(vit)(x, target=target, raw=True), torch.tensor(expected).expand(2, 2, 2))


def test_each_block_is_scored_at_its_own_output_and_block_maps_are_averaged():
    vit, x = hand_set_vit(depth=2), images(2)
    torch.testing.assert_close(LeGrad(vit)(x, target=0, raw=True)[0], torch.tensor([[0.24, 0.04], [0.0, 0.44]]))
    torch.testing.assert_close(LeGrad(vit)(x, target=1, raw=True)[0], torch.tensor([[0.06, 0.26], [0.06, 0.46]]))
    torch.testing.assert_close(LeGrad(vit, layers="blocks.1")(x, target=0, raw=True)[0],
                               torch.tensor([[0.28, 0.08], [0.0, 0.48]]))
    torch.testing.assert_close(LeGrad(vit, layers=[vit.blocks[0]])(x, target=1, raw=True)[0],
                               torch.tensor([[0.0, 0.2], [0.0, 0.4]]))


@pytest.mark.parametrize("make, x", [(random_vit, images()), (torchvision_vit, images(size=32)),
                                     (lambda: random_vit(global_pool="avg", class_token=False), images())])
def test_the_last_blocks_score_is_the_models_own_logit(make, x):
    """Class token (timm, torchvision) or the model's own pooling (timm's global_pool='avg' without a class token,
    where every token is a patch: the map then has all 4 patches)."""
    model = make()
    side = x.shape[-1] // 8
    assert LeGrad(model)(x, target=0, raw=True).shape == (len(x), side, side)
    explainer = LeGrad(model)
    last = explainer.blocks[-1][1]
    kept = []
    handle = last.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        output = model(x)
    finally:
        handle.remove()
    torch.testing.assert_close(explainer.vit.project(kept[0]), output)


def _from_scratch(vit: VisionTransformer, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """The paper's recipe written out on timm's unfused attention path: the probabilities taken where timm applies
    attention dropout, each block's output scored by norm + head, d s^l / d A^l by autograd, ReLU, means."""
    probabilities, outputs, handles = [], [], []
    for block in vit.blocks:
        block.attn.fused_attn = False
        handles.append(block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: probabilities.append(out)))
        handles.append(block.register_forward_hook(lambda _m, _i, out: outputs.append(out)))
    try:
        vit(x)
        maps = []
        for attention, tokens in zip(probabilities, outputs):
            score = vit.forward_head(vit.norm(tokens)).gather(1, torch.tensor(classes)[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, attention, retain_graph=True)
            maps.append(gradient.clamp(min=0).mean(dim=(1, 2))[:, vit.num_prefix_tokens:])
    finally:
        for handle in handles:
            handle.remove()
        for block in vit.blocks:
            block.attn.fused_attn = True
    side = int(maps[0].shape[1] ** 0.5)
    return torch.stack(maps).mean(dim=0).reshape(len(x), side, side).detach()


@pytest.mark.parametrize("name, size, grid", [("vit_tiny_patch16_224", 224, 14),
                                             ("deit_tiny_distilled_patch16_224", 64, 4)])
def test_equals_a_from_scratch_implementation_on_random_timm_vit_and_distilled_deit(name, size, grid):
    """vit_tiny: one prefix token (class); the distilled DeiT: two (class and distillation), both dropped as keys,
    and its score is timm's forward_head, the mean of its two heads."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model(name, pretrained=False, num_classes=10, img_size=size).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    ours = LeGrad(vit)(x, target=[3, 7], raw=True)             # timm's fused kernel: nothing switched
    reference = _from_scratch(vit, x, [3, 7])
    assert ours.shape == (2, grid, grid) and reference.abs().max() > 0
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())


def _torchcam(model, x, classes, projection=None, normalized=False):
    from torchcam.methods import LeGrad as TorchcamLeGrad

    with TorchcamLeGrad(model, list(model.encoder.layers), score_projection=projection) as extractor:
        return extractor(classes, model(x), normalized=normalized)[0]


def test_agrees_with_torchcam_when_torchcam_scores_blocks_with_the_models_own_pooling():
    """torchcam's LeGrad on torchvision's ViT with score_projection = heads(ln(z)[:, 0]), the class token as the
    model reads it; measured max |delta| 3e-7 on raw maps of magnitude ~0.6."""
    model, x, classes = torchvision_vit(), images(size=32), [0, 2, 4]
    ours = LeGrad(model)(x, target=classes, raw=True)
    theirs = _torchcam(model, x, classes, projection=lambda z: model.heads(model.encoder.ln(z)[:, 0]))
    assert theirs.abs().max() > 0.1
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    scaled = _torchcam(model, x, classes, projection=lambda z: model.heads(model.encoder.ln(z)[:, 0]), normalized=True)
    up_to_eps = LeGrad(model)(x, target=classes, raw=True)
    low, high = up_to_eps.amin(dim=(1, 2), keepdim=True), up_to_eps.amax(dim=(1, 2), keepdim=True)
    torch.testing.assert_close((up_to_eps - low) / (high - low), scaled, rtol=1e-4, atol=1e-5)


def test_differs_from_torchcams_default_which_scores_the_mean_of_all_tokens():
    """torchcam's default block score is heads(ln(mean of all tokens)), not the class token torchvision's ViT reads:
    its maps are not LeGrad's as the paper defines s^l (see the module docstring)."""
    model, x, classes = torchvision_vit(), images(size=32), [0, 2, 4]
    ours = LeGrad(model)(x, target=classes, raw=True)
    default = _torchcam(model, x, classes)
    mean_pooled = _torchcam(model, x, classes, projection=lambda z: model.heads(model.encoder.ln(z.mean(dim=1))))
    torch.testing.assert_close(default, mean_pooled)
    assert (ours - default).abs().max() > 0.1 * ours.abs().max()


def test_the_map_depends_on_the_class_and_defaults_to_the_models_top_class():
    vit, x = random_vit(), images()
    top = vit(x).argmax(1).tolist()
    torch.testing.assert_close(LeGrad(vit)(x, raw=True), LeGrad(vit)(x, target=top, raw=True))
    assert not torch.allclose(LeGrad(vit)(x, target=0, raw=True), LeGrad(vit)(x, target=1, raw=True))


def test_maps_are_upsampled_bilinearly_and_scaled_and_a_map_without_gradient_is_zero_not_nan():
    import torch.nn.functional as F

    vit, x = random_vit(), images()
    raw = LeGrad(vit)(x, target=2, raw=True)
    up = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(LeGrad(vit)(x, target=2), (up - low) / (up.amax(dim=(1, 2), keepdim=True) - low))
    silent = hand_set_vit()
    with torch.no_grad():
        silent.head.weight.zero_()                 # the score ignores everything: every gradient is 0
    assert torch.equal(LeGrad(silent)(images(2), target=0), torch.zeros(2, 16, 16))


def _state(model):
    return ({n: m.training for n, m in model.named_modules()},
            {n: (p.detach().clone(), p.requires_grad, p.grad) for n, p in model.named_parameters()},
            {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()},
            {n: getattr(m, "fused_attn", None) for n, m in model.named_modules()})


def _assert_same_state(model, before):
    after = _state(model)
    assert after[0] == before[0] and after[2] == before[2] and after[3] == before[3]
    for name, (value, flag, grad) in before[1].items():
        assert torch.equal(after[1][name][0], value) and after[1][name][1] == flag and after[1][name][2] is grad


@pytest.mark.parametrize("make, size", [(random_vit, 16), (torchvision_vit, 32)])
def test_mode_flags_parameters_gradients_hooks_and_grad_mode_are_restored(make, size):
    model = make().train()
    next(iter(model.parameters())).requires_grad_(False)
    before = _state(model)
    with torch.no_grad():
        LeGrad(model)(images(size=size), target=1)
        assert not torch.is_grad_enabled()
    _assert_same_state(model, before)
    assert model.training


@pytest.mark.parametrize("make, size", [(random_vit, 24), (torchvision_vit, 40)])
def test_the_model_is_restored_after_an_exception_in_the_forward_pass(make, size):
    model = make().train()
    before = _state(model)
    with pytest.raises(Exception):
        LeGrad(model)(images(size=size), target=0)     # both refuse an input of the wrong size
    _assert_same_state(model, before)


def test_a_cnn_and_a_layer_that_is_not_a_block_are_refused_with_what_would_be_right():
    from torchvision.models import resnet18

    vit = random_vit()
    with pytest.raises(ValueError, match="explains Vision Transformers.*timm VisionTransformer"):
        LeGrad(resnet18(num_classes=3))
    with pytest.raises(ValueError, match=r"'blocks.0.norm1' is not a transformer block.*blocks.0, blocks.1"):
        LeGrad(vit, layers="blocks.0.norm1")
    with pytest.raises(ValueError, match=r"'encoder.ln' is not a transformer block.*encoder.layers.encoder_layer_0"):
        LeGrad(torchvision_vit(), layers="encoder.ln")
    with pytest.raises(ValueError, match="not found"):
        LeGrad(vit, layers="blocks.7")
    with pytest.raises(ValueError, match="at least one transformer block"):
        LeGrad(vit, layers=[])


def test_bad_input_gets_a_clear_error_and_changes_nothing():
    vit = random_vit()
    before = _state(vit)
    with pytest.raises(ValueError, match=r"4-D \(N,C,H,W\)"):
        LeGrad(vit)(images()[0], target=0)
    with pytest.raises(TypeError, match="float tensor"):
        LeGrad(vit)(images().long(), target=0)
    with pytest.raises(ValueError, match="outside the model.s 3 classes"):
        LeGrad(vit)(images(), target=7)
    _assert_same_state(vit, before)


@pytest.mark.parametrize("call, problem", [
    (lambda attention, x: attention(x, x, x, attn_mask=torch.zeros(x.shape[1], x.shape[1]), need_weights=False),
     "an attention mask"),
    (lambda attention, x: attention(x, x.flip(1), x.flip(1), need_weights=False), "cross-attention")])
def test_masked_or_cross_attention_in_a_torchvision_block_is_refused(call, problem):
    model = torchvision_vit()
    block = model.encoder.layers[0]
    block.forward = lambda tokens: tokens + call(block.self_attention, block.ln_1(tokens))[0]
    with pytest.raises(ValueError, match=problem):
        LeGrad(model)(images(size=32), target=0)


def test_on_lab_vit_two_object_scenes_the_map_follows_the_explained_class():
    """100 seeded lab scenes (seed 4242), each with one object of its label class and one distractor of another
    class. Per scene, the label box's share of the map's mass minus the distractor box's share, with the label
    explained (a) and with the distractor's class explained (b): a class-blind map would give a = b. Measured
    mean(a - b) = +0.070, 95% paired bootstrap interval [0.046, 0.093]; a > b in 71 of 100 scenes
    (sign test p = 3e-5). (lab_vit was trained on one-object scenes: its top class is the label in 62 of them.)"""
    from camlab.analysis.regions import mass_in_boxes
    from camlab.lab.scenes import class_index, make_scenes, normalise
    from camlab.lab.zoo import load_lab_model
    from camlab.stats import paired_comparison

    scenes = make_scenes(100, seed=4242, instances=1, distractors=1)
    distractors = [next(o for o in objects if not o["main"]) for objects in scenes.objects]
    other_class = [class_index(o["class"]) for o in distractors]
    other_box = torch.tensor([o["box"] for o in distractors])
    explainer, x = LeGrad(load_lab_model("lab_vit")), normalise(scenes.images)

    def contrast(maps):
        return mass_in_boxes(maps, scenes.boxes) - mass_in_boxes(maps, other_box)

    a = contrast(explainer(x, target=scenes.labels.tolist()))
    b = contrast(explainer(x, target=other_class))
    comparison = paired_comparison(a, b)
    assert comparison.difference.low > 0 and comparison.wins_a > comparison.wins_b, comparison
