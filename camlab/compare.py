"""Compare explanation methods side by side: metrics and cost in one table.

    >>> table = camlab.compare.compare_methods(model, x, ["gradcam", "gradcam++", "scorecam"], layer="features",
    ...                                        target=labels, ground_truth=masks)
    >>> print(table)                       # aligned text; in Jupyter the table renders as Markdown
    >>> table.best("deletion")             # the method with the lowest deletion AUC

``methods`` may hold registry names (``camlab.METHODS``), explainer classes (your own subclass too), explainer
instances, or any callable ``(x, target) -> maps``. Each method's maps are computed once and shared by every
metric (:mod:`camlab.metrics`); its cost is the median wall time of one call on one image, also given as a
multiple of one bare forward pass of the model, which depends less on the machine than seconds do.

This module is the small, notebook-sized cousin of :mod:`camlab.evaluate` (which fixes its data sets and adds
localization error and the sanity check).
"""
from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from camlab import metrics as _metrics
from camlab.hooks import model_name
from camlab.methods.registry import build, layer_for
from camlab.metrics._common import probabilities, saliency
from camlab.targets import class_indices

#: metric key -> (column title, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "pointing": ("pointing game ↑", True),
    "mass_inside": ("mass inside ↑", True),
    "average_drop": ("avg. drop ↓", False),
    "increase": ("increase ↑", True),
    "deletion": ("deletion AUC ↓", False),
    "insertion": ("insertion AUC ↑", True),
}
#: cost columns: seconds per map and the same as a multiple of one forward pass
COST: dict[str, tuple[str, bool]] = {
    "seconds": ("ms / map", False),
    "forwards": ("× forward", False),
}
DEFAULT_METRICS = ("pointing", "average_drop", "increase", "deletion", "insertion")
_NEEDS_TRUTH = {"pointing", "mass_inside"}


def method_name(method) -> str:
    """A short name for a method given as a registry name, a class, an instance or a callable."""
    if isinstance(method, str):
        return method
    cls = method if isinstance(method, type) else type(method)
    registered = cls.__dict__.get("name")  # set on the class itself by camlab's @register
    if registered:
        return registered
    if inspect.isfunction(method) or inspect.ismethod(method):
        return method.__name__
    return cls.__name__


def build_explainer(method, model: nn.Module, layer=None, **options) -> Callable:
    """An explainer for ``method``: a registry name or an explainer class is built by :func:`camlab.build` (at
    ``layer`` if it explains a layer; input-space methods ignore it; ``progress=False`` unless ``options`` say
    otherwise); an instance or any other callable is returned as it is."""
    if isinstance(method, (str, type)):
        return build(method, model, layer_for(method, layer), **{"progress": False, **options})
    if callable(method):
        return method
    raise TypeError(f"a method must be a name in camlab.METHODS, an explainer class, an explainer or a callable "
                    f"(x, target) -> maps; got {type(method).__name__}")


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_per_map(explainer: Callable, x: torch.Tensor, target=None, *, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds of one call ``explainer(x[:1], target)`` (one map), after ``warmup`` calls."""
    one = x[:1]
    target = target[:1] if isinstance(target, (list, tuple, torch.Tensor)) else target
    for _ in range(warmup):
        explainer(one, target)
    return _median_seconds(lambda: explainer(one, target), repeats)


def forward_seconds(model: nn.Module, x: torch.Tensor, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of one bare forward pass of ``model`` on ``x[:1]`` without gradients (the unit of cost)."""
    one = x[:1]
    with torch.no_grad():
        for _ in range(warmup):
            model(one)
        return _median_seconds(lambda: model(one), repeats)


def count_forward_images(model: nn.Module, explainer: Callable, x: torch.Tensor, target=None) -> int:
    """How many images pass through ``model``'s forward during one call ``explainer(x, target)``: the cost of a
    method in forward passes, counted instead of timed (so it does not depend on the machine's load). A forward
    pre-hook on the model adds up the batch sizes of its inputs; it is removed afterwards."""
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, inputs: seen.append(int(inputs[0].shape[0])))
    try:
        explainer(x, target)
    finally:
        handle.remove()
    return sum(seen)


def instance_peaks(maps, boxes) -> torch.Tensor:
    """(N,K) the maximum of each map inside each of its K boxes (``(x0, y0, x1, y1)``, upper edges exclusive),
    e.g. ``make_scenes(..., instances=2).instance_boxes``. With maps scaled to [0, 1], a small value means that
    instance was missed: ``instance_peaks(maps, boxes).amin(1)`` is the weaker instance's peak."""
    heat = saliency(maps)
    boxes = torch.as_tensor(boxes)
    if boxes.ndim == 2:
        boxes = boxes[:, None]
    if boxes.ndim != 3 or boxes.shape[0] != heat.shape[0] or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N,K,4) for {heat.shape[0]} maps, got {tuple(boxes.shape)}")
    out = torch.zeros(boxes.shape[:2], dtype=heat.dtype, device=heat.device)
    height, width = heat.shape[-2:]
    for i in range(boxes.shape[0]):
        for k in range(boxes.shape[1]):
            x0, y0, x1, y1 = (int(v) for v in boxes[i, k].round().tolist())
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"box {boxes[i, k].tolist()} of image {i} is empty inside the {height}x{width} map")
            out[i, k] = heat[i, y0:y1, x0:x1].max()
    return out


@dataclass(repr=False)
class Comparison:
    """The result of :func:`compare_methods`: one row per method, ``{"method", <metric keys>, "seconds",
    "forwards"}``; ``notes`` say how it was measured. ``print(comparison)`` gives aligned text."""

    rows: list[dict]
    metrics: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def column(self, key: str) -> dict[str, float]:
        """``{method: value}`` for one metric or cost key."""
        if key not in METRICS and key not in COST:
            raise KeyError(f"unknown column {key!r}; columns: {', '.join([*self.metrics, *COST])}")
        return {row["method"]: row.get(key) for row in self.rows}

    def ranking(self, key: str) -> list[str]:
        """Methods from best to worst on ``key`` (metrics by their direction, cost: fastest first)."""
        higher = (METRICS.get(key) or COST[key])[1]
        values = {name: value for name, value in self.column(key).items() if value is not None}
        return sorted(values, key=lambda name: -values[name] if higher else values[name])

    def best(self, key: str) -> str:
        """The best method on ``key``."""
        return self.ranking(key)[0]

    def __getitem__(self, method: str) -> dict:
        for row in self.rows:
            if row["method"] == method:
                return row
        raise KeyError(f"no method {method!r} in this comparison; methods: {[r['method'] for r in self.rows]}")

    def __str__(self) -> str:
        return format_comparison(self)

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return format_comparison(self, markdown=True)


def compare_methods(model: nn.Module, inputs: torch.Tensor, methods: Sequence | Mapping, layer=None, *,
                    target=None, ground_truth=None, metrics: Sequence[str] = DEFAULT_METRICS, steps: int = 16,
                    tolerance: float | None = None, batch_size: int = 16, timing_repeats: int = 3,
                    options: Mapping | None = None, seed: int = 0) -> Comparison:
    """Every method on every metric, plus its cost, on one batch of inputs.

    Args:
        model: the classifier (in eval mode; its state is restored by every explainer and metric).
        inputs: (N,C,H,W) model inputs (keep N small in a notebook: 8-32).
        methods: a list of methods (names in ``camlab.METHODS``, explainer classes, explainers, callables
            ``(x, target) -> maps``), or a dict ``{name: method}`` to choose the row names.
        layer: the layer for methods built from a name or class (``None``: the last spatial layer).
        target: the class explained per image: ``None`` (the model's top-1 class), an int, or one int per image;
            every method explains the same classes and every metric measures those classes.
        ground_truth: (N,H,W) bool masks or boxes (see :func:`camlab.metrics.gt_masks`), needed by
            ``"pointing"`` and ``"mass_inside"``.
        metrics: keys of :data:`METRICS`: ``"pointing"`` (:func:`camlab.metrics.pointing_game`), ``"mass_inside"``
            (share of the map inside the ground truth), ``"average_drop"`` and ``"increase"`` (soft masks x·M, as
            the Grad-CAM++ paper), ``"deletion"`` and ``"insertion"`` (RISE, ``steps`` steps).
        tolerance: the pointing game's tolerance in pixels (default 15 px scaled from 224 to the input size).
        timing_repeats: calls on one image whose median gives ``seconds`` (one warm-up call first); 0 skips timing.
            With ``metrics=()`` only the cost is measured (no maps of the whole batch are computed).
        options: constructor options for methods built here, e.g. ``{"batch_size": 64}`` for Score-CAM (each
            class receives those its constructor accepts).
        seed: for the metrics' tie-breaking.

    Returns:
        a :class:`Comparison`. Metrics are fractions in [0, 1]; ``seconds`` is per map on one image and
        ``forwards`` the same divided by one bare forward pass on one image.
    """
    named = _check_arguments(inputs, methods, metrics, ground_truth)
    n, size = inputs.shape[0], tuple(inputs.shape[-2:])
    classes = class_indices(probabilities(model, inputs), target).tolist()
    masks = _metrics.gt_masks(ground_truth, n, size) if ground_truth is not None else None
    if tolerance is None:
        tolerance = 15 * size[0] / 224
    unit = forward_seconds(model, inputs) if timing_repeats > 0 else None
    settings = dict(metrics=metrics, masks=masks, tolerance=tolerance, steps=steps, batch_size=batch_size, seed=seed)
    rows = []
    for name, method in named:
        explainer = build_explainer(method, model, layer, **dict(options or {}))
        row = {"method": name, **_metric_row(model, inputs, explainer, classes, **settings)}
        if timing_repeats > 0:
            row["seconds"] = time_per_map(explainer, inputs, classes, repeats=timing_repeats)
            row["forwards"] = row["seconds"] / unit
        rows.append(row)
    notes = [f"{n} inputs of {size[0]}x{size[1]}, model {model_name(model)}, layer {layer!r}; each method "
             "explains the same class per image (the model's top-1 unless a target was given)"]
    if metrics:
        notes.append("fractions in [0, 1]; soft masks x·M for average drop / increase; deletion (zeros) and insertion "
                     f"(blur) with {steps} steps; pointing game tolerance {tolerance:.1f} px")
    if unit is not None:
        notes.append(f"cost: median of {timing_repeats} calls on one image; one bare forward pass took "
                     f"{unit * 1000:.2f} ms (timings vary with the machine's load, ratios less)")
    return Comparison(rows, tuple(metrics), notes)


def _check_arguments(inputs, methods, metrics, ground_truth) -> list[tuple[str, object]]:
    """The ``(row name, method)`` pairs, after checking the arguments of :func:`compare_methods`."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        raise ValueError("inputs must be an (N,C,H,W) tensor of model inputs (e.g. camlab.preprocess(images, model))")
    unknown = [key for key in metrics if key not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    if ground_truth is None and _NEEDS_TRUTH & set(metrics):
        raise ValueError(f"metrics {sorted(_NEEDS_TRUTH & set(metrics))} need ground_truth (masks or boxes)")
    named = list(methods.items()) if isinstance(methods, Mapping) else [(method_name(m), m) for m in methods]
    if not named:
        raise ValueError("methods is empty")
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"two methods share a name in {names}; pass a dict {{name: method}}")
    return named


def _metric_row(model, inputs, explainer, classes, *, metrics, masks, tolerance, steps, batch_size, seed) -> dict:
    """The metric columns of one method: its maps of the whole batch, computed once, against every metric."""
    row: dict = {}
    if not metrics:
        return row
    maps = torch.cat([saliency(explainer(inputs[s:s + batch_size], classes[s:s + batch_size]))
                      for s in range(0, inputs.shape[0], batch_size)])
    if "pointing" in metrics:
        row["pointing"] = _metrics.pointing_game(maps, masks, tolerance=tolerance)
    if "mass_inside" in metrics:
        row["mass_inside"] = float(_metrics.mass_inside(maps, masks).mean())
    if "average_drop" in metrics or "increase" in metrics:
        change = _metrics.confidence_change(model, inputs, maps, classes, batch_size=batch_size, seed=seed)
        if "average_drop" in metrics:
            row["average_drop"] = change["average_drop"]
        if "increase" in metrics:
            row["increase"] = change["increase_in_confidence"]
    if "deletion" in metrics:
        row["deletion"] = _metrics.deletion_auc(model, inputs, maps, classes, steps=steps, seed=seed)
    if "insertion" in metrics:
        row["insertion"] = _metrics.insertion_auc(model, inputs, maps, classes, steps=steps, seed=seed)
    return row


def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key == "seconds":
        return f"{value * 1000:.1f}"
    if key == "forwards":
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_comparison(comparison: Comparison, *, markdown: bool = False, notes: bool = True) -> str:
    """The comparison as aligned text (or a Markdown table), best value per column marked with ``*``."""
    keys = [key for key in (*comparison.metrics, *COST) if any(key in row for row in comparison.rows)]
    titles = {**METRICS, **COST}
    best = {key: comparison.best(key) for key in keys if len(comparison.rows) > 1}
    header = ["method"] + [titles[key][0] for key in keys]
    body = [[row["method"]] + [_cell(key, row.get(key)) + ("*" if best.get(key) == row["method"] else "")
                               for key in keys] for row in comparison.rows]
    footer = [f"* {note}" if not markdown else f"- {note}" for note in comparison.notes] if notes else []
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(keys) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines + ([""] + footer if footer else []))
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + ([""] + footer if footer else []))


def variant_maps(model: nn.Module, x: torch.Tensor, target, methods: Sequence[str], layer,
                 **options) -> dict[str, torch.Tensor]:
    """``{name: (N,H,W) scaled maps}`` of several single-layer methods (registry names) at one ``layer``, all read
    from **one** forward (and backward) pass: the channel-weight variants differ only in ``weights(forward)``
    (:class:`camlab.methods.base.LayerMethod`), so each map equals the method's own call on ``x`` while the model
    runs once instead of once per method (Score-CAM and Ablation-CAM still run their own masked passes).
    With a list of layers, one pass serves them all and the result is ``{layer: {name: maps}}``.
    ``options`` go to every explainer that takes them (:func:`build_explainer`)."""
    from camlab.hooks import preserved_state
    from camlab.methods.base import LayerMethod

    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    explainers = [{name: build_explainer(name, model, one, **options) for name in methods} for one in layers]
    wrong = [name for name, e in explainers[0].items() if not isinstance(e, LayerMethod) or len(e.layer_names) != 1]
    if not methods or wrong:
        raise ValueError(f"variant_maps needs single-layer channel-weight methods, got {wrong or 'none'}")
    shared = build_explainer("layercam", model, layers if len(layers) > 1 else layers[0])
    x = shared.checked_input(x)
    out = []
    with preserved_state(model):
        forward = shared.forward_pass(x, target)
        for index, group in enumerate(explainers):
            at = forward.at(index)
            out.append({name: e.present(e.layer_map(at).detach(), x, raw=False) for name, e in group.items()})
    return dict(zip(layers, out)) if isinstance(layer, (list, tuple)) else out[0]


def merge_identical(maps: Mapping[str, torch.Tensor], atol: float = 1e-4) -> dict[str, torch.Tensor]:
    """The maps with methods whose maps agree everywhere within ``atol`` merged into one entry named
    ``"a = b = c"`` (names sorted): at a layer right before global average pooling CAM, Grad-CAM, XGrad-CAM and
    HiResCAM give one map, and a ranking must count that map once, not once per name."""
    groups: list[list[str]] = []
    for name in sorted(maps):
        home = next((g for g in groups if maps[g[0]].shape == maps[name].shape
                     and float((maps[g[0]] - maps[name]).abs().max()) <= atol), None)
        home.append(name) if home is not None else groups.append([name])
    return {" = ".join(g): maps[g[0]] for g in groups}
