"""Specification of attention rollout (Abnar & Zuidema 2020) on timm Vision Transformers.

Worked examples: with the query and key projections set to zero every score q k^T is 0, so each head attends
uniformly, W = J / T (T tokens, J all ones). One block: A = (J/T + I) / 2 (rows of J/T + I sum to 2), so the class
token's row over the patches is 1 / (2T). Two such blocks: since (J/T)^2 = J/T,
A^2 = (J/T + 2 J/T + I) / 4 = (3 J/T + I) / 4, and the class row over the patches is 3 / (4T)."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from camlab.rollout import AttentionCapture, attention_modules, attention_rollout, rollout_from_attentions


def tiny_vit(depth: int, *, uniform: bool = False, heads: int = 2, seed: int = 0) -> VisionTransformer:
    """16x16 input, 8x8 patches: a 2x2 grid, 4 patch tokens + the class token (T = 5)."""
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=16, patch_size=8, num_classes=3, embed_dim=8, depth=depth, num_heads=heads,
                            mlp_ratio=2.0)
    if uniform:
        with torch.no_grad():
            for block in vit.blocks:
                block.attn.qkv.weight[:16].zero_()  # the q and k rows of the fused qkv projection
                if block.attn.qkv.bias is not None:
                    block.attn.qkv.bias[:16].zero_()
    return vit.eval()


def images(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_one_block_of_uniform_attention_gives_one_over_2T_on_every_patch(head_fusion):
    raw = attention_rollout(tiny_vit(1, uniform=True), images(), head_fusion=head_fusion, raw=True)
    assert raw.shape == (3, 2, 2)
    torch.testing.assert_close(raw, torch.full((3, 2, 2), 1 / (2 * 5)))


def test_two_blocks_of_uniform_attention_give_three_over_4T():
    raw = attention_rollout(tiny_vit(2, uniform=True), images(), raw=True)
    torch.testing.assert_close(raw, torch.full((3, 2, 2), 3 / (4 * 5)))


def test_maps_are_the_class_row_upsampled_bilinearly_and_min_max_scaled_per_image():
    import torch.nn.functional as F

    vit, x = tiny_vit(2), images()
    raw = attention_rollout(vit, x, raw=True)
    up = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    expected = (up - low) / (up.amax(dim=(1, 2), keepdim=True) - low)
    torch.testing.assert_close(attention_rollout(vit, x), expected)


def test_rollout_multiplies_the_layers_later_on_the_left():
    """Two hand-set 3-token layers, one head each: in layer 1 every token attends to token 2, in layer 2 to token 1.
    A_1 = (W_1 + I)/2 = [[.5, 0, .5], [0, .5, .5], [0, 0, 1]], A_2 = (W_2 + I)/2 = [[.5, .5, 0], [0, 1, 0], [0, .5, .5]].
    Rollout A_2 A_1 = [[.25, .25, .5], [0, .5, .5], [0, .25, .75]]: the class token's row puts half on token 2.
    The other order, A_1 A_2, would give the class row [.25, .5, .25]."""
    w1 = torch.tensor([[0.0, 0, 1], [0, 0, 1], [0, 0, 1]])
    w2 = torch.tensor([[0.0, 1, 0], [0, 1, 0], [0, 1, 0]])
    rolled = rollout_from_attentions([w1.view(1, 1, 3, 3), w2.view(1, 1, 3, 3)])
    torch.testing.assert_close(rolled[0], torch.tensor([[0.25, 0.25, 0.5], [0, 0.5, 0.5], [0, 0.25, 0.75]]))
    swapped = rollout_from_attentions([w2.view(1, 1, 3, 3), w1.view(1, 1, 3, 3)])
    torch.testing.assert_close(swapped[0, 0], torch.tensor([0.25, 0.5, 0.25]))


def test_head_fusion_fuses_before_the_identity_is_added():
    """Heads [[1, 0], [0, 1]] and [[0, 1], [1, 0]]: mean = 0.5 everywhere -> (W + I) rows [1.5, .5] / 2;
    max = 1 everywhere -> rows [2, 1] / 3; min = 0 -> the identity."""
    heads = torch.stack([torch.eye(2), 1 - torch.eye(2)]).view(1, 2, 2, 2)
    torch.testing.assert_close(rollout_from_attentions([heads], "mean")[0], torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    torch.testing.assert_close(rollout_from_attentions([heads], "max")[0], torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]))
    torch.testing.assert_close(rollout_from_attentions([heads], "min")[0], torch.eye(2))


def test_discard_ratio_zeroes_the_smallest_weights_but_never_the_class_token_on_itself():
    """2x2 fused matrix [[.1, .9], [.4, .6]], discard 0.5 drops the two smallest entries, .1 (the class token on
    itself, kept) and .4: W' = [[.1, .9], [0, .6]]; W' + I = [[1.1, .9], [0, 1.6]] -> rows / [2.0, 1.6]."""
    w = torch.tensor([[0.1, 0.9], [0.4, 0.6]]).view(1, 1, 2, 2)
    got = rollout_from_attentions([w], discard_ratio=0.5)[0]
    torch.testing.assert_close(got, torch.tensor([[0.55, 0.45], [0.0, 1.0]]))


def test_captured_attention_equals_timms_unfused_attention_probabilities():
    """The reference: timm's own non-fused path, ``attn_drop`` receives softmax(q k^T * scale)."""
    vit = tiny_vit(2)
    x = images()
    reference = []
    for block in vit.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda _m, inputs, _o: reference.append(inputs[0].detach()))
    with AttentionCapture([m for _, m in attention_modules(vit)]) as capture:
        vit(x)
    got = capture.attentions()
    assert len(got) == len(reference) == 2
    for mine, theirs in zip(got, reference):
        torch.testing.assert_close(mine, theirs)


def test_rollout_is_the_same_with_fused_and_unfused_attention():
    vit = tiny_vit(2)
    x = images()
    fused = attention_rollout(vit, x, raw=True)
    for block in vit.blocks:
        block.attn.fused_attn = False
    torch.testing.assert_close(attention_rollout(vit, x, raw=True), fused)


def _state(model):
    return ({n: m.training for n, m in model.named_modules()},
            {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()},
            {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()},
            {n: m.fused_attn for n, m in attention_modules(model)})


def _assert_same_state(model, before):
    after = _state(model)
    assert after[0] == before[0] and after[2] == before[2] and after[3] == before[3]
    for name, (value, flag) in before[1].items():
        assert torch.equal(after[1][name][0], value) and after[1][name][1] == flag


def test_rollout_leaves_mode_flags_parameters_and_hooks_as_they_were():
    vit = tiny_vit(2).train()
    vit.blocks[0].requires_grad_(False)
    before = _state(vit)
    grad_mode = torch.is_grad_enabled()
    attention_rollout(vit, images())
    _assert_same_state(vit, before)
    assert torch.is_grad_enabled() == grad_mode and vit.training


def test_rollout_restores_the_model_after_an_exception_in_the_forward_pass():
    vit = tiny_vit(2).train()
    before = _state(vit)
    with pytest.raises(Exception):
        attention_rollout(vit, images(size=24))  # timm refuses a 24x24 input to a 16x16 ViT
    _assert_same_state(vit, before)


def test_bad_arguments_say_what_would_be_right():
    vit = tiny_vit(1)
    with pytest.raises(ValueError, match="head_fusion must be one of 'mean', 'max', 'min'"):
        attention_rollout(vit, images(), head_fusion="median")
    with pytest.raises(ValueError, match=r"discard_ratio .* in \[0, 1\)"):
        attention_rollout(vit, images(), discard_ratio=1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) tensor"):
        attention_rollout(vit, images()[0])
    with pytest.raises(ValueError, match="no timm-style attention modules"):
        attention_rollout(torch.nn.Conv2d(3, 4, 3), images())


def test_the_capture_recomputes_torchvisions_multihead_attention_probabilities_per_head():
    """A batch-first self-attention nn.MultiheadAttention is captured by one forward hook; its recomputed
    probabilities equal the per-head weights the module itself returns (need_weights, average_attn_weights=False)."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with AttentionCapture([attention]) as capture:
        _, weights = attention(x, x, x, need_weights=True, average_attn_weights=False)
    (recomputed,) = capture.attentions()
    torch.testing.assert_close(recomputed, weights)
