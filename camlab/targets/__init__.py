"""What a ``target`` may be, turned into one differentiable score per image.

Also home of the target objects (:mod:`camlab.targets.objects`) and of the helpers for model outputs of any
structure (:mod:`camlab.targets.outputs`).

``target`` is one of:

* ``None``: each image's top-1 class;
* a class index: an ``int`` (or a numpy integer, a 0-d integer tensor, a :class:`ClassTarget`), the same class for
  every image;
* a callable ``output -> (N,)`` scores, which receives the model's output exactly as the model returned it (a tensor,
  a tuple, a dict, a dataclass, a list of dicts) and returns one score per image: a target object
  (:class:`ClassTarget`, :class:`BinaryTarget`, :class:`SegmentationTarget`, :class:`DetectionTarget`,
  :class:`EmbeddingTarget`) or your own function (a softmax probability, a regression value, ...);
* one target per image: a list/tuple (or a 1-D integer tensor / array) of N items, each a class index or a callable
  (``[3, SegmentationTarget(1, mask)]``); image i's callable is called on image i's output alone
  (:func:`split`, batch dimension kept).

Class indices need class logits in the output (a tensor, a tuple/list whose first item is the logits, or a
dict/object with a ``logits`` field; :mod:`camlab.targets.outputs`); anything else is an error that points to
callables and the target objects. Floats and bools (also 0-d tensors) are refused, never truncated.

This package is the one target resolver: :func:`scores` (one score per image, for every method), :func:`class_indices`
(one class per image, for methods and metrics that need a class: CAM and the faithfulness metrics),
:func:`probabilities_of` (Score-CAM's probability form), :func:`fixed` (the same targets for later passes on changed
inputs) and :func:`per_image` (the target of each image alone, for methods that score perturbed copies of one image:
Score-CAM, Ablation-CAM, occlusion). A single callable given for a batch of several images must then be *row-wise*
(image i's score depends on image i's output only); :func:`per_image` checks that on the output at hand and
otherwise asks for one target per image.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import torch

from camlab.targets.objects import (BinaryTarget, ClassTarget, DetectionTarget, EmbeddingTarget, SegmentationTarget,
                                    as_index, check_classes, class_probability)
from camlab.targets.outputs import batch_size, detach, logits_of, map_tensors, split, tensors

Target = Union[None, int, Sequence, torch.Tensor, Callable[[Any], torch.Tensor]]

__all__ = ["BinaryTarget", "ClassTarget", "DetectionTarget", "EmbeddingTarget", "SegmentationTarget", "Target",
           "batch_size", "class_indices", "detach", "fixed", "is_score_function", "logits_of", "per_image",
           "probabilities_of", "scores", "split", "tensors"]

_KINDS = ("(a target is None, an integer class index, a callable output -> (N,) scores such as a target object "
          "from camlab.targets, or a sequence with one of those per image)")


def is_score_function(target) -> bool:
    """Whether ``target`` is a callable ``output -> (N,)`` scores (a :class:`ClassTarget` counts as a class index)."""
    return callable(target) and not isinstance(target, (torch.Tensor, ClassTarget))


def _item(item):
    """One image's target in a per-image list: a class index (int) or a callable."""
    if is_score_function(item):
        return item
    if isinstance(item, ClassTarget):
        return item.category
    try:
        return as_index(item)
    except TypeError as error:
        raise TypeError(f"target must hold integer class indices or callables, one per image; got "
                        f"{type(item).__name__} {item}") from error


def _resolve(target) -> tuple[str, Any]:
    """``("top1", None)``, ``("index", int)``, ``("function", callable)`` or ``("list", [int or callable, ...])``."""
    if target is None:
        return "top1", None
    if isinstance(target, ClassTarget):
        return "index", target.category
    if is_score_function(target):
        return "function", target
    if isinstance(target, (list, tuple)) or isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 1:
        return "list", [_item(item) for item in target]
    if isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim > 1:
        raise TypeError(f"target must not be a tensor of shape {tuple(target.shape)} {_KINDS}")
    try:
        return "index", as_index(target)
    except TypeError as error:
        raise TypeError(f"{error} {_KINDS}") from error


def _checked_length(items: list, n: int | None) -> list:
    if n is not None and len(items) != n:
        what = "targets" if any(callable(item) for item in items) else "class indices"
        raise ValueError(f"target has {len(items)} {what} but the batch has {n} images; give one per image "
                         "(or a single target for all)")
    return items


def _has_callable(kind: str, value) -> bool:
    return kind == "list" and any(callable(item) for item in value)


def class_indices(output, target: Target) -> torch.Tensor:
    """(N,) the class index of each image, for a target made of class indices (``None`` = the top-1 class of the
    output's logits, which may also be probabilities); a clear error for callables or an output without logits."""
    kind, value = _resolve(target)
    if kind == "function" or _has_callable(kind, value):
        raise TypeError("this needs class indices as target (None, an int, or one int per image), not a callable")
    logits = logits_of(output)
    n = logits.shape[0] if logits.ndim else 0
    if kind == "top1":
        indices = logits.argmax(dim=1) if logits.ndim == 2 else torch.zeros(n, dtype=torch.long)
    elif kind == "index":
        indices = torch.full((n,), value, dtype=torch.long, device="cpu")
    else:
        indices = torch.as_tensor(_checked_length(value, n), dtype=torch.long, device="cpu").reshape(-1)
    return check_classes(logits, indices)


def _called(function: Callable, output, n: int | None) -> torch.Tensor:
    value = function(output)
    if not isinstance(value, torch.Tensor) or value.ndim != 1 or (n is not None and len(value) != n):
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"a callable target must return a tensor of shape ({'N' if n is None else n},) (one score "
                         f"per image), got {got}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"the target {function!r} returned {value.dtype} scores: a score must be a float computed "
                        "from the model's output (e.g. output[:, c], a logit), not a class index or a count")
    if not value.requires_grad and any(t.requires_grad for t in tensors(output)):
        raise ValueError(f"the target {function!r} returned scores that are not connected to the model's output "
                         "(detached, or rebuilt with torch.tensor / .item()): compute the score from the output with "
                         "torch operations so that it has a gradient")
    return value


def _checked_scores(values: torch.Tensor, target) -> torch.Tensor:
    """``values`` unless a score is NaN: then one error naming the image and the usual causes."""
    if values.device.type == "meta":  # shapes only (a dry run): there are no values to check
        return values
    nan = torch.isnan(values.detach())
    if bool(nan.any()):
        raise ValueError(f"the target's score of image {int(nan.nonzero()[0, 0])} is NaN (target {target!r}): a NaN "
                         "in the model's output, in a target's mask or reference, or a log of 0; no map of a NaN "
                         "score means anything")
    return values


def _each_image(output, items: list, one: Callable) -> torch.Tensor:
    """``one(image i's output, item i)`` for every image, concatenated (N,)."""
    _checked_length(items, batch_size(output))
    return torch.cat([one(split(output, i), item) for i, item in enumerate(items)])


def scores(output, target: Target, n: int | None = None) -> torch.Tensor:
    """(N,) one score per image: the target's logit, or whatever a callable target returns (called on the whole
    output, or per image for a per-image list); ``n``, when given, the expected number of images."""
    kind, value = _resolve(target)
    if kind == "function":
        return _checked_scores(_called(value, output, n if n is not None else batch_size(output)), target)
    if _has_callable(kind, value):
        return _each_image(output, value, lambda alone, item: scores(alone, item, 1))
    logits = logits_of(output)
    return _checked_scores(logits.gather(1, class_indices(logits, target)[:, None])[:, 0], target)


def probabilities_of(output, target: Target) -> torch.Tensor:
    """(N,) the target's probability: the softmax probability of a class index (the sigmoid of a single logit), a
    target object's ``probability(output)`` (:class:`BinaryTarget`: :math:`\\sigma(\\pm z)`), or, for any other
    callable, its value as it is."""
    kind, value = _resolve(target)
    if kind == "function":
        if hasattr(value, "probability"):
            return value.probability(output)
        return _called(value, output, batch_size(output))
    if _has_callable(kind, value):
        return _each_image(output, value, probabilities_of)
    logits = logits_of(output)
    return class_probability(logits, class_indices(logits, target))


def fixed(output, target: Target) -> Target:
    """``target`` with ``None`` and a single class replaced by one class index per image (a list), so that later
    passes on changed inputs (noisy or masked copies) explain the same classes; callables are kept as they are."""
    kind, value = _resolve(target)
    if kind == "function" or _has_callable(kind, value):
        return target
    return class_indices(output, target).tolist()


_NOT_ROW_WISE = ("the callable target {target!r} is not row-wise: {problem}. Methods that score perturbed copies of "
                 "one image (Score-CAM, Ablation-CAM, occlusion) call image i's target on a batch of copies of image i "
                 "alone, so a single callable must give image i's score from image i's output only; pass a list with "
                 "one target per image instead (target=[target_0, target_1, ...])")


def _row_wise(output, function: Callable) -> list:
    """Image i's target for every image (``for_image(i)`` where the callable has it), checked to be row-wise: its
    value on image i's output alone equals its value on the batch at row i."""
    n = batch_size(output)
    images = [function.for_image(i) if hasattr(function, "for_image") else function for i in range(n or 1)]
    if n is None or n == 1:
        return images
    batch = _called(function, output, n).detach().double()
    for i, own in enumerate(images):
        try:
            alone = _called(own, split(output, i), 1).detach().double()
        except Exception as error:  # noqa: BLE001 - any failure on one image means it is not row-wise
            raise ValueError(_NOT_ROW_WISE.format(target=function, problem=f"on image {i} alone it fails "
                                                  f"({type(error).__name__}: {error})")) from error
        tolerance = 1e-5 * max(1.0, float(batch.abs().max()))
        if not torch.allclose(alone.cpu(), batch[i:i + 1].cpu(), rtol=1e-4, atol=tolerance):
            raise ValueError(_NOT_ROW_WISE.format(target=function, problem=f"on image {i} alone it gives "
                                                  f"{alone.item():.6g}, on the batch {batch[i].item():.6g}"))
    return images


def per_image(output, target: Target) -> list:
    """The target of each image on its own: its class index (an ``int``) or a callable (for a single callable: the
    same callable, or its ``for_image(i)``, after checking that it is row-wise, see :func:`_row_wise`)."""
    kind, value = _resolve(target)
    if kind == "function":
        return _row_wise(output, value)
    if _has_callable(kind, value):
        return _checked_length(value, batch_size(output))
    return class_indices(output, target).tolist()
