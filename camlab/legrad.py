r"""LeGrad for Vision Transformers: the gradient of each block's own class score with respect to that block's
attention probabilities (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability Method for
Vision Transformers via Feature Formation Sensitivity", arXiv 2404.03214, ICCV 2025).

Block :math:`l` mixes its T tokens with attention probabilities :math:`A^l` ((heads, T, T), post-softmax, rows
sum to 1) and outputs tokens :math:`z^l`. Its class score :math:`s^l` is what the model would predict if it stopped
after block :math:`l`: the model's final norm, pooling (the class token, or the model's own pooling) and head
applied to :math:`z^l`, so the last block's score is the model's logit. Then

.. math:: E^l = \frac{1}{h\,T} \sum_{\text{heads}} \sum_{i=1}^{T}
          \Big(\frac{\partial s^l}{\partial A^l}\Big)^+_{i,\,\cdot}, \qquad
          E = \frac{1}{|\mathcal L|} \sum_{l \in \mathcal L} E^l,

the positive part of the gradient averaged over heads and over all query tokens (prefix tokens included), the
prefix keys (class, distillation, register tokens) dropped, the patch keys laid out on the patch grid, averaged over
the selected blocks :math:`\mathcal L` (all blocks by default: the paper aggregates "over all layers"), then
upsampled bilinearly and min-max scaled per image (camlab's convention; a map with no positive gradient is all
zeros, never NaN). Unlike Chefer's relevance (:mod:`camlab.chefer`) the attention is not multiplied in and nothing
is propagated through the blocks: each block contributes its own gradient, for its own score.

Where others differ (camlab follows the paper):

* torchcam 0.5.0 (``torchcam.methods.LeGrad``) supports only torchvision's ``VisionTransformer`` (blocks with an
  ``nn.MultiheadAttention``), needs the blocks named, and by default scores block :math:`l` as
  ``heads(encoder.ln(z.mean(dim=1)))``: the mean of *all* tokens, normalised after averaging, not the class token
  torchvision's model reads (normalised per token). With ``score_projection`` set to the model's own
  pooling it agrees with camlab (``tests/test_legrad.py`` pins both).
* The authors' code (github.com/WalBouss/LeGrad, ``LeWrapper``) explains OpenCLIP models: by default only the last
  two blocks (``layer_index=-2``), the CLIP image-text similarity as the score, with CLIP's intermediate features
  also taken as the mean of all tokens before ``ln_post``; maps are summed over blocks (the same after min-max
  scaling as the mean here).

The attention probabilities and their gradients come from :class:`camlab.rollout.AttentionCapture` (per head
:math:`O = A V`, so :math:`\partial s / \partial A = (\partial s / \partial O) V^\top` exactly; timm's fused kernel
is never switched off): one forward pass, then one gradient per selected block, each through that block's tail,
the final norm and the head only. Supported: timm ``VisionTransformer`` and DeiT (``blocks``, ``norm``,
``forward_head``; camlab's ``lab_vit``) and torchvision ``VisionTransformer`` (``encoder.layers``, ``encoder.ln``,
``heads``). Hooks, train/eval flags, ``requires_grad`` flags and grad mode are restored after a call, also after an
exception; parameters' ``.grad`` are not touched.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import resolve_layer
from .methods.base import Explainer
from .rollout import AttentionCapture, grid_of
from .targets import Target, fixed, scores

__all__ = ["LeGrad"]

_TIMM_ATTENTION = ("qkv", "q_norm", "k_norm", "num_heads", "scale", "norm")


@dataclass
class _ViT:
    """What LeGrad reads from one kind of ViT: its blocks in order (name, block, attention module), the score of
    a block's output tokens (final norm, pooling, head), the number of prefix tokens and the patch grid."""

    blocks: list[tuple[str, nn.Module, nn.Module]]
    project: Callable[[torch.Tensor], torch.Tensor]
    prefix: int
    grid: Callable[[int, tuple[int, int]], tuple[int, int]]


def _timm_vit(model: nn.Module) -> _ViT | None:
    blocks = getattr(model, "blocks", None)
    if not (isinstance(blocks, nn.Sequential | nn.ModuleList) and isinstance(getattr(model, "norm", None), nn.Module)
            and callable(getattr(model, "forward_head", None))):
        return None
    found = []
    for index, block in enumerate(blocks):
        attn = getattr(block, "attn", None)
        if not all(hasattr(attn, a) for a in _TIMM_ATTENTION) or not isinstance(attn.norm, nn.Module):
            raise ValueError(f"{type(model).__name__}.blocks[{index}] has no timm attention module (attn with qkv, "
                             "q_norm, k_norm, num_heads, scale and norm; timm >= 0.9): LeGrad cannot read its "
                             "attention probabilities")
        found.append((f"blocks.{index}", block, attn))
    return _ViT(found, lambda tokens: model.forward_head(model.norm(tokens)),
                int(getattr(model, "num_prefix_tokens", 1)), lambda patches, size: grid_of(model, patches, size))


def _torchvision_vit(model: nn.Module) -> _ViT | None:
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if not (isinstance(layers, nn.Sequential) and isinstance(getattr(encoder, "ln", None), nn.Module)
            and isinstance(getattr(model, "heads", None), nn.Module) and hasattr(model, "patch_size")):
        return None
    found = []
    for name, block in layers.named_children():
        attn = getattr(block, "self_attention", None)
        if not isinstance(attn, nn.MultiheadAttention):
            raise ValueError(f"{type(model).__name__}.encoder.layers.{name} has no self_attention "
                             "nn.MultiheadAttention: LeGrad cannot read its attention probabilities")
        found.append((f"encoder.layers.{name}", block, attn))

    def grid(patches: int, size: tuple[int, int]) -> tuple[int, int]:
        h, w = size[0] // model.patch_size, size[1] // model.patch_size
        if h * w != patches:
            raise ValueError(f"{patches} patch tokens do not fit a {size[0]}x{size[1]} input cut into "
                             f"{model.patch_size}x{model.patch_size} patches")
        return h, w

    return _ViT(found, lambda tokens: model.heads(encoder.ln(tokens)[:, 0]), 1, grid)


def _vit_of(model: nn.Module) -> _ViT:
    for reader in (_timm_vit, _torchvision_vit):
        vit = reader(model)
        if vit is not None:
            return vit
    raise ValueError(f"LeGrad explains Vision Transformers, and {type(model).__name__} is not one it can read: it "
                     "needs a timm VisionTransformer/DeiT (blocks, norm, forward_head) or a torchvision "
                     "VisionTransformer (encoder.layers, encoder.ln, heads)")


def _selected(model: nn.Module, vit: _ViT, layers) -> list[tuple[str, nn.Module, nn.Module]]:
    if layers is None:
        return vit.blocks
    if isinstance(layers, str | nn.Module) or not isinstance(layers, Sequence):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one transformer block (or be None for all of them)")
    by_module = {block: (name, block, attn) for name, block, attn in vit.blocks}
    chosen = []
    for layer in layers:
        name, module = resolve_layer(model, layer)
        if module not in by_module:
            raise ValueError(f"layer {name!r} is not a transformer block of {type(model).__name__}; LeGrad explains "
                             f"blocks: pass some of {', '.join(n for n, _, _ in vit.blocks)} (or None for all)")
        chosen.append(by_module[module])
    order = list(by_module)
    return sorted(dict.fromkeys(chosen), key=lambda item: order.index(item[1]))


class _BlockOutputs:
    """Forward hooks keeping each block's output tokens in the autograd graph, in call order."""

    def __init__(self, blocks: list[nn.Module]):
        self.blocks, self.outputs, self._handles = blocks, [], []

    def __enter__(self) -> "_BlockOutputs":
        self._handles = [block.register_forward_hook(lambda _m, _i, out: self.outputs.append(out))
                         for block in self.blocks]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class LeGrad(Explainer):
    """LeGrad maps (see the module docstring) of a timm ViT/DeiT or a torchvision ``VisionTransformer``:
    ``LeGrad(model, layers=None)(x, target=None, raw=False)``.

    Args:
        model: the Vision Transformer.
        layers: the blocks whose maps are averaged: ``None`` (all blocks, the paper), a block or its dotted name
            (``"blocks.3"``, ``"encoder.layers.encoder_layer_1"``), or a list of them.

    Calling it: ``target`` as everywhere in camlab (``None``: each image's top class of the model's output, then
    the same class at every block; a class index, one per image, or a callable, which is then called on each block's
    logits); ``raw=True`` gives the (N, h, w) patch-grid map :math:`E` unscaled, else (N, H, W) upsampled to the
    input and scaled to [0, 1] per image.

    Not in :data:`camlab.METHODS`: like Chefer's relevance it explains transformer blocks only, and every
    registered method must run on any model (CNNs included).
    """

    def __init__(self, model: nn.Module, layers=None):
        super().__init__(model)
        self.vit = _vit_of(model)
        self.blocks = _selected(model, self.vit, layers)

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _, _ in self.blocks]

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        blocks = [block for _, block, _ in self.blocks]
        with torch.enable_grad(), AttentionCapture([attn for _, _, attn in self.blocks], gradients=True) as capture, \
                _BlockOutputs(blocks) as tokens:
            output = self.model(x.detach().requires_grad_(True))
            if len(tokens.outputs) != len(blocks) or len(capture.outputs) != len(blocks):
                raise RuntimeError(f"the {len(blocks)} selected blocks ran {len(tokens.outputs)} times and their "
                                   f"attention {len(capture.outputs)} times in one forward pass; LeGrad needs each "
                                   "block called once, with its attention")
            target = fixed(output, target)
            maps = [self._block_map(capture, call, block_tokens, target, x.shape[0])
                    for call, block_tokens in enumerate(tokens.outputs)]
        relevance = torch.stack(maps).mean(dim=0)
        return relevance.reshape(x.shape[0], *self.vit.grid(relevance.shape[1], tuple(x.shape[-2:])))

    def _block_map(self, capture: AttentionCapture, call: int, block_tokens: torch.Tensor, target: Target,
                   n: int) -> torch.Tensor:
        """E^l: the positive part of the gradient of this block's own score, mean over heads and queries,
        patch keys only."""
        score = scores(self.vit.project(block_tokens), target, n).sum()
        gradient = capture.attention_gradient(score, call)
        return gradient.float().clamp_min(0).mean(dim=(1, 2))[:, self.vit.prefix:].detach()

    def __repr__(self) -> str:
        return f"LeGrad(model={type(self.model).__name__}, layers={self.layer_names})"
