"""``lab_vit``: a tiny Vision Transformer on lab scenes, built from timm's own ``VisionTransformer`` class.

The architecture is timm's (random init, nothing downloaded), so the model has the real timm layout that camlab
must handle for any ViT: ``patch_embed`` (timm's ``HybridEmbed``: a small conv stem, the lab's trunk with three
2x2 poolings, then a 1x1 projection; a 64x64 image becomes an 8x8 grid of 64 patch tokens), a class token prepended (``num_prefix_tokens == 1``), learned position embeddings, ``blocks.0`` ..
``blocks.3`` (each ``norm1 -> attn -> + -> norm2 -> mlp -> +``), a final ``norm`` and ``head`` reading the class
token. Each block's output is a (N, 65, 64) token tensor, not an NCHW map: token 0 is the class token and tokens
1..64 are the patches in row-major order, so ``tokens[:, 1:].reshape(N, 8, 8, C).permute(0, 3, 1, 2)`` is its
(N, C, 8, 8) grid. The layer to explain is ``blocks.3.norm1``, the last block's first norm: the input of the last
attention, where every patch token still holds its own position (after the last block only the class token is
read).

Why a conv stem: with timm's plain linear 8x8 patch embedding this ViT stayed at chance for the first 8,000
training scenes; early convolutions make ViTs train far faster on little data (Xiao et al., "Early Convolutions
Help Transformers See Better", NeurIPS 2021). The token layout is unchanged.

Attention rollout (:func:`camlab.rollout.attention_rollout`) works on it directly.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from .architectures import conv_features

#: timm ``VisionTransformer`` arguments of ``lab_vit`` (``patch_size=1``: one token per cell of the stem's 8x8 map)
LAB_VIT_CONFIG = dict(img_size=64, patch_size=1, in_chans=3, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0,
                      global_pool="token", class_token=True)
STEM_WIDTH = 8
#: the layer the zoo suggests explaining: the last block's first LayerNorm
LAB_VIT_LAYER = f"blocks.{LAB_VIT_CONFIG['depth'] - 1}.norm1"


def build_lab_vit(num_classes: int = 5) -> nn.Module:
    """timm's ``VisionTransformer`` with :data:`LAB_VIT_CONFIG`, a convolutional stem as its patch embedding
    (timm's ``HybridEmbed``), and random (timm's default) initialisation."""
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    stem = conv_features(STEM_WIDTH, pools=3)  # 64x64 -> (4 * STEM_WIDTH, 8, 8)
    embed = partial(HybridEmbed, backbone=stem)  # HybridEmbed runs the stem once to size it
    return VisionTransformer(num_classes=num_classes, embed_layer=embed, **LAB_VIT_CONFIG)
