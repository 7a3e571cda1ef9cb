"""What a ``target`` may be, turned into one differentiable score per image.

``target`` is one of:

* ``None``: each image's top-1 class;
* an ``int``: the same class for every image;
* a sequence (or 1-D tensor) with one class index per image;
* a callable ``logits -> (N,)`` scores, for anything that is not a plain class logit
  (a softmax probability, a region of a segmentation output, a regression value, ...).

This module is the one target resolver: :func:`scores` (one score per image, for every method),
:func:`class_indices` (one class per image, for methods and metrics that need a class: CAM, Score-CAM, Ablation-CAM,
the faithfulness metrics) and :func:`per_image` (the target of each image alone, for methods that explain one image
at a time).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import torch

Target = Union[None, int, Sequence[int], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


def is_score_function(target) -> bool:
    """Whether ``target`` is a callable ``output -> (N,)`` scores (rather than class indices)."""
    return callable(target) and not isinstance(target, torch.Tensor)


def class_indices(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The class index of each image (N,) for an index-like target (``None`` = the top-1 class of ``logits``, which
    may also be probabilities); raises a clear error otherwise."""
    if logits.ndim != 2:
        raise ValueError(
            f"the model returned an output of shape {tuple(logits.shape)}; class-index targets need (N, classes) "
            "logits: pass target=callable(output) -> (N,) scores instead"
        )
    n, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if is_score_function(target):
        raise TypeError("this needs class indices as target (None, an int, or one int per image), not a callable")
    if isinstance(target, bool):
        raise TypeError("target must be an int class index, a sequence of them, None or a callable, not a bool")
    if isinstance(target, int) or (isinstance(target, torch.Tensor) and target.ndim == 0):
        indices = torch.full((n,), int(target), dtype=torch.long, device="cpu")
    else:
        try:
            indices = torch.as_tensor(list(target) if not isinstance(target, torch.Tensor) else target,
                                      device="cpu")  # checked on the host (no device sync), then moved
        except (TypeError, ValueError) as error:
            raise TypeError(
                "target must be an int class index, a sequence of them (one per image), None or a callable, "
                f"not {type(target).__name__}"
            ) from error
        if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, one per image; got {target!r}")
        if len(indices) != n:
            raise ValueError(
                f"target has {len(indices)} class indices but the batch has {n} images; give one per image "
                "(or a single int for all)"
            )
    indices = indices.to(torch.long)
    bad = (indices < 0) | (indices >= num_classes)
    if bad.any():
        raise ValueError(
            f"target class {indices[bad][0].item()} is outside the model's {num_classes} classes "
            f"(valid: 0..{num_classes - 1})"
        )
    return indices.to(logits.device)


def scores(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """One score per image (N,): the target's logit, or whatever a callable target returns."""
    if is_score_function(target):
        value = target(logits)
        n = logits.shape[0]
        if not isinstance(value, torch.Tensor) or value.shape != (n,):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"a callable target must return a tensor of shape ({n},) (one score per image), got {shape}")
        return value
    indices = class_indices(logits, target)
    return logits.gather(1, indices[:, None])[:, 0]


def fixed(logits: torch.Tensor, target: Target) -> Target:
    """``target`` with ``None`` and a single int replaced by one class index per image (a list), so that later passes
    on changed inputs (noisy or masked copies) explain the same classes; a callable is returned as it is."""
    return target if is_score_function(target) else class_indices(logits, target).tolist()


def per_image(logits: torch.Tensor, target: Target) -> list:
    """The target of each image on its own: its class index (an ``int``), or the caller's callable (row-wise, so the
    same callable serves every image)."""
    if is_score_function(target):
        return [target] * logits.shape[0]
    return class_indices(logits, target).tolist()
