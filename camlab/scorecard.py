r"""Per-scene scores of explanation methods, summarised with 95% intervals and honest rankings.

:func:`camlab.compare.compare_methods` prints one mean per method and metric; a course claim ("A is more faithful
than B") needs the spread behind that mean. Here each metric is kept **per scene**, so that

* :func:`per_scene_scores` gives one value per scene and metric (pointing-game hit share, mass inside the mask,
  the relative drop of the class probability under the soft mask x·M and whether it rose, RISE deletion and
  insertion AUC), all from :mod:`camlab.metrics`;
* :class:`Scorecard` prints each mean with its percentile-bootstrap interval (:func:`camlab.stats.bootstrap_ci`,
  ``0.31 [0.29, 0.33]``) and ranks methods in **tiers**: a method joins the tier of the best remaining method when
  the paired bootstrap interval of their difference (:func:`camlab.stats.paired_comparison`, scenes resampled
  together) contains 0, i.e. when the data cannot tell them apart. Exact ties (identical values on every scene)
  are always one tier, so no ranking is decided by alphabetical order.

    >>> scores = {name: per_scene_scores(model, x, maps[name], labels, masks) for name in maps}
    >>> card = Scorecard(scores)
    >>> print(card)                  # mean [95% interval] per method and metric, n scenes
    >>> card.tiers("deletion")       # [["cam", "gradcam", ...], ["layercam", ...], ...], best tier first
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from camlab import metrics as _metrics
from camlab import stats
from camlab.compare import METRICS
from camlab.metrics._common import saliency

__all__ = ["Scorecard", "per_scene_scores", "tiers"]


def _confidence_per_scene(model: nn.Module, inputs: torch.Tensor, maps: torch.Tensor, classes: list[int]):
    drops, rises = [], []
    for i, c in enumerate(classes):  # confidence_change averages; one scene at a time keeps each scene's value
        change = _metrics.confidence_change(model, inputs[i:i + 1], maps[i:i + 1], [c])
        drops.append(change["average_drop"])
        rises.append(change["increase_in_confidence"])
    return np.asarray(drops), np.asarray(rises)


def per_scene_scores(model: nn.Module, inputs: torch.Tensor, maps, target: Sequence[int], ground_truth=None, *,
                     metrics: Sequence[str] = ("pointing", "mass_inside", "average_drop", "increase", "deletion",
                                               "insertion"),
                     steps: int = 16, tolerance: float | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """One value per scene for each metric key of :data:`camlab.compare.METRICS`.

    Args:
        inputs: (N,C,H,W) model inputs; ``maps``: their (N,H,W) maps (any scale; precomputed, so one set of maps
            serves every metric); ``target``: the class explained per scene (N ints).
        ground_truth: (N,H,W) bool masks or boxes, for ``"pointing"`` and ``"mass_inside"``.
        steps: deletion / insertion steps; ``tolerance``: the pointing game's, in pixels (default 15 px scaled
            from 224 to the input size, as :func:`camlab.compare.compare_methods`).

    Returns:
        ``{key: (N,) float array}``; the mean of each array is what ``compare_methods`` reports.
    """
    unknown = [key for key in metrics if key not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    heat = saliency(maps)
    n, size = inputs.shape[0], tuple(inputs.shape[-2:])
    classes = [int(c) for c in target]
    if heat.shape[0] != n or len(classes) != n:
        raise ValueError(f"need one map and one target per input: {n} inputs, {heat.shape[0]} maps, "
                         f"{len(classes)} targets")
    if ground_truth is None and {"pointing", "mass_inside"} & set(metrics):
        raise ValueError("'pointing' and 'mass_inside' need ground_truth (masks or boxes)")
    masks = _metrics.gt_masks(ground_truth, n, size) if ground_truth is not None else None
    tolerance = 15 * size[0] / 224 if tolerance is None else tolerance
    out: dict[str, np.ndarray] = {}
    if "pointing" in metrics:
        out["pointing"] = np.asarray([_metrics.pointing_game(heat[i:i + 1], masks[i:i + 1], tolerance=tolerance)
                                      for i in range(n)])
    if "mass_inside" in metrics:
        out["mass_inside"] = _metrics.mass_inside(heat, masks).double().numpy()
    if "average_drop" in metrics or "increase" in metrics:
        drops, rises = _confidence_per_scene(model, inputs, heat, classes)
        out.update({key: value for key, value in (("average_drop", drops), ("increase", rises)) if key in metrics})
    for mode in ("deletion", "insertion"):
        if mode in metrics:
            _, curves = _metrics.causal_curve(model, inputs, heat, classes, mode=mode, steps=steps, seed=seed)
            out[mode] = _metrics.auc(curves).numpy()
    return {key: out[key] for key in metrics}


def tiers(values: Mapping[str, Sequence[float]], *, higher_is_better: bool, n_resamples: int = 10_000,
          seed: int = 0, tolerance: float = 0.0) -> list[list[str]]:
    """Methods in tiers, best first, from ``{method: per-case values}`` (the same cases for every method): the best
    remaining mean opens a tier, and every remaining method joins it whose paired difference to that method has a
    95% bootstrap interval containing 0 (:func:`camlab.stats.paired_comparison`) or that equals it on every case.
    Within a tier methods are listed by mean, then by name, so no order is decided by the alphabet alone.

    ``tolerance`` > 0 also joins every method whose paired interval lies inside ±``tolerance`` (equivalent within
    it, :func:`camlab.stats.verdict`) and lists each tier by name: differences smaller than the tolerance (float
    noise of another CPU, a negligible effect) can then neither split a tier nor reorder it."""
    arrays = {m: np.asarray(v, dtype=float) for m, v in values.items()}
    sign = -1.0 if higher_is_better else 1.0
    left = sorted(arrays, key=lambda m: (sign * float(arrays[m].mean()), m))
    out = []
    while left:
        head = arrays[left[0]]
        tier = [m for m in left if np.array_equal(head, arrays[m]) or _joins(stats.paired_comparison(
            head, arrays[m], n_resamples=n_resamples, seed=seed).difference, tolerance)]
        out.append(sorted(tier) if tolerance > 0 else tier)
        left = [m for m in left if m not in tier]
    return out


def _joins(difference: stats.Estimate, tolerance: float) -> bool:
    return difference.contains(0.0) or (-tolerance < difference.low and difference.high < tolerance)


class Scorecard:
    """Per-scene scores of several methods on the same scenes: means with intervals, and tiers instead of ranks.

    Args:
        scores: ``{method: {metric key: (N,) per-scene values}}`` (e.g. from :func:`per_scene_scores`), the same
            N scenes for every method.
        n_resamples, seed: of every bootstrap (:mod:`camlab.stats`).
    """

    def __init__(self, scores: Mapping[str, Mapping[str, Sequence[float]]], *, n_resamples: int = 10_000,
                 seed: int = 0):
        if not scores:
            raise ValueError("scores is empty: pass {method: {metric: per-scene values}}")
        self.scores = {m: {k: np.asarray(v, dtype=float) for k, v in row.items()} for m, row in scores.items()}
        self.methods = list(self.scores)
        self.metrics = [key for key in METRICS if key in next(iter(self.scores.values()))]
        sizes = {v.shape for row in self.scores.values() for v in row.values()}
        if len(sizes) != 1 or any(set(row) != set(self.metrics) for row in self.scores.values()):
            raise ValueError(f"every method needs the same metrics with one value per scene; got shapes {sizes}")
        self.n = sizes.pop()[0]
        self._options = {"n_resamples": n_resamples, "seed": seed}

    def estimate(self, method: str, key: str) -> stats.Estimate:
        """The mean of ``key`` over the scenes with its 95% percentile-bootstrap interval."""
        return stats.bootstrap_ci(self.scores[method][key], **self._options)

    def difference(self, a: str, b: str, key: str) -> stats.PairedComparison:
        """Mean of ``a − b`` on ``key`` over the same scenes, with a paired bootstrap interval and sign test."""
        return stats.paired_comparison(self.scores[a][key], self.scores[b][key], **self._options)

    def tiers(self, key: str, tolerance: float = 0.0) -> list[list[str]]:
        """Methods in tiers, best first: the best remaining mean opens a tier, and every remaining method whose
        paired difference to it has an interval containing 0 joins it (listed by mean, then by name)."""
        if key not in self.metrics:
            raise KeyError(f"unknown metric {key!r}; this scorecard has {self.metrics}")
        return tiers({m: self.scores[m][key] for m in self.methods}, higher_is_better=METRICS[key][1],
                     tolerance=tolerance, **self._options)

    def __str__(self) -> str:
        header = ["method"] + [METRICS[key][0] for key in self.metrics]
        body = [[m] + [f"{self.estimate(m, key):.3f}".split(", n=")[0] for key in self.metrics]
                for m in self.methods]
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                 for line in [header] + body]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"\n* mean [95% bootstrap interval] over n={self.n} scenes")
        return "\n".join(lines)

    __repr__ = __str__
