"""Plumbing shared by the metrics: maps from an explainer or a tensor, batching over tensors or a DataLoader,
model probabilities, the model's normalisation (from its :class:`~camlab.modelinfo.ModelInfo`), rank correlation.
Targets are resolved by :func:`camlab.targets.class_indices`, as in the methods."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from camlab.hooks import preserved_state
from camlab.methods.base import InputMethod
from camlab.modelinfo import info_of
from camlab.progress import progress_bar
from camlab.targets import class_indices, logits_of  # noqa: F401 (the metrics' target resolver)

#: an explainer instance, any callable ``(x, target) -> maps``, or precomputed maps (N,H,W) / (N,3,H,W)
MapSource = Union[Callable[..., torch.Tensor], torch.Tensor, np.ndarray]


class NaNMapError(ValueError):
    """A map given to a metric holds NaN; :func:`refuses_nan_maps` adds the metric's name to the message."""

    def __init__(self, image: int, metric: str = ""):
        self.image, self.metric = image, metric
        where = f"{metric}: " if metric else ""
        super().__init__(f"{where}the map of image {image} contains NaN, and no metric of a NaN map means anything; "
                         "check the explainer (a NaN in the model's output or in a target's score gives one) or "
                         "replace the NaN before measuring")


def refuses_nan_maps(metric: Callable) -> Callable:
    """Decorator of a public metric: a NaN map anywhere inside it raises one :class:`NaNMapError` naming the metric
    (the outermost one, when a metric calls another) and the image."""

    @functools.wraps(metric)
    def checked(*args, **kwargs):
        try:
            return metric(*args, **kwargs)
        except NaNMapError as error:  # the outermost metric names itself (average_drop, not confidence_change)
            raise NaNMapError(error.image, metric.__name__) from None

    return checked


def saliency(maps, offset: int = 0) -> torch.Tensor:
    """Maps as one float (N,H,W) saliency per image.

    (H,W) gets a batch dimension; (N,H,W) is kept; input-space maps (N,3,H,W) (gradient, guided backprop) become
    the largest absolute value over the colour channels, the usual 2-D view of a gradient image (Simonyan et al.,
    2014). Values are not rescaled: every metric here depends on the order of the values or on ratios only, except
    the soft mask of :func:`~camlab.metrics.average_drop`, which rescales itself."""
    maps = maps.detach() if isinstance(maps, torch.Tensor) else torch.as_tensor(maps, device="cpu")
    if not maps.dtype.is_floating_point:
        maps = maps.float()
    if maps.ndim not in (2, 3, 4):
        raise ValueError(f"maps must be (H,W), (N,H,W) or (N,3,H,W), got shape {tuple(maps.shape)}")
    maps = maps[None] if maps.ndim == 2 else maps
    nan = torch.isnan(maps.reshape(maps.shape[0], -1)).any(dim=1)
    if bool(nan.any()):
        raise NaNMapError(offset + int(nan.nonzero()[0, 0]))
    return maps.abs().amax(dim=1) if maps.ndim == 4 else maps


def is_precomputed(explainer: MapSource) -> bool:
    """Whether ``explainer`` holds maps (a tensor or an array) rather than computing them."""
    return isinstance(explainer, (torch.Tensor, np.ndarray))


def _input_count(inputs) -> int | None:
    """How many images ``inputs`` holds: a tensor's batch size, a DataLoader's dataset length, else ``None``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    dataset = getattr(inputs, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def check_precomputed(explainer: MapSource, inputs) -> None:
    """For precomputed maps: one map per input image, at the input's resolution (checked before any work, so that
    extra maps are never silently ignored and a map is never broadcast over several images)."""
    if not is_precomputed(explainer):
        return
    maps = saliency(explainer)
    count = _input_count(inputs)
    if count is not None and maps.shape[0] != count:
        raise ValueError(
            f"got {maps.shape[0]} precomputed maps for {count} input images; give exactly one map per image, in the "
            "inputs' order"
        )
    if isinstance(inputs, torch.Tensor) and tuple(maps.shape[-2:]) != tuple(inputs.shape[-2:]):
        raise ValueError(
            f"precomputed maps are {tuple(maps.shape[-2:])} but the inputs are {tuple(inputs.shape[-2:])}; give maps "
            "at the input's resolution (explainers do this unless raw=True; or camlab.maps.upsample(maps, size))"
        )


def compute_maps(explainer: MapSource, x: torch.Tensor, target, offset: int = 0) -> torch.Tensor:
    """(N,H,W) saliency of ``explainer`` on the batch ``x`` for ``target``; for precomputed maps, rows ``offset`` to
    ``offset + N`` of them (the batch's place in the whole input), checked against ``x``. The one place a metric
    turns its ``explainer`` argument into maps."""
    if is_precomputed(explainer):
        maps = saliency(explainer)[offset:offset + x.shape[0]]
    elif isinstance(explainer, InputMethod):
        # the raw gradient image: the display image maps zero to 0.5, which would turn |.| into nonsense
        maps = saliency(explainer(x, target, raw=True), offset)
    elif callable(explainer):
        maps = saliency(explainer(x, target), offset)
    else:
        raise TypeError(
            "explainer must be an explainer (e.g. camlab.GradCAM(model)), a callable (x, target) -> maps, or a "
            f"tensor of precomputed maps; got {type(explainer).__name__}"
        )
    if maps.shape[0] != x.shape[0] or tuple(maps.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(
            f"maps of shape {tuple(maps.shape)} do not match the inputs {tuple(x.shape)}: give one map per image at "
            "the input's resolution (explainers do this unless raw=True)"
        )
    return maps.to(x.device)


def _length(value) -> int | None:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return len(value) if value.ndim > 0 else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _take(value, start: int, stop: int, n: int):
    """Rows start:stop of a per-image field; a scalar / callable / None is passed unchanged."""
    if _length(value) == n:
        return value[start:stop]
    return value


def batches(inputs, fields: Sequence[Any], batch_size: int, progress: bool, desc: str) -> Iterator[tuple]:
    """Yield ``(x, *fields)`` per batch.

    ``inputs`` is a (N,C,H,W) tensor (then per-image ``fields`` are sliced alongside it, scalars and callables
    are passed as they are) or an iterable of batches such as a ``DataLoader``, whose items are ``x`` or tuples
    ``(x, field1, field2, ...)`` in the order a metric documents; an explicit (non-``None``) field argument
    overrides the loader's."""
    if isinstance(inputs, torch.Tensor):
        n = inputs.shape[0]
        if n == 0:
            raise ValueError("inputs is an empty batch")
        starts = range(0, n, batch_size)
        for start in progress_bar(starts, progress, desc=desc, total=len(starts), leave=False):
            stop = min(start + batch_size, n)
            yield (inputs[start:stop], *(_take(value, start, stop, n) for value in fields))
        return
    if not isinstance(inputs, Iterable):
        raise TypeError(f"inputs must be a (N,C,H,W) tensor or a DataLoader of batches, not {type(inputs).__name__}")
    total = len(inputs) if hasattr(inputs, "__len__") else None
    for item in progress_bar(inputs, progress, desc=desc, total=total, leave=False):
        if isinstance(item, dict):
            raise TypeError("DataLoader batches must be tensors or tuples (x, ...), not dicts")
        item = tuple(item) if isinstance(item, (list, tuple)) else (item,)
        x, rest = item[0], item[1:]
        merged = [given if given is not None else (rest[i] if i < len(rest) else None)
                  for i, given in enumerate(fields)]
        yield (x, *merged)


def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Softmax probabilities (M, classes) of ``model`` on ``x`` in eval mode, without gradients, in chunks of
    ``batch_size``; the model's mode is restored afterwards. The logits are found in the output as for class-index
    targets (:func:`camlab.targets.logits_of`: a tensor, a tuple's first item, a ``logits`` field)."""
    outputs = []
    with preserved_state(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = logits_of(model(x[start:start + batch_size]))
            if logits.ndim != 2:
                raise ValueError(
                    f"the model returned shape {tuple(logits.shape)}; this metric needs (N, classes) logits"
                )
            outputs.append(logits.float().softmax(dim=1))
    return torch.cat(outputs)


def to_image(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Model inputs back to [0,1] pixel space (:meth:`ModelInfo.unnormalize`, no clamping); unchanged for a model
    without camlab info."""
    info = info_of(model)
    return x if info is None else info.unnormalize(x)


def to_input(image: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Pixel-space images to model inputs (:meth:`ModelInfo.normalize`); unchanged for a model without camlab info."""
    info = info_of(model)
    return image if info is None else info.normalize(image)


def on_cpu(values) -> torch.Tensor:
    """A tensor, an array or a list as a detached CPU tensor (host-side bookkeeping never lands on
    ``torch.set_default_device``'s device)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    return torch.as_tensor(values, device="cpu")


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps (flattened), with average ranks for ties, in [-1, 1].

    A constant map has no order, so its correlation is defined here as 0.0 (scipy would give NaN)."""
    a = np.asarray(on_cpu(a).double()).ravel()
    b = np.asarray(on_cpu(b).double()).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps to correlate differ in size: {a.size} vs {b.size} values")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denominator == 0:
        return 0.0
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))
