"""Specification of :mod:`camlab.layouts`: how camlab reads a layer's output as an (N,C,h,w) feature map.

Small hand-built models, each with one structural fact that decides the layout (a Linear on a 4-D tensor, a
torchvision ``Permute``, timm's token metadata), and the cases that must raise instead of guessing."""
from __future__ import annotations

import gc

import pytest
import timm
import torch
from torch import nn
from torchvision.ops.misc import Permute

import camlab
from camlab.layouts import _CACHE, NCHW, NHWC, TOKENS, Layout, layout_for, selection_index, trace_layouts


def traced(model, x):
    return {record.name: record for record in trace_layouts(model, x)}


class ChannelsLastMLP(nn.Module):
    """conv (NCHW) -> functional permute -> LayerNorm + Linear + GELU (NHWC) -> functional permute back -> ReLU."""

    def __init__(self, channels=4, hidden=6):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.out = nn.ReLU()
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        y = self.act(self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1))))
        y = self.out(y.permute(0, 3, 1, 2))
        return self.head(y.mean(dim=(2, 3)))


def test_linear_and_layer_norm_on_a_4d_tensor_are_channels_last_and_activations_inherit():
    """(N,4,5,7) conv -> (N,5,7,4) norm -> (N,5,7,6) fc -> GELU on it. After the functional permute back, the ReLU's
    input (N,6,5,7) has no known producer and no module produced that shape before: in this channels-last model the
    ReLU's layout is undecided (it must raise, not be guessed)."""
    records = traced(ChannelsLastMLP(), torch.zeros(1, 3, 5, 7))
    assert str(records["conv"].layout) == NCHW
    assert str(records["norm"].layout) == NHWC and str(records["fc"].layout) == NHWC
    assert str(records["act"].layout) == NHWC  # inherits from its input, the Linear's output
    assert records["out"].layout is None and "cannot tell" in records["out"].problem


def test_undecidable_layer_raises_with_the_shape_and_a_reshape_transform_and_the_transform_fixes_it():
    model, x = ChannelsLastMLP().eval(), torch.randn(2, 3, 5, 7)
    with pytest.raises(ValueError, match=r"\(2, 6, 5, 7\).*reshape_transform=lambda t: t\.permute\(0, 3, 1, 2\)"):
        camlab.GradCAM(model, layer="out")(x, target=0)
    heat = camlab.GradCAM(model, layer="out", reshape_transform=lambda t: t)(x, target=0, raw=True)
    assert heat.shape == (2, 5, 7)


def test_channels_last_layer_gives_the_same_map_as_its_explicit_permute():
    model, x = ChannelsLastMLP().eval(), torch.randn(2, 3, 5, 7)
    auto = camlab.GradCAM(model, layer="fc")(x, target=1, raw=True)
    explicit = camlab.GradCAM(model, layer="fc", reshape_transform=lambda t: t.permute(0, 3, 1, 2))(
        x, target=1, raw=True)
    assert auto.shape == (2, 5, 7)
    assert torch.equal(auto, explicit)


class Cube(nn.Module):
    """conv to (N,6,6,6), then a channels-last Linear 6 -> 6 (so NCHW and NHWC have the same shape), permuted back
    by a functional permute into an Identity: only a shape match could decide it, and with C = H = W it cannot."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc, self.out, self.head = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(6, 6), nn.Identity(), \
            nn.Linear(6, 2)

    def forward(self, x):
        y = self.out(self.fc(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return self.head(y.mean(dim=(2, 3)))


def test_a_cube_shaped_map_in_a_channels_last_model_is_ambiguous_and_raises():
    model = Cube().eval()
    with pytest.raises(ValueError, match=r"layer 'out' outputs shape \(1, 6, 6, 6\).*cannot tell"):
        camlab.GradCAM(model, layer="out")(torch.randn(1, 3, 6, 6), target=0)


class OddCNN(nn.Module):
    """A pure CNN with a hand-written module whose output no rule knows (a functional op): still NCHW, as always."""

    class Halve(nn.Module):
        def forward(self, x):
            return x[:, :, ::2, ::2] * 2

    def __init__(self):
        super().__init__()
        self.conv, self.halve, self.head = nn.Conv2d(3, 4, 3), self.Halve(), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.halve(self.conv(x)).mean(dim=(2, 3)))


def test_a_pure_cnn_without_channels_last_evidence_stays_nchw():
    assert str(traced(OddCNN(), torch.zeros(1, 3, 9, 9))["halve"].layout) == NCHW
    assert camlab.GradCAM(OddCNN().eval(), layer="halve")(torch.randn(1, 3, 9, 9), raw=True).shape == (1, 4, 4)


def test_torchvision_permute_modules_swap_the_layout_and_layer_norm_2d_is_channels_first():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Permute([0, 2, 3, 1]), nn.LayerNorm(4), Permute([0, 3, 1, 2]),
                          timm.layers.LayerNorm2d(4), nn.ReLU())
    records = traced(model, torch.zeros(1, 3, 5, 7))
    assert [str(records[str(i)].layout) for i in range(6)] == [NCHW, NHWC, NHWC, NCHW, NCHW, NCHW]
    assert str(records["5"].layout) == NCHW  # the ReLU inherits from its input


class TokenNet(nn.Module):
    """A hand-written ViT-like net: patch conv -> (N, 16, 8) tokens + a class token -> LayerNorm -> head on the
    class token and the patch mean. Without timm's metadata camlab cannot know the 1 + 4x4 layout for certain."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = self.norm(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(1))


def test_tokens_without_metadata_raise_with_a_one_liner_that_works():
    model, x = TokenNet().eval(), torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError) as error:
        camlab.GradCAM(model, layer="norm")(x, target=0)
    message = str(error.value)
    assert "(2, 17, 8)" in message
    one_liner = "lambda t: t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)"
    assert one_liner in message
    heat = camlab.GradCAM(model, layer="norm", reshape_transform=eval(one_liner))(x, target=0, raw=True)
    assert heat.shape == (2, 4, 4)


def test_layer_none_does_not_fall_back_to_the_stem_when_later_tokens_are_unknown():
    with pytest.raises(ValueError, match=r"does not fall back to the earlier layer 'patch'"):
        camlab.GradCAM(TokenNet().eval())(torch.randn(1, 3, 16, 16), target=0)


def test_timm_vit_tokens_read_with_num_prefix_tokens_and_the_patch_grid():
    """timm's ViT: L = 1 class token + 4x4 patches (64 px, patch 16); the patch embedding has 16 tokens, no prefix;
    the attention's internal (N, heads, L, d) tensors have no layout."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=4).eval()
    records = traced(vit, torch.zeros(1, 3, 64, 64))
    assert records["blocks.11.norm1"].layout == Layout(TOKENS, 1, (4, 4))
    assert str(records["blocks.11.norm1"].layout) == "tokens 1+4x4"
    assert str(records["patch_embed"].layout) == "tokens 0+4x4"
    assert records["blocks.0.attn.q_norm"].layout is None


def test_dynamic_image_size_vit_takes_the_grid_from_the_input():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=4,
                            dynamic_img_size=True).eval()
    records = traced(vit, torch.zeros(1, 3, 48, 80))
    assert str(records["blocks.11.norm1"].layout) == "tokens 1+3x5"
    assert camlab.GradCAM(vit)(torch.randn(1, 3, 48, 80), raw=True).shape == (1, 3, 5)


def test_tokens_to_map_is_row_major_and_from_map_restores_the_class_token():
    """Token 1 + r*gw + c is position (r, c); putting the map back keeps the class token as it was."""
    layout = Layout(TOKENS, 1, (2, 3))
    tokens = torch.arange(2 * 7 * 4, dtype=torch.float32).reshape(2, 7, 4)
    grid = layout.to_map(tokens)
    assert grid.shape == (2, 4, 2, 3)
    assert torch.equal(grid[1, :, 1, 2], tokens[1, 1 + 1 * 3 + 2])
    changed = grid[:1].clone()
    changed[:, 2] = 0
    restored = layout.from_map(changed, tokens[:1])
    assert torch.equal(restored[:, 0], tokens[:1, 0])
    assert torch.equal(restored[:, 1:, 2], torch.zeros(1, 6)) and torch.equal(restored[:, 1:, 3], tokens[:1, 1:, 3])


def test_a_selecting_reshape_transform_is_inverted_and_a_mixing_one_is_refused():
    output = torch.randn(1, 5, 3)
    select = Layout("reshape_transform", transform=lambda t: t[:, 1:].reshape(t.shape[0], 2, 2, 3).permute(0, 3, 1, 2))
    maps = select.to_map(output)
    assert torch.equal(select.from_map(maps, output), output)
    index = selection_index(select.transform, output)
    assert index[0, 0, 0, 1].item() == 1 * 3 * 1 + 3 * 1 + 0  # channel 0 of token 2 = position (0, 1)
    mixing = Layout("reshape_transform", transform=lambda t: (t[:, 1:] + t[:, :1]).reshape(1, 2, 2, 3)
                    .permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="does not only select and rearrange"):
        mixing.from_map(mixing.to_map(output), output)


def test_reshape_transform_must_return_an_nchw_map_with_the_batch_size():
    model, x = OddCNN().eval(), torch.randn(2, 3, 9, 9)
    with pytest.raises(ValueError, match=r"reshape_transform returned \(2, 4, 49\), not an \(N,C,H,W\)"):
        camlab.GradCAM(model, layer="conv", reshape_transform=lambda t: t.flatten(2))(x, target=0)
    with pytest.raises(ValueError, match=r"with N = 2"):
        camlab.GradCAM(model, layer="conv", reshape_transform=lambda t: t[:1])(x, target=0)
    with pytest.raises(TypeError, match="reshape_transform must be a callable"):
        camlab.GradCAM(model, layer="conv", reshape_transform="NHWC")


def test_the_layout_is_traced_once_per_model_and_input_size_and_the_cache_is_weak():
    model = OddCNN().eval()
    calls = []
    model.conv.register_forward_pre_hook(lambda module, inputs: calls.append(tuple(inputs[0].shape)))
    x = torch.randn(3, 3, 9, 9)
    for _ in range(3):
        layout_for(model, x, "halve", model.halve)
    assert calls == [(1, 3, 9, 9)]  # one traced pass on the first image
    layout_for(model, torch.randn(1, 3, 11, 11), "halve", model.halve)
    assert len(calls) == 2
    model.halve = OddCNN.Halve()  # a module replaced under the same name is traced again
    layout_for(model, x, "halve", model.halve)
    assert len(calls) == 3
    before = len(_CACHE)
    del model
    gc.collect()
    assert len(_CACHE) == before - 1


def test_an_explainer_records_layouts_in_its_own_pass_without_an_extra_forward_pass():
    """The first call records the layouts with hooks during the explaining pass itself: one forward pass per call,
    also for a model that only accepts its own batch size (e.g. one question bound per image)."""
    model = OddCNN().eval()
    calls = []
    model.conv.register_forward_pre_hook(lambda module, inputs: calls.append(tuple(inputs[0].shape)))
    explainer = camlab.GradCAM(model, layer="halve")
    explainer(torch.randn(3, 3, 9, 9), target=0)
    explainer(torch.randn(3, 3, 9, 9), target=0)
    assert calls == [(3, 3, 9, 9), (3, 3, 9, 9)]
    assert str(layout_for(model, torch.zeros(3, 3, 9, 9), "halve", model.halve)) == NCHW  # cached: no pass
    assert len(calls) == 2


def test_gradient_wrt_the_map_is_the_layout_of_the_gradient_wrt_the_output():
    """On tokens the map is a selection of the output's entries, so d y / d map (the map as a leaf, the class token
    held fixed) equals the gradient w.r.t. the output read through the layout, which is what capture returns."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3, depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    layer = vit.blocks[1].norm1
    layout = Layout(TOKENS, 1, (2, 2))
    kept = {}

    def as_leaf(module, inputs, output):
        kept["map"] = layout.to_map(output).detach().requires_grad_(True)
        return layout.from_map(kept["map"], output.detach())

    handle = layer.register_forward_hook(as_leaf)
    try:
        (expected,) = torch.autograd.grad(vit(x)[:, 2].sum(), kept["map"])
    finally:
        handle.remove()
    forward = camlab.methods.forward.capture(vit, x, 2, [("blocks.1.norm1", layer)], differentiable=True)
    assert torch.allclose(forward.gradients, expected, rtol=1e-5, atol=1e-8)
    assert str(forward.layers[0].layout) == "tokens 1+2x2"


def test_a_scripted_submodule_takes_no_hooks_and_is_skipped():
    """TorchScript modules refuse forward hooks; the layout recorder skips them and reads the rest."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), torch.jit.script(nn.ReLU()), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    assert camlab.GradCAM(model, layer="0")(torch.randn(1, 3, 8, 8), target=0, raw=True).shape == (1, 6, 6)
    assert "1" not in traced(model, torch.zeros(1, 3, 8, 8))


class TupleBlock(nn.Module):
    """A block that returns (features, auxiliary) as a tuple, or as a dict with ``as_dict``."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.as_dict = as_dict

    def forward(self, x):
        features = torch.relu(self.conv(x))
        aux = features.mean(dim=(2, 3))
        return {"features": features, "aux": aux} if self.as_dict else (features, aux)


class StructuredOutputNet(nn.Module):
    """``block`` returns a structure; ``same`` (an Identity on its features) is the same map as a plain tensor."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.block = TupleBlock(as_dict)
        self.same = nn.Identity()
        self.head = nn.Linear(4 + 4, 3)

    def forward(self, x):
        out = self.block(x)
        features, aux = (out["features"], out["aux"]) if isinstance(out, dict) else out
        features = self.same(features)
        return self.head(torch.cat([features.amax(dim=(2, 3)), aux], dim=1))


@pytest.mark.parametrize("as_dict", [False, True], ids=["tuple", "dict"])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "scorecam", "eigencam"])
def test_reshape_transform_receives_a_tuple_or_dict_output_and_gives_the_map_of_the_tensor_it_picks(as_dict, method):
    """A layer returning (features, aux) read through ``reshape_transform=lambda out: out[0]`` gives the map of an
    Identity placed on ``features``: the gradient reaching ``features`` through the tuple is the same tensor (the
    auxiliary output's own path to the score included, as both sit before the split)."""
    torch.manual_seed(0)
    model = StructuredOutputNet(as_dict).eval()
    x = torch.rand(2, 3, 8, 8)
    pick = (lambda out: out["features"]) if as_dict else (lambda out: out[0])
    through_structure = camlab.build(method, model, layer="block", reshape_transform=pick)(x, target=1)
    through_identity = camlab.build(method, model, layer="same")(x, target=1)
    torch.testing.assert_close(through_structure, through_identity)


def test_a_structured_layer_output_without_reshape_transform_says_how_to_read_it():
    model = StructuredOutputNet().eval()
    with pytest.raises(TypeError, match=r"returns tuple, not a tensor.*reshape_transform=.*tuple"):
        camlab.build("gradcam", model, layer="block")(torch.rand(1, 3, 8, 8), target=0)


def test_a_reshape_transform_that_mixes_the_batch_is_refused():
    model = ChannelsLastMLP().eval()
    flipped = lambda t: t.flip(0)  # noqa: E731 (a transform that reverses the batch)
    with pytest.raises(ValueError, match="mixes the images of the batch"):
        camlab.build("gradcam", model, layer="conv", reshape_transform=flipped)(torch.rand(3, 3, 8, 8), target=0)


def test_the_identity_as_reshape_transform_on_a_channels_last_layer_is_refused_with_the_permute():
    """Swin's ``layers.2`` case: the layer is (N,H,W,C); an identity transform would read its rows as channels."""
    model = ChannelsLastMLP().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"channels last.*permute\(0, 3, 1, 2\)"):
        camlab.build("gradcam", model, layer="act", reshape_transform=lambda t: t)(x, target=0)
    permuted = camlab.build("gradcam", model, layer="act", reshape_transform=lambda t: t.permute(0, 3, 1, 2))
    torch.testing.assert_close(permuted(x, target=0), camlab.build("gradcam", model, layer="act")(x, target=0))


def test_ablation_cam_on_a_structured_output_says_it_needs_a_tensor_layer():
    model = StructuredOutputNet().eval()
    explainer = camlab.build("ablationcam", model, layer="block", reshape_transform=lambda out: out[0])
    with pytest.raises(ValueError, match="layer returning one tensor, not tuple"):
        explainer(torch.rand(1, 3, 8, 8), target=0)


@pytest.mark.parametrize("layer", ["norm", "blocks.1"])
def test_a_vit_layer_after_the_last_attention_is_refused_instead_of_an_all_zero_map(layer):
    """After the last attention only the class token reaches the head: the patch tokens' gradient is exactly 0 there
    (pytorch-grad-cam returns an all-zero map); the last block's norm1 works."""
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=2, img_size=32,
                              patch_size=8).eval()
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=rf"does not depend on the patch tokens at layer '{layer}'.*norm1"):
        camlab.build("gradcam", model, layer=layer)(x, target=1)
    assert camlab.build("gradcam", model, layer="blocks.1.norm1")(x, target=1).abs().sum() > 0
