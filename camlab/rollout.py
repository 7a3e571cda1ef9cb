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
    r"""Forward hooks on each attention module's ``q_norm`` / ``k_norm`` that keep (N, heads, T, d) queries and
    keys; :meth:`attentions` recomputes the (N, heads, T, T) attention probabilities of every call, in call order.
    Use as a context manager: the hooks are removed on exit, also after an exception.

    With ``gradients=True`` it also keeps each call's values (from the output of ``qkv``) and, still in the autograd
    graph, the heads' outputs :math:`O = W V` (the input of the module's ``norm``, which timm applies right after
    the attention, an ``nn.Identity`` unless ``scale_norm``); :meth:`attention_gradients` turns the gradient of a
    score with respect to :math:`O` into its gradient with respect to :math:`W` (used by :mod:`camlab.chefer`), and
    :meth:`attention_gradient` does so for one call and its own score (used by :mod:`camlab.legrad`).

    A batch-first self-attention ``nn.MultiheadAttention`` (torchvision's ``VisionTransformer``) is captured by one
    forward hook instead: its queries, keys and values are recomputed from its input with ``in_proj_weight``, and
    its output :math:`O W_o^\top + b_o` stays in the graph, so :math:`\partial s / \partial O` is the gradient
    at that output times :math:`W_o`. Masks, added key/value biases and cross-attention are refused."""

    def __init__(self, modules: list[nn.Module], *, gradients: bool = False):
        self.modules = list(modules)
        self.gradients = gradients
        self.queries: list[tuple[float, torch.Tensor]] = []          # (scale, (N, heads, T, d) queries)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []                         # (N, heads, T, d)
        self.outputs: list[tuple[torch.Tensor, torch.Tensor | None]] = []   # (heads' output in the graph, W_o)
        self._handles: list = []

    def __enter__(self) -> "AttentionCapture":
        try:
            for attn in self.modules:
                if isinstance(attn, nn.MultiheadAttention):
                    self._handles.append(attn.register_forward_hook(
                        lambda m, args, kwargs, out: self._torch_call(m, args, kwargs, out), with_kwargs=True))
                else:
                    self._register(attn)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _register(self, attn: nn.Module) -> None:
        self._handles.append(attn.q_norm.register_forward_hook(
            lambda _m, _i, out, attn=attn: self.queries.append((attn.scale, out.detach()))))
        self._handles.append(attn.k_norm.register_forward_hook(lambda _m, _i, out: self.keys.append(out.detach())))
        if self.gradients:
            self._handles.append(attn.qkv.register_forward_hook(
                lambda _m, _i, out, attn=attn: self.values.append(_timm_values(out.detach(), attn.num_heads))))
            self._handles.append(attn.norm.register_forward_pre_hook(
                lambda _m, inputs: self.outputs.append((inputs[0], None))))

    def _torch_call(self, attn: nn.MultiheadAttention, args: tuple, kwargs: dict, output) -> None:
        query = _self_attention_input(attn, args, kwargs)
        n, tokens, width = query.shape
        heads = attn.num_heads
        bias = None if attn.in_proj_bias is None else attn.in_proj_bias.detach()
        projected = torch.nn.functional.linear(query.detach(), attn.in_proj_weight.detach(), bias)
        q, k, v = (part.reshape(n, tokens, heads, width // heads).transpose(1, 2) for part in projected.chunk(3, -1))
        self.queries.append(((width // heads) ** -0.5, q))
        self.keys.append(k)
        if self.gradients:
            self.values.append(v)
            self.outputs.append((output[0], attn.out_proj.weight.detach()))

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def attentions(self) -> list[torch.Tensor]:
        """``softmax(q k^T * scale)`` per captured call, (N, heads, T, T), as timm's ``Attention.forward``."""
        if len(self.queries) != len(self.keys) or not self.queries:
            raise RuntimeError(f"captured {len(self.queries)} queries and {len(self.keys)} keys; the attention "
                               "modules were not called as timm's Attention calls q_norm and k_norm")
        return [((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) for (scale, q), k in zip(self.queries, self.keys)]

    def _check_gradients(self) -> None:
        if not self.gradients or len(self.outputs) != len(self.queries) or len(self.values) != len(self.queries):
            raise RuntimeError(f"captured {len(self.queries)} attention calls but {len(self.values)} values and "
                               f"{len(self.outputs)} head outputs; capture with gradients=True around one forward "
                               "pass of modules that call qkv, q_norm, k_norm and norm as timm's Attention does")

    def _weight_gradient(self, call: int, output_gradient: torch.Tensor) -> torch.Tensor:
        n, heads, tokens, dim = self.queries[call][1].shape
        out_weight = self.outputs[call][1]
        if out_weight is not None:                                                       # dO = d(O W_o^T + b) W_o
            output_gradient = output_gradient @ out_weight
        gradient = output_gradient.reshape(n, tokens, heads, dim).transpose(1, 2)      # dO, (N, heads, T, d)
        return gradient @ self.values[call].transpose(-2, -1)

    def attention_gradients(self, score: torch.Tensor) -> list[torch.Tensor]:
        r"""(N, heads, T, T) :math:`\partial s / \partial W` per captured call, for a scalar ``score`` :math:`s`
        computed from the captured forward pass. Per head :math:`O = W V` is linear in :math:`W`, so
        :math:`\partial s / \partial W = (\partial s / \partial O)\, V^\top` exactly, with no need to switch timm's
        fused attention kernel off."""
        self._check_gradients()
        output_gradients = torch.autograd.grad(score, [output for output, _ in self.outputs])
        return [self._weight_gradient(call, gradient) for call, gradient in enumerate(output_gradients)]

    def attention_gradient(self, score: torch.Tensor, call: int) -> torch.Tensor:
        r"""(N, heads, T, T) :math:`\partial s / \partial W` of captured call ``call`` alone, for a scalar ``score``
        that may differ from call to call (the graph is kept for the next call's score)."""
        self._check_gradients()
        (output_gradient,) = torch.autograd.grad(score, self.outputs[call][0], retain_graph=True)
        return self._weight_gradient(call, output_gradient)


def _timm_values(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, heads, T, d) values from the (N, T, 3 * heads * d) output of timm's ``qkv``."""
    n, tokens, width = qkv.shape
    return qkv.reshape(n, tokens, 3, heads, width // (3 * heads))[:, :, 2].transpose(1, 2)


_MHA_ARGUMENTS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                  "is_causal")


def _self_attention_input(attn: nn.MultiheadAttention, args: tuple, kwargs: dict) -> torch.Tensor:
    """The (N, T, E) input of a batch-first ``nn.MultiheadAttention`` self-attention call; what the capture cannot
    recompute exactly is refused."""
    call = {**dict(zip(_MHA_ARGUMENTS, args)), **kwargs}
    query = call.get("query")
    problems = [text for bad, text in (
        (not attn.batch_first, "batch_first=False"),
        (not attn._qkv_same_embed_dim or attn.in_proj_weight is None, "separate q/k/v projections"),
        (attn.bias_k is not None or attn.add_zero_attn, "added key/value tokens (add_bias_kv, add_zero_attn)"),
        (call.get("key") is not query or call.get("value") is not query, "cross-attention (key/value not the query)"),
        (call.get("key_padding_mask") is not None or call.get("attn_mask") is not None or call.get("is_causal"),
         "an attention mask"),
        (not isinstance(query, torch.Tensor) or query.ndim != 3, "an input that is not (N, T, E)"))
        if bad]
    if problems:
        raise ValueError(f"cannot capture the attention of this nn.MultiheadAttention call ({'; '.join(problems)}): "
                         "only batch-first self-attention x -> attn(x, x, x) without masks, as torchvision's "
                         "VisionTransformer calls it, is supported")
    return query


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
