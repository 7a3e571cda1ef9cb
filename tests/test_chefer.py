"""Specification of the class-specific transformer relevance of Chefer, Gur & Wolf (ICCV 2021, Eqs. 5-6):
Abar = mean_h[(dA * A)^+] per block, R <- R + Abar R from R = I, the class token's row over the patches."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from camlab.chefer import chefer_relevance, relevance_from_attentions
from camlab.rollout import attention_modules


def hand_set_vit() -> VisionTransformer:
    """One block, embedding width 2, one head, a 16x16 input cut into 8x8 patches: T = 1 + 4 tokens.

    Weights set by hand: the patch projection is zero, so patch token j is its position embedding p_j, and
    p_1..p_4 = (1, 0), (0, 1), (-1, 0), (2, 2); the class token is (0, 0). The q and k rows of qkv are zero, so every
    score is 0 and the attention is uniform, A = J / 5. The v rows and the output projection are the identity, the
    MLP's last layer is zero, and the LayerNorms are replaced by identities. So the class token leaves the block as
    z_0 + O_0 with O_0 = sum_j A[0, j] v_j = sum_j A[0, j] p_j, and the head gives y_c = w_c . (z_0 + O_0) with
    w_0 = (1, 0), w_1 = (0, 1).

    Derivation: dy_c / dA[0, j] = w_c . v_j = w_c . p_j, so Abar[0, j] = (w_c . p_j * 1/5)^+ (one head), and with
    one block R = I + Abar R = I + Abar: the class row over the patches is Abar[0, 1:].
    Class 0: w_0 . p_j = 1, 0, -1, 2 -> [0.2, 0, 0, 0.4]. Class 1: w_1 . p_j = 0, 1, 0, 2 -> [0, 0.2, 0, 0.4].
    On the 2x2 grid (row-major): class 0 [[0.2, 0], [0, 0.4]], class 1 [[0, 0.2], [0, 0.4]]."""
    with torch.random.fork_rng(devices=[]):
        vit = VisionTransformer(img_size=16, patch_size=8, num_classes=2, embed_dim=2, depth=1, num_heads=1,
                                mlp_ratio=1.0)
    vit.norm = nn.Identity()
    vit.blocks[0].norm1 = nn.Identity()
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.zero_()
        vit.pos_embed[0, 1:] = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [2, 2]])
        vit.blocks[0].attn.qkv.weight[4:] = torch.eye(2)       # v = x
        vit.blocks[0].attn.proj.weight.copy_(torch.eye(2))
        vit.head.weight.copy_(torch.eye(2))
    return vit.eval()


def random_vit(depth: int = 2, seed: int = 0, **options) -> VisionTransformer:
    """16x16 input, 8x8 patches: a 2x2 grid, T = 5 tokens; random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = VisionTransformer(img_size=16, patch_size=8, num_classes=3, embed_dim=8, depth=depth, num_heads=2,
                                mlp_ratio=2.0, **options)
    return vit.eval()


def images(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_one_hand_set_block_gives_the_map_derived_on_paper_for_each_class():
    vit, x = hand_set_vit(), images(2)
    torch.testing.assert_close(chefer_relevance(vit, x, target=0, raw=True),
                               torch.tensor([[0.2, 0.0], [0.0, 0.4]]).expand(2, 2, 2))
    torch.testing.assert_close(chefer_relevance(vit, x, target=1, raw=True),
                               torch.tensor([[0.0, 0.2], [0.0, 0.4]]).expand(2, 2, 2))


def test_relevance_accumulates_as_R_plus_Abar_R_over_two_hand_set_blocks():
    """Two tokens, one head. Block 1: A = [[.5, .5], [.5, .5]], dA = [[2, -2], [0, 4]] -> Abar = (dA * A)^+ =
    [[1, 0], [0, 2]]; R = I + Abar I = [[2, 0], [0, 3]]. Block 2: A = [[0, 1], [1, 0]], dA = [[0, 1], [1, 0]] ->
    Abar = [[0, 1], [1, 0]]; R = R + Abar R = [[2, 0], [0, 3]] + [[0, 3], [2, 0]] = [[2, 3], [2, 3]].
    Rollout's row renormalisation would give rows summing to 1 instead."""
    a1, g1 = torch.full((2, 2), 0.5), torch.tensor([[2.0, -2], [0, 4]])
    a2, g2 = torch.tensor([[0.0, 1], [1, 0]]), torch.tensor([[0.0, 1], [1, 0]])
    relevance = relevance_from_attentions([a1.view(1, 1, 2, 2), a2.view(1, 1, 2, 2)],
                                          [g1.view(1, 1, 2, 2), g2.view(1, 1, 2, 2)])
    torch.testing.assert_close(relevance[0], torch.tensor([[2.0, 3], [2, 3]]))


def test_heads_are_averaged_after_the_positive_part():
    """Two heads of one 2-token block with A = 1 everywhere: dA = +1 in head 1 and -1 in head 2 at every entry.
    (mean of positive parts) = 0.5 everywhere, R = I + 0.5 J; (positive part of the mean) would be 0, R = I."""
    attention = torch.ones(1, 2, 2, 2)
    gradient = torch.stack([torch.ones(2, 2), -torch.ones(2, 2)])[None]
    torch.testing.assert_close(relevance_from_attentions([attention], [gradient])[0],
                               torch.tensor([[1.5, 0.5], [0.5, 1.5]]))


def _from_scratch(vit: VisionTransformer, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """The authors' recipe written out: timm's unfused attention path, the probabilities taken where timm applies
    attention dropout, their gradient by autograd, rules 5 and 6 by hand."""
    probabilities, handles = [], []
    for block in vit.blocks:
        block.attn.fused_attn = False
        handles.append(block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: probabilities.append(out)))
    try:
        output = vit(x)
        score = output.gather(1, torch.tensor(classes)[:, None]).sum()
        gradients = torch.autograd.grad(score, probabilities)
    finally:
        for handle in handles:
            handle.remove()
    tokens = probabilities[0].shape[-1]
    relevance = torch.eye(tokens).repeat(len(x), 1, 1)
    for attention, gradient in zip(probabilities, gradients):
        relevance = relevance + (gradient * attention).clamp(min=0).mean(dim=1) @ relevance
    side = int((tokens - 1) ** 0.5)
    return relevance[:, 0, 1:].reshape(len(x), side, side).detach()


def test_equals_a_from_scratch_implementation_on_a_random_vit_tiny_patch16_224():
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    ours = chefer_relevance(vit, x, target=[3, 7], raw=True)   # timm's fused kernel: nothing switched
    reference = _from_scratch(vit, x, [3, 7])
    assert ours.shape == (2, 14, 14)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6 * reference.abs().max().item())


def test_the_map_depends_on_the_class_and_defaults_to_the_top_class():
    vit, x = random_vit(), images()
    top = vit(x).argmax(1).tolist()
    torch.testing.assert_close(chefer_relevance(vit, x, raw=True), chefer_relevance(vit, x, target=top, raw=True))
    assert not torch.allclose(chefer_relevance(vit, x, target=0, raw=True), chefer_relevance(vit, x, target=1, raw=True))


def test_maps_are_upsampled_bilinearly_and_scaled_and_a_map_without_relevance_is_zero_not_nan():
    import torch.nn.functional as F

    vit, x = random_vit(), images()
    raw = chefer_relevance(vit, x, target=2, raw=True)
    up = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(chefer_relevance(vit, x, target=2), (up - low) / (up.amax(dim=(1, 2), keepdim=True) - low))
    silent = hand_set_vit()
    with torch.no_grad():
        silent.head.weight.zero_()                 # the score ignores everything: every gradient is 0
    flat = chefer_relevance(silent, images(2), target=0)
    assert torch.equal(flat, torch.zeros(2, 16, 16))


def _state(model):
    return ({n: m.training for n, m in model.named_modules()},
            {n: (p.detach().clone(), p.requires_grad, p.grad) for n, p in model.named_parameters()},
            {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()},
            {n: m.fused_attn for n, m in attention_modules(model)})


def _assert_same_state(model, before):
    after = _state(model)
    assert after[0] == before[0] and after[2] == before[2] and after[3] == before[3]
    for name, (value, flag, grad) in before[1].items():
        assert torch.equal(after[1][name][0], value) and after[1][name][1] == flag and after[1][name][2] is grad


def test_mode_flags_parameters_gradients_and_hooks_are_restored():
    vit = random_vit().train()
    vit.blocks[0].requires_grad_(False)
    before = _state(vit)
    with torch.no_grad():
        chefer_relevance(vit, images(), target=1)
    _assert_same_state(vit, before)
    assert vit.training and torch.is_grad_enabled()


def test_grad_mode_of_the_caller_is_kept():
    vit = random_vit()
    with torch.no_grad():
        chefer_relevance(vit, images(), target=1)
        assert not torch.is_grad_enabled()


def test_the_model_is_restored_after_an_exception_in_the_forward_pass():
    vit = random_vit().train()
    before = _state(vit)
    with pytest.raises(Exception):
        chefer_relevance(vit, images(size=24), target=0)  # timm refuses a 24x24 input to a 16x16 ViT
    _assert_same_state(vit, before)


def test_bad_input_and_unsupported_models_get_clear_errors_and_change_nothing():
    vit = random_vit()
    before = _state(vit)
    with pytest.raises(ValueError, match=r"4-D \(N,C,H,W\)"):
        chefer_relevance(vit, images()[0], target=0)
    with pytest.raises(TypeError, match="float tensor"):
        chefer_relevance(vit, images().long(), target=0)
    with pytest.raises(ValueError, match="outside the model.s 3 classes"):
        chefer_relevance(vit, images(), target=7)
    _assert_same_state(vit, before)
    with pytest.raises(ValueError, match="no timm-style attention modules"):
        chefer_relevance(nn.Conv2d(3, 4, 3), images())
    with pytest.raises(ValueError, match="global_pool='token'"):
        chefer_relevance(random_vit(global_pool="avg"), images())
    with pytest.raises(ValueError, match="no class token"):
        chefer_relevance(random_vit(global_pool="avg", class_token=False), images())


def test_relevance_from_attentions_refuses_mismatched_inputs():
    attention = torch.ones(1, 2, 3, 3) / 3
    with pytest.raises(ValueError, match="one gradient per attention matrix"):
        relevance_from_attentions([attention], [])
    with pytest.raises(ValueError, match=r"\(N, heads, T, T\)"):
        relevance_from_attentions([attention], [torch.ones(1, 2, 3, 2)])
