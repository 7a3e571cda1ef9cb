r"""Attention rollout for timm-style Vision Transformers (Abnar & Zuidema, "Quantifying Attention Flow in
Transformers", ACL 2020).

Each block :math:`l` mixes its tokens with attention probabilities
:math:`W_l = \mathrm{softmax}(q k^\top / \sqrt{d})` (one (T, T) matrix per head, T tokens). Rollout fuses the heads
(mean, max or min), accounts for the residual connection by adding the identity and renormalising each row,

.. math:: A_l = \frac{W_l + I}{\lVert W_l + I \rVert_{\text{row}}}, \qquad
          \tilde A = A_L A_{L-1} \cdots A_1,

and reads the class token's row of :math:`\tilde A` over the patch tokens: how much of the class token's final
representation flows, through all layers, from each patch. That row is reshaped to the patch grid and upsampled.

The attention probabilities are captured without touching the model: forward hooks on each attention module's
``q_norm`` and ``k_norm`` (``nn.Identity`` unless the model uses QK normalisation; timm calls both on every
forward) keep :math:`q` and :math:`k`, and :math:`W_l` is recomputed here as ``softmax(q k^T * attn.scale)``, the
formula timm's ``Attention`` uses whether or not it runs the fused ``scaled_dot_product_attention`` kernel. So
``fused_attn`` is never switched, and hooks, train/eval flags and grad mode are restored after the call, also
after an exception.

``discard_ratio`` (not in the paper; the option of Jacob Gildenblat's widely used implementation) zeroes that
fraction of each fused attention matrix's smallest entries before the identity is added, never the class token's
attention to itself.
"""
from __future__ import annotations

import torch
from torch import nn

from .hooks import preserved_state
from .maps import scale, upsample

HEAD_FUSIONS = ("mean", "max", "min")


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The timm-style attention modules of ``model`` (those with ``qkv``, ``q_norm``, ``k_norm``, ``num_heads``
    and ``scale``), in definition order; a clear ``ValueError`` when there are none."""
    found = [(name, m) for name, m in model.named_modules()
             if all(hasattr(m, a) for a in ("qkv", "q_norm", "k_norm", "num_heads", "scale"))]
    if not found:
        raise ValueError(f"{type(model).__name__} has no timm-style attention modules (submodules with qkv, q_norm, "
                         "k_norm, num_heads and scale, as timm's VisionTransformer blocks have): attention rollout "
                         "needs a timm Vision Transformer")
    return found


class AttentionCapture:
    """Forward hooks on each attention module's ``q_norm`` / ``k_norm`` that keep (N, heads, T, d) queries and
    keys; :meth:`attentions` recomputes the (N, heads, T, T) attention probabilities of every call, in call order.
    Use as a context manager: the hooks are removed on exit, also after an exception.

    With ``gradients=True`` it also keeps each call's values (the output of ``qkv``) and, still in the autograd
    graph, the heads' outputs :math:`O = W V` (the input of the module's ``norm``, which timm applies right after
    the attention, an ``nn.Identity`` unless ``scale_norm``); :meth:`attention_gradients` turns the gradient of a
    score with respect to :math:`O` into its gradient with respect to :math:`W` (used by :mod:`camlab.chefer`)."""

    def __init__(self, modules: list[nn.Module], *, gradients: bool = False):
        self.modules = list(modules)
        self.gradients = gradients
        self.queries: list[tuple[nn.Module, torch.Tensor]] = []
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self._handles: list = []

    def __enter__(self) -> "AttentionCapture":
        try:
            for attn in self.modules:
                self._register(attn)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _register(self, attn: nn.Module) -> None:
        self._handles.append(attn.q_norm.register_forward_hook(
            lambda _m, _i, out, attn=attn: self.queries.append((attn, out.detach()))))
        self._handles.append(attn.k_norm.register_forward_hook(lambda _m, _i, out: self.keys.append(out.detach())))
        if self.gradients:
            self._handles.append(attn.qkv.register_forward_hook(lambda _m, _i, out: self.values.append(out.detach())))
            self._handles.append(attn.norm.register_forward_pre_hook(lambda _m, inputs: self.outputs.append(inputs[0])))

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def attentions(self) -> list[torch.Tensor]:
        """``softmax(q k^T * scale)`` per captured call, (N, heads, T, T), as timm's ``Attention.forward``."""
        if len(self.queries) != len(self.keys) or not self.queries:
            raise RuntimeError(f"captured {len(self.queries)} queries and {len(self.keys)} keys; the attention "
                               "modules were not called as timm's Attention calls q_norm and k_norm")
        return [((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
                for (attn, q), k in zip(self.queries, self.keys)]

    def attention_gradients(self, score: torch.Tensor) -> list[torch.Tensor]:
        r"""(N, heads, T, T) :math:`\partial s / \partial W` per captured call, for a scalar ``score`` :math:`s`
        computed from the captured forward pass. Per head :math:`O = W V` is linear in :math:`W`, so
        :math:`\partial s / \partial W = (\partial s / \partial O)\, V^\top` exactly, with no need to switch timm's
        fused attention kernel off."""
        if not self.gradients or len(self.outputs) != len(self.queries) or len(self.values) != len(self.queries):
            raise RuntimeError(f"captured {len(self.queries)} attention calls but {len(self.values)} values and "
                               f"{len(self.outputs)} head outputs; capture with gradients=True around one forward "
                               "pass of modules that call qkv, q_norm, k_norm and norm as timm's Attention does")
        output_gradients = torch.autograd.grad(score, self.outputs)
        result = []
        for (_, q), qkv, gradient in zip(self.queries, self.values, output_gradients):
            n, heads, tokens, dim = q.shape
            values = qkv.reshape(n, tokens, 3, heads, dim)[:, :, 2].transpose(1, 2)      # (N, heads, T, d)
            gradient = gradient.reshape(n, tokens, heads, dim).transpose(1, 2)          # dO, (N, heads, T, d)
            result.append(gradient @ values.transpose(-2, -1))
        return result


def _check_options(head_fusion: str, discard_ratio: float) -> None:
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(map(repr, HEAD_FUSIONS))}, got {head_fusion!r}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio is the fraction of attention weights to drop, in [0, 1), got {discard_ratio}")


def _discard(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the ``discard_ratio`` smallest entries of each (T, T) matrix, keeping entry [0, 0]."""
    n, t, _ = fused.shape
    k = int(t * t * discard_ratio)
    if k == 0:
        return fused
    flat = fused.reshape(n, t * t).clone()
    lowest = flat.topk(k, dim=1, largest=False).indices
    keep = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True).logical_not_()
    keep[:, 0] = True
    return (flat * keep).reshape(n, t, t)


def rollout_from_attentions(attentions: list[torch.Tensor], head_fusion: str = "mean",
                            discard_ratio: float = 0.0) -> torch.Tensor:
    r"""The rolled-out (N, T, T) matrix :math:`A_L \cdots A_1` from per-layer (N, heads, T, T) attention
    probabilities (first layer first); :math:`A_l = (\bar W_l + I)` with rows renormalised to sum to 1, where
    :math:`\bar W_l` fuses the heads."""
    _check_options(head_fusion, discard_ratio)
    if not attentions:
        raise ValueError("rollout needs at least one layer's attention")
    result = None
    for weights in attentions:
        if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
            raise ValueError(f"attention must be (N, heads, T, T), got {tuple(weights.shape)}")
        fuse = {"mean": torch.mean, "max": torch.amax, "min": torch.amin}[head_fusion]
        fused = fuse(weights.float(), dim=1)
        fused = _discard(fused, discard_ratio)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        layer = fused + eye
        layer = layer / layer.sum(dim=-1, keepdim=True)
        result = layer if result is None else layer @ result
    return result


def grid_of(model: nn.Module, num_patches: int, size: tuple[int, int]) -> tuple[int, int]:
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and grid[0] * grid[1] == num_patches:
        return int(grid[0]), int(grid[1])
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise ValueError(f"cannot lay {num_patches} patch tokens out on a grid for a {size[0]}x{size[1]} input; "
                         "the model has no patch_embed.grid_size and the count is not a square")
    return side, side


@torch.no_grad()
def attention_rollout(model: nn.Module, x: torch.Tensor, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      *, raw: bool = False) -> torch.Tensor:
    """Attention rollout maps of a timm-style Vision Transformer for a batch ``x`` (N, C, H, W).

    Args:
        model: a model whose attention modules follow timm's ``Attention`` (``qkv``, ``q_norm``, ``k_norm``,
            ``scale``) and whose first ``model.num_prefix_tokens`` tokens (default 1) are the class and other
            prefix tokens; the class token is token 0.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over heads.
        discard_ratio: fraction in [0, 1) of each layer's smallest fused attention weights set to zero.
        raw: return the (N, h, w) class-token row at patch-grid resolution, unscaled, instead of (N, H, W) maps
            upsampled bilinearly to the input and min-max scaled to [0, 1] per image (camlab's convention).

    The map does not depend on a target class: rollout explains what the class token attends to.
    """
    _check_options(head_fusion, discard_ratio)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (N, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    modules = [m for _, m in attention_modules(model)]
    with preserved_state(model), AttentionCapture(modules) as capture:
        model(x)
    rolled = rollout_from_attentions(capture.attentions(), head_fusion, discard_ratio)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    row = rolled[:, 0, prefix:]
    grid = grid_of(model, row.shape[1], tuple(x.shape[-2:]))
    maps = row.reshape(-1, *grid)
    return maps if raw else scale(upsample(maps, tuple(x.shape[-2:])))
