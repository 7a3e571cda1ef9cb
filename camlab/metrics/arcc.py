r"""Complexity, Coherency and ARCC: is a map simple, stable, and faithful at once?

* **Complexity** and **Coherency** (Poppi, Cornia, Baraldi & Cucchiara, "Revisiting The Evaluation of Class
  Activation Mapping for Explainability: A Novel Metric and Experimental Analysis", CVPR Workshops 2021,
  https://arxiv.org/abs/2104.10252), with :math:`M = L^c(x)` the map of class :math:`c`, min-max scaled to [0, 1]
  per image (camlab's explainers return it so; precomputed maps are scaled here, as the soft mask of
  :func:`~camlab.metrics.average_drop`):

  .. math::
      \mathrm{Complexity} = \frac{1}{HW}\,\lVert M \rVert_1 \ (\text{lower is better}), \qquad
      \mathrm{Coherency} = \frac{1 + \rho\big(L^c(x \odot M),\, M\big)}{2} \ (\text{higher is better}),

  :math:`\rho` the Pearson correlation over the pixels (0 when either map is flat, never NaN): the map of the image
  masked by its own map should be the same map.
* **ARCC** (Domeniconi, Stramiglio, Lombardi & Salti, "How to Evaluate and Refine your CAM", arXiv 2026,
  https://arxiv.org/abs/2605.14641, the paper of pytorch-grad-cam's ``RefineCAM`` and ``metrics/arcc.py``): the
  harmonic mean of coherency, simplicity and faithfulness, with ROAD (:mod:`camlab.metrics.road`) in the place of
  the Average Drop of Poppi et al.'s ADCC:

  .. math::
      \mathrm{ARCC} = 3\left(\frac{1}{\mathrm{Coherency}} + \frac{1}{1 - \mathrm{Complexity}}
      + \frac{1}{\mathrm{ROAD}'}\right)^{-1}, \qquad \mathrm{ROAD}' = \min\!\big(1, \max(0,\,
      2\,\mathrm{ROAD}_{\mathrm{combined}})\big)

  per image (higher is better, in [0, 1]), with ROAD on probabilities at the shares 0.2, 0.4, 0.6, 0.8; 0 when a
  term is 0 (the limit of the harmonic mean). The mean over images is reported.

Differences to pytorch-grad-cam 1.5.7 (``pytorch_grad_cam.metrics.arcc``), which camlab equals on the same maps
(``tests/test_metrics_arcc.py``):

* it adds 1e-8 to each denominator (ARCC ≈ 3e-8, not 0, when the ROAD term is 0) and its docstring says "geometric
  mean", but it computes the harmonic mean above, as ADCC does;
* it uses its maps as given (it assumes [0, 1]); camlab scales them per image, which changes nothing for maps that
  are already min-max scaled (pytorch-grad-cam's are, up to its 1e-7 in the denominator);
* its ROAD term uses whatever score its targets give; its own comment ("ROAD is between -0.5 and 0.5") holds for
  probabilities (``ClassifierOutputSoftmaxTarget``) only, so camlab's ARCC always uses probabilities;
* it masks the tensor it is given (normalised inputs: masked pixels become the mean colour); camlab's default
  ``space="image"`` masks the [0, 1] image (black), ``space="input"`` is pytorch-grad-cam's choice. The two agree for
  models without ``model.camlab`` normalisation.
"""
from __future__ import annotations

import torch
from torch import nn

from camlab.maps import safe_divide, scale
from camlab.metrics._common import (batches, check_precomputed, compute_maps, is_precomputed, on_cpu,
                                    refuses_nan_maps, saliency, to_image, to_input)
from camlab.metrics.road import check_fractions, check_options, logits_on, road_batch
from camlab.targets import class_indices

#: ARCC's ROAD shares (pytorch-grad-cam's ``road_percentiles=[20, 40, 60, 80]``)
ARCC_FRACTIONS = (0.2, 0.4, 0.6, 0.8)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) float64 Pearson correlation of each pair of maps (flattened), 0 where either map is flat."""
    a = on_cpu(a).double().reshape(a.shape[0], -1)
    b = on_cpu(b).double().reshape(b.shape[0], -1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denominator = torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1))
    return safe_divide((a * b).sum(dim=1), denominator).clamp(-1.0, 1.0)


def harmonic_mean(*terms: torch.Tensor) -> torch.Tensor:
    """Element-wise harmonic mean of non-negative terms, 0 where any term is 0 (its limit)."""
    stacked = torch.stack([term.double() for term in terms])
    positive = (stacked > 0).all(dim=0)
    safe = torch.where(stacked > 0, stacked, torch.ones_like(stacked))
    return torch.where(positive, len(terms) / (1.0 / safe).sum(dim=0), torch.zeros_like(positive, dtype=stacked.dtype))


@refuses_nan_maps
def complexity(maps) -> float:
    """Complexity (Poppi et al. 2021): the mean over images of :math:`\\lVert M \\rVert_1 / HW` of each map scaled
    to [0, 1] (module docstring), a **fraction** in [0, 1]; lower is better (a map should be sparse). Maps may be
    (H,W), (N,H,W) or input-space (N,3,H,W)."""
    return float(scale(saliency(maps)).double().mean())


def _check_explainer(explainer, metric: str) -> None:
    if is_precomputed(explainer) or not callable(explainer):
        raise TypeError(f"{metric} computes the map again on the masked image, so explainer must be an explainer "
                        "(e.g. camlab.GradCAM(model)) or a callable (x, target) -> maps; give precomputed maps as "
                        "maps=... next to it")


def _check_space(space: str) -> None:
    if space not in ("image", "input"):
        raise ValueError(f"space must be 'image' (mask the [0, 1] image) or 'input' (mask the normalised input, as "
                         f"pytorch-grad-cam), got {space!r}")


def coherency_batch(model: nn.Module, x: torch.Tensor, heat: torch.Tensor, explainer, classes: torch.Tensor,
                    space: str, offset: int) -> torch.Tensor:
    """(n,) coherency of one batch with its scaled maps ``heat`` (n,H,W): the map of ``x * heat`` against ``heat``."""
    mask = heat[:, None].to(x.dtype)
    masked = to_input(to_image(x, model) * mask, model) if space == "image" else x * mask
    again = compute_maps(explainer, masked, classes.tolist(), offset)
    return (1.0 + pearson(again, heat)) / 2.0


def _batch_maps(explainer, maps, x: torch.Tensor, classes: torch.Tensor, offset: int) -> torch.Tensor:
    """The batch's maps, scaled to [0, 1] per image: rows of the precomputed ``maps``, else the explainer's."""
    source = maps if maps is not None else explainer
    return scale(compute_maps(source, x, classes.tolist(), offset))


@refuses_nan_maps
def coherency(model: nn.Module, inputs, explainer, target=None, *, maps=None, space: str = "image",
              batch_size: int = 16, progress: bool = False) -> float:
    """Coherency (Poppi et al. 2021): the mean over images of :math:`(1 + \\rho(L^c(x \\odot M), M)) / 2`, in
    [0, 1]; higher is better (module docstring).

    Args:
        inputs: (N,C,H,W) model inputs or a DataLoader of ``(x, target)`` batches.
        explainer: an explainer or a callable ``(x, target) -> maps``; it computes the maps of the masked images (and
            of the images themselves unless ``maps`` is given).
        target: ``None`` (each image's top-1 class), an int, or one int per image.
        maps: optional precomputed maps of ``inputs`` (one per image, at the input's resolution).
        space: ``"image"`` (default) or ``"input"``, as :func:`~camlab.metrics.confidence_change`.
    """
    _check_explainer(explainer, "coherency")
    _check_space(space)
    check_precomputed(maps, inputs)
    values, offset = [], 0
    for x, batch_target in batches(inputs, (target,), batch_size, progress, "coherency"):
        classes = class_indices(logits_on(model, x, batch_size), batch_target)
        heat = _batch_maps(explainer, maps, x, classes, offset)
        values.append(coherency_batch(model, x, heat, explainer, classes, space, offset))
        offset += x.shape[0]
    return float(torch.cat(values).mean())


@refuses_nan_maps
def arcc_scores(model: nn.Module, inputs, explainer, target=None, *, maps=None, space: str = "image",
                fractions=ARCC_FRACTIONS, noise: float = 0.01, batch_size: int = 16, seed: int = 0,
                progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-image ARCC and its three terms (module docstring): ``{"complexity", "coherency", "road", "arcc"}``, each
    an (N,) float64 tensor; ``"road"`` is ROAD's combined score (before ARCC's doubling and clipping).

    Args as :func:`coherency`; ``fractions``, ``noise`` and ``seed`` go to ROAD
    (:func:`~camlab.metrics.road_curves`, always on probabilities).
    """
    _check_explainer(explainer, "arcc")
    _check_space(space)
    fractions = check_fractions(fractions)
    check_precomputed(maps, inputs)
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"complexity": [], "coherency": [], "road": []}
    offset = 0
    for x, batch_target in batches(inputs, (target,), batch_size, progress, "ARCC"):
        check_options("probability", noise, x)
        classes = class_indices(logits_on(model, x, batch_size), batch_target)
        heat = _batch_maps(explainer, maps, x, classes, offset)
        parts["complexity"].append(on_cpu(heat).double().mean(dim=(1, 2)))
        parts["coherency"].append(coherency_batch(model, x, heat, explainer, classes, space, offset))
        most, least = road_batch(model, x, heat, classes, fractions, score="probability", noise=noise,
                                 generator=generator, batch_size=batch_size)
        parts["road"].append((least.mean(dim=1) - most.mean(dim=1)) / 2)
        offset += x.shape[0]
    scores = {name: torch.cat(values) for name, values in parts.items()}
    road_term = (2 * scores["road"]).clamp(0.0, 1.0)
    scores["arcc"] = harmonic_mean(scores["coherency"], 1 - scores["complexity"], road_term)
    return scores


@refuses_nan_maps
def arcc(model: nn.Module, inputs, explainer, target=None, **options) -> float:
    """ARCC (Domeniconi et al. 2026): the mean over images of the harmonic mean of Coherency, 1 - Complexity and
    the doubled, clipped ROAD combined score, in [0, 1]; **higher is better**. Options as :func:`arcc_scores`."""
    return float(arcc_scores(model, inputs, explainer, target, **options)["arcc"].mean())

