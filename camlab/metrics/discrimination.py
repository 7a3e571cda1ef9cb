r"""Class discrimination: on an image with two labelled objects, does each class's map fall on its own object?

The Grad-CAM paper measures class discrimination with a human study (61.23% for Guided Grad-CAM vs 44.44% for
Guided Backprop); camlab measures it directly with the objects' masks: the share of each class's map mass inside
its own object.
"""
from __future__ import annotations

import torch
from torch import nn

from camlab.maps import safe_divide
from camlab.metrics._common import MapSource, compute_maps, is_precomputed, refuses_nan_maps, saliency
from camlab.metrics.localization import gt_masks


@refuses_nan_maps
def mass_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of each (N,H,W) map's total value that lies inside the (N,H,W) bool mask, in [0, 1].

    Negative values are clipped to 0 first. A map with no mass (all zeros) has no preference, so it gets the
    share of a uniform map: the mask's area fraction (the chance level), never NaN."""
    maps = saliency(maps).clamp_min(0).double()
    masks = masks.to(maps.device).bool()
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    area = masks.double().mean(dim=(1, 2))
    return torch.where(total > 0, safe_divide(inside, total), area)


@refuses_nan_maps
def class_discrimination(model: nn.Module, x: torch.Tensor, explainer: MapSource, class_a, class_b,
                         mask_a, mask_b) -> dict[str, float]:
    """Share of each class's map mass inside its own object, for images holding an object of ``class_a`` (region
    ``mask_a``) and one of ``class_b`` (``mask_b``), e.g. the bundled ``cat_and_coffee`` photo or a lab scene with
    two objects.

    Args:
        model: the classifier the explainer explains (not called here; kept for the metrics' common signature).
        x: (N,C,H,W) inputs.
        explainer: an explainer / callable ``(x, target) -> maps``; called once with ``class_a`` and once with
            ``class_b`` (each an int or one int per image). Precomputed maps are not enough (two classes).
        mask_a, mask_b: the objects as (N,H,W) bool masks or boxes (see :func:`~camlab.metrics.localization.gt_boxes`)
            at the input's resolution.

    Returns:
        ``{"a": ..., "b": ..., "mean": ..., "a_on_b": ..., "b_on_a": ...}``, **fractions** in [0, 1] averaged over
        the images: ``a`` is the share of class a's map inside object a, ``a_on_b`` the share of class a's map on
        object b (the confusion a class-discriminative method avoids). A uniform map scores each object's area.
    """
    if is_precomputed(explainer) or not callable(explainer):
        raise TypeError("class_discrimination needs an explainer (a callable (x, target) -> maps): it explains two "
                        "classes")
    n, size = x.shape[0], tuple(x.shape[-2:])
    masks_a, masks_b = gt_masks(mask_a, n, size), gt_masks(mask_b, n, size)
    maps_a = compute_maps(explainer, x, class_a)
    maps_b = compute_maps(explainer, x, class_b)
    a, b = mass_inside(maps_a, masks_a), mass_inside(maps_b, masks_b)
    return {"a": float(a.mean()), "b": float(b.mean()), "mean": float(((a + b) / 2).mean()),
            "a_on_b": float(mass_inside(maps_a, masks_b).mean()), "b_on_a": float(mass_inside(maps_b, masks_a).mean())}


def symmetric_discrimination(maps_a: torch.Tensor, maps_b: torch.Tensor, mask_a, mask_b) -> torch.Tensor:
    r"""(N,) per image: :math:`d = (m_{aa} - m_{ab}) + (m_{bb} - m_{ba})`, where :math:`m_{xy}` is the share of
    class x's map inside object y (:func:`mass_inside`), for (N,H,W) maps of class a and of class b on images holding
    one object of each (``mask_a``, ``mask_b``: (N,H,W) bool masks or boxes, see
    :func:`~camlab.metrics.localization.gt_masks`).

    A class-blind method (the same map for both classes) scores exactly 0 whatever the objects' sizes, since both
    brackets then cancel; each map entirely on its own object scores 2, each entirely on the other object -2. So,
    unlike one class's share on its own object, object size does not favour a method. Per image values, for paired
    comparisons (:func:`camlab.stats.verdict`)."""
    if maps_a.shape != maps_b.shape or maps_a.ndim != 3:
        raise ValueError(f"maps_a and maps_b must both be (N,H,W) maps of one shape; got {tuple(maps_a.shape)} and "
                         f"{tuple(maps_b.shape)}")
    n, size = maps_a.shape[0], tuple(maps_a.shape[-2:])
    own_a, own_b = gt_masks(mask_a, n, size), gt_masks(mask_b, n, size)
    return ((mass_inside(maps_a, own_a) - mass_inside(maps_a, own_b))
            + (mass_inside(maps_b, own_b) - mass_inside(maps_b, own_a)))
