r"""From a layer's raw output to an (N,C,h,w) feature map, and back: the layer's *layout*.

Every layer method works on a feature map :math:`A \in \mathbb{R}^{N \times C \times h \times w}`. Not every layer
outputs one: a Vision Transformer block outputs tokens (N, L, C), a Swin stage or a ConvNeXt MLP outputs
channels-last maps (N, H, W, C). A :class:`Layout` converts such an output to (N,C,h,w) (:meth:`Layout.to_map`)
and puts a changed map back into the output's own layout (:meth:`Layout.from_map`, for Ablation-CAM).

How a layer's layout is decided, in this order (never by guessing from the shape alone):

1. ``reshape_transform`` given by the user (the convention of pytorch-grad-cam and torchcam): always wins. Its
   result must be a 4-D tensor with the batch size of the input.
2. Token outputs (N, L, C) of a timm Vision Transformer (ViT, DeiT, ...: a module with ``num_prefix_tokens`` and a
   ``patch_embed``, the model itself or the enclosing submodule): the patch grid :math:`g_h \times g_w` is
   ``patch_embed.grid_size`` (or, for ``dynamic_img_size`` models, ``patch_embed.dynamic_feat_size`` of the
   input size). With :math:`L = p + g_h g_w` (``p = num_prefix_tokens``: class and distillation tokens) the prefix
   is dropped and the patches, which timm orders row-major, become the grid:
   ``t[:, p:].reshape(N, gh, gw, C).permute(0, 3, 1, 2)``. :math:`L = g_h g_w` (no prefix, e.g. the patch embedding)
   works too. Tokens without such metadata raise an error that shows the shape and a ``reshape_transform``.
3. 4-D outputs, decided from one traced forward pass (:func:`trace_layouts`), per module in execution order:

   * modules that act on dim 1 give NCHW: convolutions, batch/group/instance norm, 2-D pooling, upsampling;
   * ``nn.Linear`` on a 4-D tensor and ``nn.LayerNorm`` over the last dim give NHWC (they act on the last dim);
     a LayerNorm over dim 1 (timm's and torchvision's ``LayerNorm2d``) gives NCHW;
   * torchvision's ``Permute`` module maps NCHW with ``dims [0, 2, 3, 1]`` to NHWC and NHWC with
     ``[0, 3, 1, 2]`` back;
   * any other module (activations, dropout, identity, drop-path, containers, your own modules) inherits: a
     container from its last finished submodule whose output has the same shape, any module from its input when
     the input is a tensor of the same shape with a known layout, else from the last finished module with the
     same output shape (a functional ``x.permute`` in a ``forward`` changes the shape, so it is never inherited
     across; where C = H = W the shape cannot tell, and such a layer is undecided);
   * a model with no channels-last evidence at all (no Linear/LayerNorm on a tensor of 3 or more dims, no Permute,
     no timm ``output_fmt == "NHWC"``, no transformer tokens) is a CNN: its undecided 4-D outputs are NCHW, as
     camlab always took them;
   * otherwise an undecided 4-D output raises an error with the shape seen and a ``reshape_transform`` example.

The layouts are recorded once per (model, input size), by hooks on every module during the first explaining pass
itself (:class:`LayoutReader`; no extra forward pass), and cached in a ``WeakKeyDictionary`` on the model (the cache
goes when the model does; a module replaced under the same name is recorded again). ``layer=None`` and
:func:`camlab.layers` trace a pass of their own on one image (:func:`trace_layouts`).

Gradients. For the built-in layouts and every ``reshape_transform`` that only selects and rearranges entries of the
output (indexing, reshape, permute), the map :math:`A = T(O)` is a selection :math:`A_j = O_{\sigma(j)}`, so by the
chain rule :math:`\partial y / \partial A_j = \partial y / \partial O_{\sigma(j)}` with the other entries (e.g. the
class token) held fixed: the gradient with respect to the map is :math:`T(\partial y / \partial O)`, which is how
:func:`camlab.methods.forward.capture` computes it (and how pytorch-grad-cam applies its ``reshape_transform`` to
gradients; for a transform that mixes entries, that is the peers' convention, not a derivative).
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from camlab.hooks import add_forward_hooks, model_name, preserved_state, remove_hooks

NCHW, NHWC, TOKENS, CUSTOM = "NCHW", "NHWC", "tokens", "reshape_transform"

#: modules whose operation is on dim 1 of a 4-D tensor: their output is NCHW
_CHANNELS_FIRST = (
    nn.Conv2d, nn.ConvTranspose2d, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.LocalResponseNorm,
)
_PERMUTES = {(NCHW, (0, 2, 3, 1)): NHWC, (NHWC, (0, 3, 1, 2)): NCHW}


@dataclass(frozen=True)
class Layout:
    """How a layer's output is laid out: ``kind`` NCHW, NHWC, tokens (``prefix`` tokens, then a row-major
    ``grid`` of patch tokens) or a user's ``transform``. ``str(layout)``: ``NCHW``, ``NHWC``, ``tokens 1+8x8``."""

    kind: str
    prefix: int = 0
    grid: tuple[int, int] = (0, 0)
    transform: Callable | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"tokens {self.prefix}+{self.grid[0]}x{self.grid[1]}" if self.kind == TOKENS else self.kind

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The (N,C,h,w) feature map of a layer's raw ``output`` (differentiable)."""
        if self.kind == NCHW:
            return output
        if self.kind == NHWC:
            return output.permute(0, 3, 1, 2)
        if self.kind == TOKENS:
            n, length, channels = output.shape
            if length != self.prefix + self.grid[0] * self.grid[1]:
                raise ValueError(f"expected {self.prefix}+{self.grid[0]}x{self.grid[1]} tokens, got shape "
                                 f"{tuple(output.shape)}")
            return output[:, self.prefix:].reshape(n, *self.grid, channels).permute(0, 3, 1, 2)
        return self.transform(output)

    def from_map(self, maps: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_map`: a batch of B (changed) maps (B,C,h,w) put back into the layout of the
        layer's ``output`` (batch B, or batch 1 for B copies of one image); entries the map does not hold (prefix
        tokens) are taken from ``output``."""
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"this method writes changed maps back into the layer's output, which camlab does for a "
                             f"layer returning one tensor, not {type(output).__name__}; choose the module that "
                             "produces the tensor your reshape_transform picks")
        b = maps.shape[0]
        if self.kind == NCHW:
            return maps
        if self.kind == NHWC:
            return maps.permute(0, 2, 3, 1)
        source = output if output.shape[0] == b else output[:1].expand(b, *output.shape[1:])
        if self.kind == TOKENS:
            return torch.cat([source[:, :self.prefix], maps.flatten(2).transpose(1, 2)], dim=1)
        index = selection_index(self.transform, output)
        restored = source.reshape(b, -1).clone()
        restored[:, index.flatten()] = maps.reshape(b, -1).to(restored.dtype)
        return restored.reshape(b, *output.shape[1:])


def selection_index(transform: Callable, output: torch.Tensor) -> torch.Tensor:
    """For a ``transform`` that only selects and rearranges entries: the (1,C,h,w) index into ``output[:1]``
    (flattened) of each map entry, found by transforming a tensor of indices; else a ``ValueError``."""
    one = output[:1].detach()
    indices = torch.arange(one.numel(), dtype=torch.float64, device=one.device).reshape(one.shape)
    try:
        picked = transform(indices)
        index = picked.long()
        ok = (picked.ndim == 4 and torch.equal(picked, index.to(picked.dtype)) and int(index.min()) >= 0
              and index.unique().numel() == index.numel()
              and torch.equal(transform(one), one.flatten()[index.flatten()].reshape(index.shape)))
    except Exception:  # noqa: BLE001 (any failure means: not a pure selection)
        ok = False
    if not ok:
        raise ValueError(
            "this reshape_transform does not only select and rearrange the layer's output entries (indexing, reshape, "
            "permute), so a changed map cannot be put back into the layer; Ablation-CAM needs that. Use a transform "
            "such as lambda t: t[:, 1:].reshape(t.shape[0], 14, 14, -1).permute(0, 3, 1, 2), or another method"
        )
    return index


def check_map(name: str, feature_map, n: int, transform: Callable | None, ndim: int = 4) -> torch.Tensor:
    """``feature_map`` if it is an (N,C,h,w) tensor (``ndim`` 4; (N,C,d,h,w) for a 3-D input, ``ndim`` 5) with the
    input's batch size ``n``, else a clear error."""
    source = "reshape_transform returned" if transform is not None else "gives"
    shape = tuple(feature_map.shape) if isinstance(feature_map, torch.Tensor) else type(feature_map).__name__
    expected = "(N,C,H,W)" if ndim == 4 else "(N,C,D,H,W)"
    if not isinstance(feature_map, torch.Tensor) or feature_map.ndim != ndim or feature_map.shape[0] != n:
        fix = (f"reshape_transform must map the layer's output to {expected}" if transform is not None else
               f"choose a layer with such an output (see camlab.layers(model)), or pass reshape_transform mapping the "
               f"layer's output to {expected}")
        raise ValueError(f"layer {name!r}: {source} {shape}, not an {expected} feature map with N = {n} (the "
                         f"batch size); {fix}")
    return feature_map


def _tokens_hint(shape: tuple[int, ...]) -> str:
    length = shape[1]
    for prefix in (1, 0):
        side = math.isqrt(length - prefix)
        if side * side == length - prefix and side > 1:
            drop = "t[:, 1:]" if prefix else "t"
            what = "one class token, then" if prefix else "no class token,"
            return (f"e.g. for {what} a {side}x{side} grid of patches in row-major order: "
                    f"reshape_transform=lambda t: {drop}.reshape(t.shape[0], {side}, {side}, t.shape[2])"
                    ".permute(0, 3, 1, 2)")
    return ("e.g. reshape_transform=lambda t: t[:, PREFIX:].reshape(t.shape[0], GRID_H, GRID_W, t.shape[2])"
            ".permute(0, 3, 1, 2)")


def tokens_problem(name: str, shape: tuple[int, ...]) -> str:
    return (f"layer {name!r} outputs tokens of shape {shape} (N, L, C); camlab cannot tell for certain which of the "
            f"{shape[1]} tokens are patches on which grid (no timm num_prefix_tokens / patch_embed.grid_size); pass "
            f"reshape_transform, {_tokens_hint(shape)}")


def channels_problem(name: str, shape: tuple[int, ...]) -> str:
    return (f"layer {name!r} outputs shape {shape} and camlab cannot tell whether it is (N,C,H,W) or channels-last "
            "(N,H,W,C): this model has channels-last layers and no module camlab knows produced this tensor; pass "
            "reshape_transform=lambda t: t.permute(0, 3, 1, 2) if it is (N,H,W,C), or "
            "reshape_transform=lambda t: t if it is (N,C,H,W)")


def not_spatial_problem(name: str, shape: tuple[int, ...]) -> str:
    return (f"layer {name!r} outputs shape {shape}, not a spatial feature map (N,C,H,W), (N,H,W,C) or tokens "
            "(N,L,C); choose a layer with a spatial output (see camlab.layers(model)) or pass reshape_transform")


# ---------------------------------------------------------------------------------------------------------------
# Tracing: one forward pass that decides every layer's layout


@dataclass
class TracedLayer:
    """One module's output in a traced pass: ``layout`` when decided, else ``problem`` (why not);
    ``own`` whether the module's own operation decided it (not inheritance)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    layout: Layout | None = None
    problem: str | None = None
    evidence: bool = False  # a channels-last operation (Linear / LayerNorm on >= 3 dims, Permute)


def _layer_norm_layout(module: nn.LayerNorm, shape: tuple[int, ...]) -> str | None:
    if len(module.normalized_shape) != 1:
        return None
    channels = module.normalized_shape[0]
    last, first = shape[-1] == channels, shape[1] == channels
    if last and not first:
        return NHWC
    if first and not last:
        return NCHW
    if type(module).__name__.endswith("2d"):
        return NCHW
    return NHWC if type(module).forward is nn.LayerNorm.forward else None


def _own_layout(module: nn.Module, shape: tuple[int, ...], input_layout: str | None) -> str | None:
    """The layout a module's own operation gives its 4-D output; ``None`` when it inherits one."""
    if isinstance(module, _CHANNELS_FIRST):
        return NCHW
    if isinstance(module, nn.Linear):
        return NHWC
    if isinstance(module, nn.LayerNorm):
        return _layer_norm_layout(module, shape)
    if type(module).__name__ == "Permute" and hasattr(module, "dims"):
        return _PERMUTES.get((input_layout, tuple(module.dims)))
    return None


def _inherited(record: TracedLayer, records: list[TracedLayer], input_layout: str | None, same_input: bool,
               container: bool) -> str | None:
    """The layout a module without its own rule inherits (see the module docstring), or ``None``."""
    prefix = record.name + "."
    if container:
        for other in reversed(records):
            if other.name.startswith(prefix) and other.shape == record.shape and other.layout is not None:
                return _unless_cube(other.layout.kind, record.shape)
    if same_input and input_layout is not None:
        return input_layout
    for other in reversed(records):
        if other.shape == record.shape and other.layout is not None and other.layout.kind in (NCHW, NHWC):
            return _unless_cube(other.layout.kind, record.shape)
    return None


def _unless_cube(kind: str, shape: tuple[int, ...]) -> str | None:
    """A layout matched by shape only is not certain when C = H = W (both readings have the same shape)."""
    return None if shape[1] == shape[2] == shape[3] else kind


def vit_owner(model: nn.Module, name: str) -> nn.Module | None:
    """The timm Vision Transformer (``num_prefix_tokens`` + ``patch_embed``) that contains layer ``name``."""
    owner = None
    for prefix, module in model.named_modules():
        inside = prefix == "" or name == prefix or name.startswith(prefix + ".")
        if inside and hasattr(module, "num_prefix_tokens") and hasattr(module, "patch_embed"):
            owner = module
    return owner


def token_grid(owner: nn.Module, size: tuple[int, int]) -> tuple[int, int] | None:
    """The patch grid of a timm ViT for an input of spatial ``size``."""
    embed = owner.patch_embed
    if getattr(owner, "dynamic_img_size", False) and hasattr(embed, "dynamic_feat_size"):
        return tuple(int(v) for v in embed.dynamic_feat_size(size))
    grid = getattr(embed, "grid_size", None)
    return tuple(int(v) for v in grid) if grid is not None else None


def _tokens_layout(model: nn.Module, record: TracedLayer, size: tuple[int, int]) -> None:
    owner = vit_owner(model, record.name)
    grid = token_grid(owner, size) if owner is not None else None
    if grid is not None:
        for prefix in dict.fromkeys((int(owner.num_prefix_tokens), 0)):
            if record.shape[1] == prefix + grid[0] * grid[1]:
                record.layout = Layout(TOKENS, prefix, grid)
                return
    record.problem = tokens_problem(record.name, record.shape)


def _channels_last_model(model: nn.Module, records: list[TracedLayer]) -> bool:
    """Whether anything in the model lays out channels last (then an undecided 4-D output is not taken as NCHW)."""
    declared = any(str(getattr(getattr(m, "output_fmt", None), "value", getattr(m, "output_fmt", None))) == NHWC
                   for m in model.modules())
    tokens = any(r.layout is not None and r.layout.kind == TOKENS for r in records)
    return declared or tokens or any(r.evidence for r in records)


class LayoutRecorder:
    """Forward hooks on every submodule that record each output's shape and layout during a pass the caller runs
    (``records``, in the order the forward calls finished; decided at exit). Hooks registered before these (e.g.
    :class:`camlab.hooks.ActivationCapture`'s) run first, so the tensors seen are the ones passed on."""

    def __init__(self, model: nn.Module, size: tuple[int, int]):
        self.model, self.size = model, tuple(size)
        self.records: list[TracedLayer] = []
        self._produced: dict[int, str] = {}
        self._keep: list[torch.Tensor] = []  # keeps the ids in _produced unique during the pass
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            record = TracedLayer(name, module, tuple(output.shape))
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            record.evidence = ((isinstance(module, (nn.Linear, nn.LayerNorm)) and output.ndim >= 3
                                and _own_layout(module, record.shape, None) != NCHW)
                               or type(module).__name__ == "Permute")
            if output.ndim == 4:
                input_layout = self._produced.get(id(first)) if first is not None else None
                kind = _own_layout(module, record.shape, input_layout)
                if kind is None:
                    same = first is not None and tuple(first.shape) == record.shape
                    kind = _inherited(record, self.records, input_layout, same, any(True for _ in module.children()))
                if kind is not None:
                    record.layout = Layout(kind)
                    self._produced[id(output)] = kind
                    self._keep.append(output)
            elif output.ndim == 3:
                _tokens_layout(self.model, record, self.size)
            self.records.append(record)
        return hook

    def __enter__(self) -> "LayoutRecorder":
        # every named submodule but TorchScript ones, which take no hooks
        add_forward_hooks(self._handles, ((module, self._hook(name)) for name, module in self.model.named_modules()
                                          if name and not isinstance(module, torch.jit.ScriptModule)))
        return self

    def __exit__(self, *exc) -> None:
        remove_hooks(self._handles)
        self._produced.clear()
        self._keep.clear()
        _settle(self.model, self.records)


def trace_layouts(model: nn.Module, x: torch.Tensor) -> list[TracedLayer]:
    """Run ``model`` once on ``x`` (no grad, eval mode, state restored) and return every submodule's output shape
    and layout (or why it has none), in the order their forward calls finished."""
    with preserved_state(model), LayoutRecorder(model, tuple(x.shape[-2:])) as recorder, torch.no_grad():
        model(x)
    return recorder.records


def _settle(model: nn.Module, records: list[TracedLayer]) -> None:
    """Undecided 4-D outputs: NCHW in a model without channels-last evidence, else a problem; others: a problem."""
    channels_last = _channels_last_model(model, records)
    for record in records:
        if record.layout is not None or record.problem is not None:
            continue
        if len(record.shape) == 4:
            if channels_last:
                record.problem = channels_problem(record.name, record.shape)
            else:
                record.layout = Layout(NCHW)
        elif len(record.shape) == 5 and not channels_last:  # a 3-D CNN's (N,C,D,H,W) volume
            record.layout = Layout(NCHW)
        else:
            record.problem = not_spatial_problem(record.name, record.shape)


# ---------------------------------------------------------------------------------------------------------------
# The cache and the one entry point


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def traced_layouts(model: nn.Module, x: torch.Tensor) -> list[TracedLayer]:
    """:func:`trace_layouts` for inputs shaped like ``x``, traced once on ``x[:1]`` and then cached."""
    per_model = _CACHE.setdefault(model, {})
    key = tuple(x.shape[1:])
    if key not in per_model:
        per_model[key] = trace_layouts(model, x[:1])
    return per_model[key]


def model_layouts(model: nn.Module, x: torch.Tensor) -> dict[str, TracedLayer]:
    """Every layer's :class:`TracedLayer` by name (the last call of a module that runs twice) for inputs like ``x``."""
    return {record.name: record for record in traced_layouts(model, x)}


class LayoutReader:
    """The layouts of the ``(name, module)`` ``layers`` for a pass the caller runs inside this context: when they
    are not cached yet (and no ``reshape_transform`` is given), a :class:`LayoutRecorder` records them in that very
    pass, so no extra forward pass is run; :meth:`layouts` afterwards (raises for an undecidable layer)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, layers: list[tuple[str, nn.Module]],
                 reshape_transform: Callable | None = None):
        self.model, self.x, self.layers, self.transform = model, x, layers, reshape_transform
        self._recorder: LayoutRecorder | None = None

    def _cached(self) -> bool:
        known = _CACHE.get(self.model, {}).get(tuple(self.x.shape[1:]))
        names = {record.name: record.module for record in known} if known is not None else {}
        return all(names.get(name) is module for name, module in self.layers)

    def __enter__(self) -> "LayoutReader":
        if self.transform is None and not self._cached():
            self._recorder = LayoutRecorder(self.model, tuple(self.x.shape[-2:])).__enter__()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._recorder is not None:
            self._recorder.__exit__()
            if exc_type is None:
                _CACHE.setdefault(self.model, {})[tuple(self.x.shape[1:])] = self._recorder.records

    def layouts(self) -> list[Layout | None]:
        return [layout_for(self.model, self.x, name, module, self.transform) for name, module in self.layers]


def layout_for(model: nn.Module, x: torch.Tensor, name: str, module: nn.Module,
               reshape_transform: Callable | None = None) -> Layout | None:
    """The layout of layer ``name`` (``module``) of ``model`` for inputs like ``x``: the user's
    ``reshape_transform`` when given, else the traced one; a layer whose layout cannot be decided raises a
    ``ValueError`` that says why and shows a ``reshape_transform``. ``None`` when the layer did not run in the traced
    pass (the capture then reports it)."""
    if reshape_transform is not None:
        return Layout(CUSTOM, transform=reshape_transform)
    record = model_layouts(model, x).get(name)
    if record is None or record.module is not module:  # the model changed since it was traced
        _CACHE.get(model, {}).pop(tuple(x.shape[1:]), None)
        record = model_layouts(model, x).get(name)
    if record is None:
        return None
    if record.layout is None:
        raise ValueError(f"{record.problem} (model {model_name(model)})")
    return record.layout


# ---------------------------------------------------------------------------------------------------------------
# The default layer


def positions(record: TracedLayer) -> int:
    """The number of spatial positions of a layer's map (0 without a layout)."""
    layout, shape = record.layout, record.shape
    if layout is None:
        return 0
    if layout.kind == TOKENS:
        return layout.grid[0] * layout.grid[1]
    if layout.kind == NCHW:
        return math.prod(shape[2:])
    return shape[1] * shape[2]


def _vit_norm1(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``blocks[-1].norm1`` of the outermost timm Vision Transformer in ``model``, if any."""
    names = {module: name for name, module in model.named_modules()}
    for module in model.modules():
        blocks = getattr(module, "blocks", None)
        if hasattr(module, "num_prefix_tokens") and hasattr(module, "patch_embed") and blocks is not None:
            last = list(blocks)[-1] if len(blocks) else None
            norm1 = getattr(last, "norm1", None)
            if isinstance(norm1, nn.Module):
                return names[norm1], norm1
    return None


def default_layer(model: nn.Module, x: torch.Tensor, skip: tuple[type, ...] = ()) -> tuple[str, nn.Module]:
    """The layer ``layer=None`` stands for.

    * A timm Vision Transformer (ViT, DeiT: class token + patch tokens): ``blocks[-1].norm1``, the input of the last
      attention. After the last block only the class token is read by the head, so the final norm's patch tokens
      get no gradient; at the last block's first norm every patch token still stands for its own position, and the
      last attention is the step that carries them to the class token (pytorch-grad-cam's ViT example uses the
      same layer).
    * Anything else, Swin included: the last module (in execution order) whose output has a known layout (NCHW,
      NHWC or tokens) with more than one position, skipping ``skip`` (pooling, flatten, dropout, identity). For timm's
      Swin that is the final ``norm`` (N,7,7,768), NHWC: the head averages it over the positions and applies one
      linear layer, exactly a CNN's GAP head, so it is the analogue of a CNN's last convolutional layer (CAM itself
      applies there), and at the last stage a 7x7 window already covers the whole map, so the last block's norm1
      would not be more local.

    Never the stem: if a layer *after* the candidate has an output whose layout camlab cannot decide (e.g.
    torchvision's ViT, whose encoder outputs tokens without grid metadata), this raises that layer's error instead
    of silently falling back to an early layer."""
    vit = _vit_norm1(model)
    if vit is not None:
        return vit
    records = traced_layouts(model, x)
    for index in range(len(records) - 1, -1, -1):
        record = records[index]
        volume_match = (len(record.shape) == 5) == (x.ndim == 5)  # a 3-D input needs a (N,C,D,H,W) layer
        if positions(record) > 1 and volume_match and not isinstance(record.module, skip):
            undecided = [r for r in records[index + 1:] if r.problem is not None and len(r.shape) >= 3]
            if undecided:
                raise ValueError(f"{undecided[-1].problem}; camlab does not fall back to the earlier layer "
                                 f"{record.name!r} silently: pass layer=... (and reshape_transform=...)")
            return record.name, record.module
    raise ValueError(
        f"{model_name(model)} has no layer with a spatial (N,C,H,W) output; pass layer=... explicitly"
    )


#: modules ``layer=None`` passes over: their output is a pooled, flattened or unchanged copy of a layer before them
_POOLING = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity,
    nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, nn.AvgPool3d, nn.MaxPool3d, nn.Dropout3d,
)


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The layer ``layer=None`` stands for (:func:`default_layer`): for CNNs the last module (in execution order)
    whose output is a feature map larger than 1x1 (5-D for a 3-D input), skipping pooling, flatten, dropout and
    identity layers; ``blocks[-1].norm1`` for a timm Vision Transformer; never an early layer when a later one's
    layout is unknown."""
    return default_layer(model, x, skip=_POOLING)
