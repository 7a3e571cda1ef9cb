r"""Class-specific relevance for timm-style Vision Transformers: gradient-weighted attention accumulated over the
blocks (Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers", ICCV 2021, arXiv 2103.15679, Eqs. 5-6 with the initialisation of Eq. 1; the ViT case of its §3).

Block :math:`b` mixes the tokens with the attention probabilities :math:`A^b` ((heads, T, T), rows sum to 1). With
:math:`\nabla A^b = \partial y^c / \partial A^b` the gradient of the class score (the logit :math:`y^c`, as in the
authors' code) with respect to those probabilities,

.. math:: \bar A^b = \mathbb{E}_h\big[(\nabla A^b \odot A^b)^+\big] \quad (5), \qquad
          R \leftarrow R + \bar A^b R \quad (6), \qquad R = I \text{ before the first block } (1),

and the map is the class token's row of :math:`R` over the patch tokens, reshaped to the patch grid. The
differences from attention rollout (:mod:`camlab.rollout`): each attention weight is multiplied by its gradient
and only the positive part is kept, per head, before the heads are averaged, so the map depends on the class; the
residual connection enters as :math:`R + \bar A R = (I + \bar A) R`, without renormalising rows. The authors'
code (hila-chefer/Transformer-MM-Explainability, ``avg_heads`` and ``apply_self_attention_rules``, "rule 5" and
"rule 6") does the same, one image at a time; here a batch is one pass (image i's score depends only on image i).

The probabilities come from :class:`camlab.rollout.AttentionCapture` (recomputed from each block's queries and
keys, as rollout does), their gradients from the same capture: per head the attention's output is
:math:`O = A V`, so :math:`\partial y / \partial A = (\partial y / \partial O) V^\top` exactly, and timm's fused
attention kernel is never switched off. Maps are upsampled bilinearly and min-max scaled per image, as the
authors' visualisation does; a map with no relevance on any patch (every :math:`\bar A` row of the class token
zero) is all zeros, never NaN. Hooks, train/eval flags, ``requires_grad`` flags and grad mode are restored after
the call, also after an exception; parameters' ``.grad`` are not touched.
"""
from __future__ import annotations

import torch
from torch import nn

from .hooks import preserved_state
from .maps import scale, upsample
from .methods.checks import check_input, check_model_input
from .rollout import AttentionCapture, attention_modules, grid_of
from .targets import Target, scores

__all__ = ["chefer_relevance", "relevance_from_attentions"]


def relevance_from_attentions(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    r"""The (N, T, T) relevance :math:`R` after every block, first block first, from per-block (N, heads, T, T)
    attention probabilities and their gradients: :math:`R = I`, then :math:`R \leftarrow R + \bar A R` with
    :math:`\bar A = \mathrm{mean}_h[(\nabla A \odot A)^+]`."""
    if not attentions or len(attentions) != len(gradients):
        raise ValueError(f"need one gradient per attention matrix and at least one block, got {len(attentions)} "
                         f"attention matrices and {len(gradients)} gradients")
    relevance = None
    for attention, gradient in zip(attentions, gradients):
        if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2] or gradient.shape != attention.shape:
            raise ValueError(f"attention and its gradient must both be (N, heads, T, T), got "
                             f"{tuple(attention.shape)} and {tuple(gradient.shape)}")
        weighted = (gradient.float() * attention.float()).clamp_min(0).mean(dim=1)       # Eq. 5
        if relevance is None:
            relevance = torch.eye(weighted.shape[-1], dtype=weighted.dtype, device=weighted.device).expand_as(weighted)
        relevance = relevance + weighted @ relevance                                     # Eq. 6
    return relevance


def _check_model(model: nn.Module) -> list[nn.Module]:
    found = attention_modules(model)
    missing = [name for name, m in found if not isinstance(getattr(m, "norm", None), nn.Module)]
    if missing:
        raise ValueError(f"attention modules {missing[:3]} have no `norm` submodule (timm >= 0.9 applies one after the "
                         "attention): the relevance needs it to read the attention's output; upgrade timm")
    if getattr(model, "cls_token", None) is None or int(getattr(model, "num_prefix_tokens", 1)) < 1:
        raise ValueError(f"{type(model).__name__} has no class token: the relevance map is the class token's row, "
                         "so it needs a ViT with class_token=True")
    if getattr(model, "global_pool", "token") != "token":
        raise ValueError(f"{type(model).__name__}'s head pools the tokens (global_pool={model.global_pool!r}) instead "
                         "of reading the class token, so the class token's row does not explain its score; the "
                         "method needs global_pool='token'")
    return [m for _, m in found]


def chefer_relevance(model: nn.Module, x: torch.Tensor, target: Target = None, *, raw: bool = False) -> torch.Tensor:
    """Class-specific relevance maps (Chefer, Gur & Wolf, ICCV 2021) of a timm Vision Transformer or DeiT for a
    batch ``x`` (N, C, H, W).

    Args:
        model: a timm ``VisionTransformer`` (or a model with its layout: timm ``Attention`` modules with ``qkv``,
            ``q_norm``, ``k_norm``, ``norm``; a class token at position 0, ``num_prefix_tokens`` prefix tokens,
            ``global_pool='token'``).
        target: what to explain, as everywhere in camlab: ``None`` (each image's top class), a class index, one per
            image, or a callable on the output; its score (the logit for a class) is differentiated.
        raw: return the (N, h, w) class-token row at patch-grid resolution, unscaled, instead of (N, H, W) maps
            upsampled bilinearly to the input and min-max scaled to [0, 1] per image.
    """
    check_input(x, method="chefer_relevance")
    modules = _check_model(model)
    check_model_input(model, x)
    with preserved_state(model), torch.enable_grad(), AttentionCapture(modules, gradients=True) as capture:
        output = model(x.detach().requires_grad_(True))
        score = scores(output, target, x.shape[0]).sum()
        gradients = capture.attention_gradients(score)
        attentions = capture.attentions()
    relevance = relevance_from_attentions(attentions, gradients)
    row = relevance[:, 0, int(getattr(model, "num_prefix_tokens", 1)):].detach()
    maps = row.reshape(-1, *grid_of(model, row.shape[1], tuple(x.shape[-2:])))
    return maps if raw else scale(upsample(maps, tuple(x.shape[-2:])))
