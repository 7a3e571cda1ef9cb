r"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

Pixels are ranked by the map and a share :math:`r` of them is removed, either the most relevant first (**MoRF**: the
:math:`\lfloor rHW + \tfrac12 \rfloor` highest values) or the least relevant first (**LeRF**: as many lowest values);
the removed pixels are filled by noisy linear imputation (:mod:`camlab.metrics.imputation`), which, unlike a
constant or blurred substrate, leaks (almost) no information about *where* pixels were removed, so the model's
response measures what was removed rather than the shape of the mask (the paper's "class information leakage").
For every image :math:`i`, target class :math:`c` and share :math:`r`:

.. math::
    \Delta^{\mathrm{MoRF}}_i(r) = s_c(\tilde x_i^{\mathrm{MoRF}}(r)) - s_c(x_i), \qquad
    \Delta^{\mathrm{LeRF}}_i(r) = s_c(\tilde x_i^{\mathrm{LeRF}}(r)) - s_c(x_i)

with :math:`s_c` the softmax probability of :math:`c` (``score="probability"``, camlab's convention for every
faithfulness metric) or its logit (``score="logit"``, pytorch-grad-cam's ``ClassifierOutputTarget``). The summaries
are means over images and shares :math:`r \in` ``fractions`` (default 0.1, ..., 0.9, as pytorch-grad-cam's
``ROAD*Average`` classes):

.. math::
    \mathrm{MoRF} = \overline{\Delta^{\mathrm{MoRF}}}\ (\text{lower is better}), \qquad
    \mathrm{LeRF} = \overline{\Delta^{\mathrm{LeRF}}}\ (\text{higher is better}), \qquad
    \mathrm{combined} = \tfrac12\left(\mathrm{LeRF} - \mathrm{MoRF}\right)\ (\text{higher is better}).

The paper reports the MoRF and LeRF curves (accuracy over :math:`r`); the single combined number is
pytorch-grad-cam's ``ROADCombined``; the differences to the unmodified image are pytorch-grad-cam's too (they cancel
in the combined score).

Differences to pytorch-grad-cam 1.5.7 (``pytorch_grad_cam.metrics.road``), which camlab equals on maps without ties
at image sizes where :math:`rHW` is a whole number (``tests/test_metrics_road.py``):

* its ``percentile=p`` is the share **kept**: ``ROADMostRelevantFirst(80)`` removes the top 20%, i.e.
  ``fractions=(0.2,)``; ``ROADLeastRelevantFirst(20)`` removes the lowest 80%, ``fractions=(0.8,)``.
* it removes the pixels at or above the ``p``-th percentile (linear interpolation), :math:`1 + \lfloor r(HW-1)
  \rfloor` pixels of a map without ties, one more than :math:`rHW` when that is whole; camlab removes exactly
  the share the paper names (ties in a seeded random order, as every ranking metric of camlab).
* with ties at the percentile it removes *every* tied pixel: a Grad-CAM map that is zero on more than 10% of the
  image loses all its pixels at ``ROADMostRelevantFirst(10)`` (a singular system; SciPy warns and the imputed image
  is not finite); camlab removes exactly :math:`\lfloor rHW + \tfrac12 \rfloor`.
* its noise comes from the global torch random state; camlab's from ``seed``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from camlab.hooks import preserved_state
from camlab.metrics._common import (MapSource, batches, check_precomputed, compute_maps, logits_of, on_cpu,
                                    refuses_nan_maps)
from camlab.metrics.faithfulness import pixel_order
from camlab.metrics.imputation import noisy_linear_imputation
from camlab.targets import class_indices
from camlab.targets.objects import class_probability

#: pytorch-grad-cam's percentiles 10, ..., 90 as shares of removed pixels
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SCORES = ("probability", "logit")


def check_fractions(fractions) -> tuple[float, ...]:
    """``fractions`` as a tuple of floats strictly between 0 and 1, or a clear error."""
    values = tuple(float(value) for value in np.atleast_1d(np.asarray(fractions, dtype=float)))
    if not values or not all(0.0 < value < 1.0 for value in values):
        raise ValueError(f"fractions must be shares of removed pixels strictly between 0 and 1 (e.g. (0.1, ..., "
                         f"0.9); pytorch-grad-cam's percentile p is the share 1 - p/100), got {fractions!r}")
    return values


def removed_count(fraction: float, pixels: int) -> int:
    """How many of ``pixels`` a share ``fraction`` removes: :math:`\\lfloor r\\,HW + 1/2 \\rfloor` (halves round up)."""
    return int(np.floor(fraction * pixels + 0.5))


def class_scores(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, score: str,
                 batch_size: int) -> torch.Tensor:
    """(M,) float64 CPU score of ``classes[m]`` on ``x[m]``: softmax probability or logit, in eval mode without
    gradients, ``batch_size`` images at a time; the model's state is restored afterwards."""
    values = []
    with preserved_state(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = logits_of(model(x[start:start + batch_size]))
            if logits.ndim != 2:
                raise ValueError(f"the model returned shape {tuple(logits.shape)}; ROAD needs (N, classes) logits")
            chosen = classes[start:start + batch_size].to(logits.device)
            picked = (class_probability(logits.float(), chosen) if score == "probability"
                      else logits.float().gather(1, chosen[:, None])[:, 0])
            values.append(on_cpu(picked).double())
    return torch.cat(values)


def logits_on(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, classes) logits of ``x`` (eval mode, no gradients, state restored), for resolving the target classes."""
    with preserved_state(model), torch.no_grad():
        return torch.cat([logits_of(model(x[start:start + batch_size])).detach()
                          for start in range(0, x.shape[0], batch_size)])


def removal_masks(heat: torch.Tensor, fractions, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(F,H,W) boolean masks of the removed pixels of one (H,W) map for each share: most relevant first and least
    relevant first (ranked by :func:`~camlab.metrics.faithfulness.pixel_order`, ties in a seeded random order)."""
    height, width = heat.shape
    pixels = height * width
    rank = torch.empty(pixels, dtype=torch.long)
    rank[pixel_order(heat, generator)] = torch.arange(pixels)
    counts = torch.tensor([removed_count(fraction, pixels) for fraction in fractions])
    if int(counts.max()) >= pixels:
        raise ValueError(f"a share of {max(fractions)} removes all {pixels} pixels of a {height}x{width} image, so "
                         "there is nothing to impute them from; use smaller fractions or larger images")
    most = rank[None] < counts[:, None]
    least = rank[None] >= pixels - counts[:, None]
    return most.view(-1, height, width), least.view(-1, height, width)


def road_batch(model: nn.Module, x: torch.Tensor, heat: torch.Tensor, classes: torch.Tensor, fractions, *,
               score: str, noise: float, generator: torch.Generator,
               batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,F) MoRF and LeRF changes of one batch ``x`` with its (n,H,W) maps ``heat`` (module docstring)."""
    before = class_scores(model, x, classes, score, batch_size)
    perturbed, repeated = [], []
    for i in range(x.shape[0]):
        most, least = removal_masks(heat[i].detach().cpu(), fractions, generator)
        for removed in torch.cat([most, least]):
            perturbed.append(noisy_linear_imputation(x[i], removed, noise, generator))
        repeated.append(classes[i].repeat(2 * len(fractions)))
    after = class_scores(model, torch.stack(perturbed), torch.cat(repeated), score, batch_size)
    change = (after.view(x.shape[0], 2, len(fractions)) - before[:, None, None])
    return change[:, 0], change[:, 1]


def check_options(score: str, noise: float, x: torch.Tensor) -> None:
    """The options and the batch of a ROAD call, checked before any work."""
    if score not in SCORES:
        raise ValueError(f"score must be 'probability' (softmax of the target class) or 'logit', got {score!r}")
    if not (isinstance(noise, (int, float)) and noise >= 0 and np.isfinite(noise)):
        raise ValueError(f"noise must be a finite standard deviation >= 0 (the paper's 0.01), got {noise!r}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"ROAD needs (N,C,H,W) float images, got {got}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("the inputs contain NaN or inf; ROAD imputes removed pixels from their neighbours, so every "
                         "input value must be finite")


@refuses_nan_maps
def road_curves(model: nn.Module, inputs, explainer: MapSource, target=None, *, fractions=FRACTIONS,
                score: str = "probability", noise: float = 0.01, batch_size: int = 16, seed: int = 0,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ROAD changes of every image at every share of removed pixels (module docstring).

    Args:
        inputs: (N,C,H,W) model inputs or a DataLoader of ``(x, target)`` batches (``x`` alone also works); the
            imputation works on these values (normalised inputs, as pytorch-grad-cam), ``noise`` in their units.
        explainer: an explainer / callable ``(x, target) -> maps`` (called with the resolved class indices), or
            precomputed maps; only the order of the values matters.
        target: ``None`` (each image's top-1 class), an int, or one int per image.
        fractions: shares of removed pixels, each strictly between 0 and 1.
        score: ``"probability"`` (default) or ``"logit"``.
        noise: standard deviation of the imputation noise (0 for the plain linear imputation).
        batch_size: images per model call (each image gives ``2 * len(fractions)`` imputed copies).
        seed: seeds the tie order and the noise (the global random state is untouched).

    Returns:
        ``(fractions, most_relevant_first, least_relevant_first)``: (F,) shares and two (N,F) float64 tensors of
        score changes (imputed minus unmodified).
    """
    fractions = check_fractions(fractions)
    generator = torch.Generator().manual_seed(seed)
    check_precomputed(explainer, inputs)
    most, least, offset = [], [], 0
    for x, batch_target in batches(inputs, (target,), batch_size, progress, "ROAD"):
        check_options(score, noise, x)
        classes = class_indices(logits_on(model, x, batch_size), batch_target)
        heat = compute_maps(explainer, x, classes.tolist(), offset)
        morf, lerf = road_batch(model, x, heat, classes, fractions, score=score, noise=noise,
                                generator=generator, batch_size=batch_size)
        most.append(morf)
        least.append(lerf)
        offset += x.shape[0]
    return torch.tensor(fractions, dtype=torch.float64), torch.cat(most), torch.cat(least)


@refuses_nan_maps
def road(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> dict[str, float]:
    """ROAD's three summaries in one pass: ``{"most_relevant_first": ..., "least_relevant_first": ...,
    "combined": ..., "n": N}``, the mean score changes over images and shares and :math:`(\\mathrm{LeRF} -
    \\mathrm{MoRF})/2` (module docstring; probabilities by default, so each lies in [-1, 1] and the combined score
    in [-1, 1], usually in [-0.5, 0.5]). Options as :func:`road_curves`."""
    _, most, least = road_curves(model, inputs, explainer, target, **options)
    morf, lerf = float(most.mean()), float(least.mean())
    return {"most_relevant_first": morf, "least_relevant_first": lerf, "combined": (lerf - morf) / 2,
            "n": most.shape[0]}


@refuses_nan_maps
def road_most_relevant_first(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> float:
    """ROAD MoRF: the mean change of the target's score when the most relevant pixels are removed and imputed
    (**lower is better**); pytorch-grad-cam's ``ROADMostRelevantFirstAverage``. Options as :func:`road_curves`."""
    return road(model, inputs, explainer, target, **options)["most_relevant_first"]


@refuses_nan_maps
def road_least_relevant_first(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> float:
    """ROAD LeRF: the mean change of the target's score when the least relevant pixels are removed and imputed
    (**higher is better**, near 0 for a good map); pytorch-grad-cam's ``ROADLeastRelevantFirstAverage``."""
    return road(model, inputs, explainer, target, **options)["least_relevant_first"]


@refuses_nan_maps
def road_combined(model: nn.Module, inputs, explainer: MapSource, target=None, **options) -> float:
    """ROAD combined, :math:`(\\mathrm{LeRF} - \\mathrm{MoRF}) / 2` (**higher is better**); pytorch-grad-cam's
    ``ROADCombined``. Options as :func:`road_curves`."""
    return road(model, inputs, explainer, target, **options)["combined"]
