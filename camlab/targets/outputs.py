"""What a model returned, whatever its structure: a tensor, a tuple or list of tensors, a dict (torchvision
segmentation's ``{"out": ...}``), a dataclass or a Hugging Face ``ModelOutput``, a list with one dict per image
(torchvision detection).

* :func:`logits_of` - the class logits in an output, for class-index targets: the tensor itself, the first item of a
  tuple/list, or the ``logits`` entry of a dict / attribute of an object; anything else is an error that points to
  callable targets and the target objects;
* :func:`dense_of` - the dense (N,K,H,W) score maps of a segmentation output (the tensor, ``{"out": ...}``, or logits);
* :func:`detach` - the output with every tensor in it detached, structure kept;
* :func:`batch_size` and :func:`split` - how many images an output holds, and image ``i`` of it with the batch
  dimension kept (every tensor whose first dimension is the batch size is sliced ``[i:i+1]``, a list of one dict per
  image becomes ``[output[i]]``, everything else is kept).

A *list* whose items are all dicts is read as one dict per image (torchvision's detection models); a *tuple* is read
as several outputs of the whole batch (``(logits, features)``). Any other object is kept whole: class indices read
its ``logits`` attribute and callables receive it as it is, but it cannot be split per image (a per-image list of
callables needs one of the structures above).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch


def describe(output: Any) -> str:
    """A short description of an output's structure, for error messages."""
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output)}"
    if isinstance(output, (list, tuple)):
        kinds = sorted({type(item).__name__ for item in output})
        return f"a {type(output).__name__} of {len(output)} items ({', '.join(kinds)})"
    return f"a {type(output).__name__} object"


def _field(output: Any, name: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


def logits_of(output: Any) -> torch.Tensor:
    """The class logits in a model output: the output itself when it is a tensor, the first item of a tuple or list
    when that is a tensor, else the ``logits`` entry of a dict or attribute of an object (Hugging Face style)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    logits = _field(output, "logits")
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(
        f"the model returned {describe(output)}; class-index targets (None, an int, one int per image) need class "
        "logits: a tensor, a tuple/list whose first item is the logits, or a dict/object with a 'logits' field. "
        "Pass a callable target (output -> (N,) scores, given the output exactly as the model returns it) or a "
        "target object from camlab.targets (SegmentationTarget, DetectionTarget, EmbeddingTarget, BinaryTarget)"
    )


def dense_of(output: Any) -> torch.Tensor:
    """The dense (N,K,H,W) class score maps of a segmentation output: the tensor itself, the ``"out"`` entry of a
    dict (torchvision's segmentation models), or the logits as in :func:`logits_of` (Hugging Face ``logits``)."""
    dense = _field(output, "out") if not isinstance(output, (torch.Tensor, list, tuple)) else None
    dense = dense if isinstance(dense, torch.Tensor) else logits_of(output)
    if dense.ndim != 4:
        raise ValueError(f"a segmentation target needs dense (N, classes, H, W) scores; the model returned "
                         f"{describe(output)}")
    return dense


def _is_per_image_list(output: Any) -> bool:
    return isinstance(output, list) and bool(output) and all(isinstance(item, Mapping) for item in output)


def _rebuilt_mapping(output: Mapping, values: dict) -> Mapping:
    try:
        return type(output)(values)
    except TypeError:  # e.g. a defaultdict: copy it and update
        rebuilt = copy.copy(output)
        rebuilt.update(values)
        return rebuilt


def _rebuilt_dataclass(output: Any, values: dict) -> Any:
    try:
        return dataclasses.replace(output, **values)
    except (TypeError, ValueError):
        rebuilt = copy.copy(output)
        for name, value in values.items():
            object.__setattr__(rebuilt, name, value)
        return rebuilt


def _mapped(output: Any, function: Callable[[Any], Any]) -> Any:
    """``output`` with ``function`` applied to each direct child (items, values, fields), structure kept."""
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        names = [field.name for field in dataclasses.fields(output) if field.init]
        return _rebuilt_dataclass(output, {name: function(getattr(output, name)) for name in names})
    if isinstance(output, Mapping):
        return _rebuilt_mapping(output, {key: function(value) for key, value in output.items()})
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a namedtuple
        return type(output)(*(function(item) for item in output))
    if isinstance(output, (list, tuple)):
        return type(output)(function(item) for item in output)
    return output


def _children(output: Any) -> list:
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [getattr(output, field.name) for field in dataclasses.fields(output)]
    if isinstance(output, Mapping):
        return list(output.values())
    if isinstance(output, (list, tuple)):
        return list(output)
    return []


def tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in ``output`` (a tensor, or tuples, lists, dicts and dataclasses of them, nested), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    return [tensor for child in _children(output) for tensor in tensors(child)]


def map_tensors(output: Any, function: Callable[[torch.Tensor], Any]) -> Any:
    """``output`` with ``function`` applied to every tensor in it, the structure (tuples, lists, dicts, dataclasses,
    nested) kept; other objects are kept as they are."""
    if isinstance(output, torch.Tensor):
        return function(output)
    return _mapped(output, lambda child: map_tensors(child, function))


def detach(output: Any) -> Any:
    """``output`` with every tensor in it detached (tensors, tuples, lists, dicts, dataclasses; other objects are
    kept as they are)."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    return _mapped(output, detach)


def batch_size(output: Any) -> int | None:
    """The number of images an output holds: the first dimension of its first tensor, or the length of a list of
    one dict per image; ``None`` when it holds no tensor."""
    if isinstance(output, torch.Tensor):
        return output.shape[0] if output.ndim else None
    if _is_per_image_list(output):
        return len(output)
    for child in _children(output):
        found = batch_size(child)
        if found is not None:
            return found
    return None


def _split(output: Any, index: int, n: int) -> Any:
    if isinstance(output, torch.Tensor):
        return output[index:index + 1] if output.ndim and output.shape[0] == n else output
    if _is_per_image_list(output) and len(output) == n:
        return [output[index]]
    return _mapped(output, lambda child: _split(child, index, n))


def split(output: Any, index: int) -> Any:
    """Image ``index`` of a model output with the batch dimension kept (an output of one image, of the same
    structure): ``output[i:i+1]`` for every tensor whose first dimension is the batch size, ``[output[i]]`` for a list
    of one dict per image, everything else as it is."""
    n = batch_size(output)
    if n is None:
        raise TypeError(f"cannot tell the images apart in {describe(output)} (no tensor in it)")
    if not 0 <= index < n:
        raise IndexError(f"image {index} of an output of {n} images")
    return _split(output, index, n)
