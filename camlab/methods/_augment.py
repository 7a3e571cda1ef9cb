r"""``aug_smooth``: test-time augmentation of any layer method (as pytorch-grad-cam's ``aug_smooth``).

The input is explained under every augmentation :math:`T` of :data:`AUGMENTATIONS`, the identity, a horizontal flip
and both times the intensity factors 0.9, 1 and 1.1 (pytorch-grad-cam's default ``ttach`` transforms:
``HorizontalFlip() x Multiply([0.9, 1, 1.1])``, 6 in all); each map is mapped back (flipped again) and the maps are
averaged with equal votes:

.. math:: L = \frac{1}{|\mathcal T|} \sum_{T \in \mathcal T} T^{-1}\big(\mathrm{scale}(L(T x))\big)

``scale`` is the per-image [0, 1] scaling of every camlab map (the peer's too), so that each augmentation counts
once whatever the magnitude of its scores. The average is scaled to [0, 1] again (pytorch-grad-cam returns the mean
of its [0, 1] maps as it is, whose maximum may be below 1). With ``raw=True`` the maps are averaged at the layer's
resolution, each scaled there, and their mean is returned unscaled. A target of ``None`` is resolved once, on the unaugmented input, so all augmentations
explain the same class (pytorch-grad-cam takes each augmented input's own top-1 class). Target objects that hold
positions in the image (:class:`~camlab.targets.SegmentationTarget`, :class:`~camlab.targets.DetectionTarget`)
are refused: they would score the flipped image at the unflipped positions. Any other callable target must be
invariant to a horizontal flip of the input (a class score is).
"""
from __future__ import annotations

import torch

from camlab.maps import scale
from camlab.targets import DetectionTarget, SegmentationTarget, Target, fixed, is_score_function

#: (flip horizontally, intensity factor) of every augmentation, in pytorch-grad-cam's (ttach's) order
AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


def check_target(target: Target) -> None:
    """Refuse targets that point at positions of the unflipped image (one-line ``ValueError``)."""
    items = target if isinstance(target, (list, tuple)) else [target]
    for item in items:
        if isinstance(item, (SegmentationTarget, DetectionTarget)):
            raise ValueError(f"aug_smooth flips the image, but a {type(item).__name__} holds positions of the "
                             "unflipped image; explain it with aug_smooth=False")


def resolved_target(model, x: torch.Tensor, target: Target, uses_target: bool) -> Target:
    """``None`` (or one class for all) as one class index per image of the unaugmented ``x`` (one extra forward pass
    without gradients when ``target`` is ``None``); callables and methods that ignore the target keep it."""
    if not uses_target or is_score_function(target):
        return target
    if target is None:
        with torch.no_grad():
            return fixed(model(x), None)
    return target


def augmented(x: torch.Tensor, flip: bool, factor: float) -> torch.Tensor:
    x = x * factor if factor != 1.0 else x
    return x.flip(-1) if flip else x


def smoothed(explainer, x: torch.Tensor, target: Target, raw: bool) -> torch.Tensor:
    """The augmentation average of ``explainer``'s maps (called inside its ``preserved_state``)."""
    check_target(target)
    target = resolved_target(explainer.model, x, target, getattr(explainer, "uses_target", True))
    signed = not explainer.relu
    total = None
    for flip, factor in AUGMENTATIONS:
        inputs = augmented(x, flip, factor)
        maps = explainer.present(explainer.compute(inputs, target).detach(), inputs, raw)
        maps = scale(maps, signed=signed) if raw else maps
        maps = maps.flip(-1) if flip else maps
        total = maps if total is None else total + maps
    mean = total / len(AUGMENTATIONS)
    return mean if raw else scale(mean, signed=signed)
