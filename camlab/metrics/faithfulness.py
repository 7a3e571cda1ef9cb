r"""Faithfulness metrics: does the model's confidence follow the map?

* :func:`average_drop`, :func:`increase_in_confidence` (Chattopadhyay et al., "Grad-CAM++", WACV 2018; also used
  by Score-CAM, Wang et al., CVPRW 2020, and by torchcam's results table);
* :func:`deletion_auc`, :func:`insertion_auc` and the curves behind them (Petsiuk et al., "RISE", BMVC 2018);
* :func:`occlusion_correlation` (the Grad-CAM paper's faithfulness test: rank correlation with occlusion maps).

Every confidence here is the model's **softmax probability** of the target class; the target is the model's own
top-1 class on the unmodified image unless given.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camlab.maps import safe_divide, scale
from camlab.metrics._common import (MapSource, batches, check_precomputed, compute_maps, on_cpu, probabilities,
                                    refuses_nan_maps, saliency, spearman, to_image, to_input)
from camlab.targets import class_indices


def pixel_order(heat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flat pixel indices of one (H,W) map from the highest value to the lowest; equal values come in a random
    order drawn from ``generator`` (so a flat map removes pixels in a seeded random order, not row by row)."""
    flat = heat.reshape(-1).float().cpu()
    permutation = torch.randperm(flat.numel(), generator=generator, device="cpu")
    ranked = torch.argsort(flat[permutation], descending=True, stable=True)
    return permutation[ranked]


def _masks(heat: torch.Tensor, mask: str, top_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(N,1,H,W) multiplicative masks from (N,H,W) saliency."""
    if mask == "soft":
        return scale(heat)[:, None]
    if mask == "hard":
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        n, height, width = heat.shape
        keep = int(round(top_fraction * height * width))
        out = torch.zeros(n, height * width, dtype=heat.dtype, device=heat.device)
        for i in range(n):
            out[i, pixel_order(heat[i], generator)[:keep].to(heat.device)] = 1
        return out.view(n, 1, height, width)
    raise ValueError(f"mask must be 'soft' (x * M) or 'hard' (keep the top_fraction of pixels), got {mask!r}")


@refuses_nan_maps
def confidence_change(model: nn.Module, inputs, explainer: MapSource, target=None, *, mask: str = "soft",
                      top_fraction: float = 0.5, space: str = "image", batch_size: int = 32, seed: int = 0,
                      progress: bool = False) -> dict[str, float]:
    r"""Average Drop and Increase in Confidence in one pass (Grad-CAM++, Sec. 5.1):

    .. math::
        \text{Average Drop} = \frac{1}{N}\sum_i \frac{\max(0,\, Y_i^c - O_i^c)}{Y_i^c}, \qquad
        \text{Increase in Confidence} = \frac{1}{N}\sum_i \mathbb{1}[Y_i^c < O_i^c]

    with :math:`Y^c` the probability of class ``c`` on the image and :math:`O^c` on the "explanation map" image,
    the image masked by the map.

    Args:
        inputs: (N,C,H,W) model inputs or a DataLoader of ``(x, target)`` batches (``x`` alone also works).
        explainer: an explainer / callable ``(x, target) -> maps`` (called with the resolved class indices), or
            precomputed maps.
        target: ``None`` (each image's predicted top-1 class), an int, or one int per image.
        mask: ``"soft"`` (default): the map, min-max scaled to [0, 1], multiplies the image, :math:`E = M \odot I`,
            the definition of Grad-CAM++ and Score-CAM and the one torchcam's table uses. ``"hard"``: a binary mask
            that keeps the ``top_fraction`` of pixels with the highest map values (ties in a seeded random order),
            a variant found in later papers and code; the two give different numbers, so always say which was used.
        space: ``"image"`` (default): the mask multiplies the [0, 1] image (the inverse of ``model.camlab``'s
            normalisation, then normalised again), so masked-out pixels turn **black**, as in the papers' figures.
            ``"input"``: it multiplies the normalised model input, so masked-out pixels turn to the dataset mean
            colour (what a library does when it multiplies whatever tensor it is given, e.g. torchcam's metric
            on normalised inputs). Models without ``model.camlab`` are treated as taking [0, 1] images.

    Returns:
        ``{"average_drop": ..., "increase_in_confidence": ..., "n": N}``: **fractions** in [0, 1] (the Grad-CAM++
        and Score-CAM papers print percent; torchcam prints fractions). Lower drop and higher increase are better.
    """
    if space not in ("image", "input"):
        raise ValueError(f"space must be 'image' or 'input', got {space!r}")
    generator = torch.Generator().manual_seed(seed)
    check_precomputed(explainer, inputs)
    drops, increases, offset = [], [], 0
    for x, batch_target in batches(inputs, (target,), batch_size, progress, "confidence"):
        n = x.shape[0]
        probs = probabilities(model, x)
        classes = class_indices(probs, batch_target)
        heat = compute_maps(explainer, x, classes.tolist(), offset)
        weights = _masks(heat, mask, top_fraction, generator).to(x.dtype)
        masked = to_input(to_image(x, model) * weights, model) if space == "image" else x * weights
        before = probs.gather(1, classes[:, None])[:, 0]
        after = probabilities(model, masked).gather(1, classes[:, None])[:, 0]
        drops.append(safe_divide((before - after).clamp_min(0), before))
        increases.append((after > before).double())
        offset += n
    return {"average_drop": float(torch.cat(drops).mean()),
            "increase_in_confidence": float(torch.cat(increases).double().mean()),
            "n": offset}


@refuses_nan_maps
def average_drop(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> float:
    """Average Drop (Grad-CAM++): the mean relative drop of the target class's probability when the image is
    masked by the map, a **fraction** in [0, 1] (lower is better). Options as :func:`confidence_change`
    (``mask="soft"`` x·M by default, ``mask="hard", top_fraction=0.5``; ``space="image"``)."""
    return confidence_change(model, inputs, explainer, target, **options)["average_drop"]


@refuses_nan_maps
def increase_in_confidence(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> float:
    """Increase in Confidence (Grad-CAM++): the share of images whose target-class probability rises when the image
    is masked by the map, a **fraction** in [0, 1] (higher is better). Options as :func:`confidence_change`."""
    return confidence_change(model, inputs, explainer, target, **options)["increase_in_confidence"]


# --- deletion / insertion (RISE) ----------------------------------------------------------------------------------

def gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: a depthwise Gaussian blur (kernel 11, sigma 5 as in the authors' code) of the
    model input, zero-padded."""
    coords = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
    kernel1d = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    kernel = kernel1d[:, None] * kernel1d[None, :]
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, size, size)
    return F.conv2d(x, kernel, padding=size // 2, groups=x.shape[1])


def _substrate(x: torch.Tensor, substrate, model: nn.Module) -> torch.Tensor:
    if isinstance(substrate, torch.Tensor):
        return substrate.to(x).expand_as(x)
    if substrate == "zeros":
        return torch.zeros_like(x)
    if substrate == "blur":
        return gaussian_blur(x)
    if substrate == "black":
        return to_input(torch.zeros_like(x), model)
    raise ValueError(f"substrate must be 'zeros', 'blur', 'black' or a tensor, got {substrate!r}")


@refuses_nan_maps
def causal_curve(model: nn.Module, inputs, explainer: MapSource, target=None, *, mode: str = "deletion",
                 steps: int = 100, substrate=None, batch_size: int = 64, seed: int = 0,
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The RISE deletion or insertion curve.

    Pixels are ranked by the map (highest first; ties in a seeded random order). ``mode="deletion"`` starts from
    the image and replaces the top-ranked pixels by the substrate, ``mode="insertion"`` starts from the substrate
    and puts the image's top-ranked pixels back; after step ``k`` of ``steps`` a share ``k/steps`` of the pixels has
    changed (RISE's code changes 224 pixels per step on 224x224 inputs, i.e. 224 steps). The steps of one image run
    as batches of ``batch_size`` inputs.

    Args:
        substrate: ``"zeros"`` (a zero model input, i.e. the normalisation's mean colour: RISE's deletion default,
            to our reading of the authors' notebook, which works on normalised tensors), ``"blur"`` (the blurred
            input, :func:`gaussian_blur`: RISE's insertion default), ``"black"`` (zero pixels in [0, 1] image
            space), or a tensor broadcastable to the input. ``None``: zeros for deletion, blur for insertion.

    Returns:
        ``(fractions, curves)``: (steps+1,) shares of changed pixels in [0, 1] and (N, steps+1) probabilities of the
        target class (default: the top-1 class on the unmodified image).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    substrate = substrate if substrate is not None else ("zeros" if mode == "deletion" else "blur")
    generator = torch.Generator().manual_seed(seed)
    check_precomputed(explainer, inputs)
    curves, offset = [], 0
    for x, batch_target in batches(inputs, (target,), 16, progress, mode):
        n, _, height, width = x.shape
        probs = probabilities(model, x)
        classes = class_indices(probs, batch_target)
        heat = compute_maps(explainer, x, classes.tolist(), offset)
        base = _substrate(x, substrate, model)
        start, finish = (x, base) if mode == "deletion" else (base, x)
        steps_cpu = torch.arange(steps + 1, dtype=torch.float64, device="cpu")
        counts = torch.round(steps_cpu * (height * width) / steps).long()
        for i in range(n):
            rank = torch.empty(height * width, dtype=torch.long, device="cpu")
            rank[pixel_order(heat[i], generator)] = torch.arange(height * width, device="cpu")
            rank = rank.to(x.device)
            values = []
            for chunk in counts.split(batch_size):
                changed = (rank[None] < chunk[:, None].to(x.device)).view(-1, 1, height, width)
                stepped = torch.where(changed, finish[i:i + 1], start[i:i + 1])
                values.append(probabilities(model, stepped, batch_size)[:, classes[i]])
            curves.append(torch.cat(values))
        offset += n
    fractions = torch.arange(steps + 1, dtype=torch.float64, device="cpu") / steps
    return fractions, torch.stack(curves).double().cpu()


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at equal steps over [0, 1] (trapezoid rule), per row; in [0, 1] for
    probabilities. The same formula as RISE's code: (sum - (first + last) / 2) / steps."""
    curves = on_cpu(curves).double()
    steps = curves.shape[-1] - 1
    return (curves.sum(-1) - (curves[..., 0] + curves[..., -1]) / 2) / steps


@refuses_nan_maps
def deletion_auc(model: nn.Module, inputs, explainer: MapSource, target=None, *, steps: int = 100,
                 substrate="zeros", **options) -> float:
    """RISE deletion score: the mean area under the probability curve as the most salient pixels are removed
    first, a **fraction** in [0, 1]; **lower is better** (the probability should collapse quickly).
    Options as :func:`causal_curve`."""
    _, curves = causal_curve(model, inputs, explainer, target, mode="deletion", steps=steps, substrate=substrate,
                             **options)
    return float(auc(curves).mean())


@refuses_nan_maps
def insertion_auc(model: nn.Module, inputs, explainer: MapSource, target=None, *, steps: int = 100,
                  substrate="blur", **options) -> float:
    """RISE insertion score: the mean area under the probability curve as the most salient pixels are put back
    first onto a blurred copy, a **fraction** in [0, 1]; **higher is better**. Options as :func:`causal_curve`."""
    _, curves = causal_curve(model, inputs, explainer, target, mode="insertion", steps=steps, substrate=substrate,
                             **options)
    return float(auc(curves).mean())


# --- occlusion correlation (Grad-CAM paper) -------------------------------------------------------------------

@refuses_nan_maps
def occlusion_correlation(maps, occlusion_maps) -> float:
    """Mean Spearman rank correlation, in [-1, 1], between each map and the occlusion-sensitivity map of the same
    image and class (the Grad-CAM paper's faithfulness test: 0.254 for Grad-CAM vs 0.168 for Guided Backprop on
    PASCAL VOC 2007 val). Both may be (H,W), (N,H,W) or input-space (N,3,H,W); ties take average ranks; a constant
    map correlates 0.0 (never NaN)."""
    a, b = saliency(maps), saliency(occlusion_maps)
    if a.shape != b.shape:
        raise ValueError(f"maps {tuple(a.shape)} and occlusion maps {tuple(b.shape)} differ in shape")
    return float(np.mean([spearman(one, other) for one, other in zip(a, b)]))


@refuses_nan_maps
def occlusion_faithfulness(model: nn.Module, inputs, explainer: MapSource, target=None, *, batch_size: int = 8,
                           progress: bool = False, **occlusion_options) -> float:
    """:func:`occlusion_correlation` with the occlusion maps computed by ``camlab.METHODS["occlusion"]`` for the
    same classes (``occlusion_options`` go to its constructor). ``inputs`` may be a DataLoader of ``(x, target)``."""
    from camlab.methods import METHODS

    if "occlusion" not in METHODS:
        raise RuntimeError("camlab.METHODS has no 'occlusion' method in this version; compute occlusion maps "
                           "yourself and call occlusion_correlation(maps, occlusion_maps)")
    occluder = METHODS["occlusion"](model, **occlusion_options)
    values = []
    for x, batch_target in batches(inputs, (target,), batch_size, progress, "occlusion"):
        classes = class_indices(probabilities(model, x), batch_target).tolist()
        heat = compute_maps(explainer, x, classes)
        reference = compute_maps(occluder, x, classes)
        values += [spearman(one, other) for one, other in zip(heat, reference)]
    return float(np.mean(values))
