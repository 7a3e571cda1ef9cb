"""Every method against every metric on the evaluation sets: :func:`run` builds the :class:`Table`.

Each metric is kept per case (per sample; localization error per image; the sanity check per sanity sample), so
that every mean in the table comes with a 95% interval (:mod:`camlab.stats`) and two methods can be compared on
the same cases (:meth:`Table.difference`, :meth:`Table.tiers`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from camlab import metrics, stats
from camlab.evaluate.datasets import EvalSet, lab_set, photo_set
from camlab.evaluate.table import Table, row_text, save
from camlab.methods.registry import build, builder, get_method, layer_for, ordered
from camlab.outcomes import localization_outcomes
from camlab.scorecard import per_scene_scores

#: the table's default methods, in the course's order (``camlab.methods.ordered("evaluate")``)
DEFAULT_METHODS = tuple(ordered("evaluate"))
#: metrics whose per-case values are 0/1 outcomes: their share gets the Wilson interval, the others a bootstrap
BINARY = frozenset({"loc_error", "increase"})


def estimate(key: str, values) -> stats.Estimate:
    """The mean of one metric's per-case values with its 95% interval: Wilson (:func:`camlab.stats.proportion`)
    for 0/1 outcomes (:data:`BINARY`), else the percentile bootstrap (:func:`camlab.stats.bootstrap_ci`, seed 0)."""
    values = np.asarray(values, dtype=float)
    return stats.proportion(values) if key in BINARY else stats.bootstrap_ci(values, seed=0)


def _maps(explainer, data: EvalSet, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(data.targets), batch_size):
        x = data.x[start:start + batch_size]
        out.append(metrics.saliency(explainer(x, data.targets[start:start + batch_size])))
    return torch.cat(out)


def _localization_misses(data: EvalSet, maps: torch.Tensor) -> np.ndarray:
    """Per image, 1 where top-1 localization fails (ILSVRC rule: the top-1 class is one of the image's classes and
    the box of its map, at ``data.threshold``, has IoU >= 0.5 with a box of that class), from the map of the sample
    whose class is the prediction (an all-zero map, hence a miss, when no sample explains the predicted class)."""
    n_images = len(data.image_boxes)
    probs = metrics._common.probabilities(data.model, data.x)
    image_maps = torch.zeros(n_images, *maps.shape[-2:], dtype=maps.dtype, device=maps.device)
    image_inputs = torch.zeros(n_images, *data.x.shape[1:], dtype=data.x.dtype, device=data.x.device)
    first: dict[int, int] = {}
    for sample, image in enumerate(data.image_of):
        first.setdefault(image, sample)
    predicted = {image: int(probs[sample].argmax()) for image, sample in first.items()}
    for sample, image in enumerate(data.image_of):
        image_inputs[image] = data.x[sample]
        if data.targets[sample] == predicted[image]:
            image_maps[image] = maps[sample]
    hits = localization_outcomes(data.model, image_inputs, image_maps, boxes=data.image_boxes, top=(1,),
                                 threshold=data.threshold)["top1"]
    return (~hits).double().numpy()


def _sanity_values(data: EvalSet, method: str, layer) -> dict[str, np.ndarray]:
    """Per sanity sample, the Spearman correlation of the map with the map after re-initialising the top layer
    group (``sanity_top``) and the whole cascade (``sanity_all``); their means are
    :func:`camlab.metrics.sanity_check`'s numbers."""
    picked = data.sanity_samples
    correlations, maps = metrics.sanity_check(data.model, data.x[picked], builder(method, layer, progress=False),
                                              target=[data.targets[i] for i in picked], return_maps=True)
    groups = list(correlations)
    per_sample = {group: np.array([metrics.spearman(a, b) for a, b in zip(maps["original"], maps[group])])
                  for group in (groups[0], groups[-1])}
    return {"sanity_top": per_sample[groups[0]], "sanity_all": per_sample[groups[-1]]}


def evaluate_method(data: EvalSet, method: str, *, batch_size: int = 32, sanity: bool = True) -> dict:
    """One row of the table: every metric for ``method`` on ``data``.

    The row holds each metric's mean under its key, the :class:`camlab.stats.Estimate` under
    ``row["estimates"][key]`` and the per-case values under ``row["values"][key]``."""
    row = {"dataset": data.name, "model": data.model.camlab.name, "method": method, "note": "",
           "estimates": {}, "values": {}}
    layer = layer_for(method, data.layer)  # the set's layer is for layer methods
    try:
        explainer = build(method, data.model, layer, progress=False)
    except ValueError as error:  # e.g. CAM on a model without a GAP head
        row["note"] = f"n/a: {str(error).split(':')[0]}"
        return row
    start = time.perf_counter()
    maps = _maps(explainer, data, batch_size)
    row["seconds"] = (time.perf_counter() - start) / len(data.targets)
    values = {"loc_error": _localization_misses(data, maps)}
    values.update(per_scene_scores(data.model, data.x, maps, data.targets, data.masks.to(maps.device),
                                   steps=data.steps, tolerance=data.tolerance))
    if sanity and data.sanity_samples:
        values.update(_sanity_values(data, method, layer))
    elif data.sanity_samples:
        row["note"] = "sanity check skipped (cost)"
    row["values"] = {key: np.asarray(value, dtype=float) for key, value in values.items()}
    row["estimates"] = {key: estimate(key, value) for key, value in row["values"].items()}
    row.update({key: e.value for key, e in row["estimates"].items()})
    return row


def run(*, quick: bool = False, datasets: Sequence[str] | None = None, methods: Sequence[str] = DEFAULT_METHODS,
        n_scenes: int | None = None, seed: int = 2024, lab_model: str | nn.Module = "lab_gap",
        imagenet_model: str | nn.Module = "efficientnet_lite0", photos: Sequence[str] | None = None,
        skip_sanity: Sequence[tuple[str, str]] = (("photos", "scorecam"),), out: str | Path | None = None,
        progress: bool = False, verbose: bool = False, threads: int | None = None,
        device: str | torch.device = "cpu") -> Table:
    """Measure every method with every metric and return the :class:`Table`.

    Args:
        quick: a small run for tests and smoke checks: 16 lab scenes, 8 deletion/insertion steps, sanity check on
            4 samples, and only the lab set unless ``datasets`` says otherwise.
        datasets: ``"lab"`` and/or ``"photos"`` (default both; ``("lab",)`` when quick).
        methods: names in ``camlab.METHODS`` (default: ``camlab.methods.ordered("evaluate")``); an unknown name is
            an error before anything runs.
        n_scenes: lab scenes (default 120, 16 when quick), generated with ``seed`` (see
            :func:`~camlab.evaluate.datasets.lab_set`: distractors, two instances, a second class per scene).
        lab_model, imagenet_model: names for :func:`camlab.load_model`, or models carrying ``model.camlab``.
            A lab model that cannot be loaded (weights not trained) is skipped with a note.
        skip_sanity: (dataset, method) pairs whose sanity check is skipped for cost (Score-CAM on EfficientNet's
            1280 channels needs about 12 x 2 x 500 masked forward passes).
        out: a folder to write ``results.csv``, ``results.md`` and ``results.json`` into.
        progress: a progress bar (tqdm, on stderr) over the (set, method) jobs.
        verbose: print each row as it is measured.
        threads: torch's intra-op threads during the run (restored afterwards); ``1`` is much faster for these
            small batches on a busy machine (two threads that wait for each other spin), ``None`` leaves it.
        device: where the models run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); models passed in are moved
            there for the run and moved back afterwards.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(quick, datasets, methods, n_scenes, seed, lab_model, imagenet_model, photos, skip_sanity, out,
                    progress, verbose, torch.device(device))
    finally:
        torch.set_num_threads(previous)


def _run(quick, datasets, methods, n_scenes, seed, lab_model, imagenet_model, photos, skip_sanity, out, progress,
         verbose, device) -> Table:
    from camlab.progress import progress_bar

    for method in methods:
        get_method(method)  # an unknown name fails here, with the known names
    datasets = tuple(datasets) if datasets is not None else (("lab",) if quick else ("lab", "photos"))
    n_scenes = n_scenes if n_scenes is not None else (16 if quick else 120)
    settings = {"quick": quick, "datasets": list(datasets), "methods": list(methods), "n_scenes": n_scenes,
                "seed": seed, "threads": torch.get_num_threads(), "device": str(device)}
    notes: list[str] = []
    sets = [data for name in datasets
            if (data := _load_set(name, quick, n_scenes, seed, lab_model, imagenet_model, photos, notes)) is not None]
    rows = []
    skipped = set(map(tuple, skip_sanity))
    jobs = [(data, method) for data in sets for method in methods]
    moved = {id(data.model): (data.model, _device_of(data.model)) for data in sets}
    try:
        for model, _ in moved.values():
            model.to(device)
        for data in sets:
            data.x = data.x.to(device)
        for data, method in progress_bar(jobs, progress, desc="evaluate", leave=False):
            row = evaluate_method(data, method, sanity=(data.name, method) not in skipped)
            rows.append(row)
            if verbose:
                print(row_text(row), flush=True)
    finally:
        for model, where in moved.values():
            model.to(where)
    notes.append("mean [95% interval] over the cases (n in the notes): Wilson score interval for shares of 0/1 "
                 "outcomes (localization error, increase), percentile bootstrap (10,000 resamples, seed 0) for the "
                 "other means; ρ = Spearman rank correlation with the original map after re-initialising the top "
                 "layer group only (top) and the whole cascade (all); soft masks x·M multiply the [0, 1] image; "
                 "deletion substrate zeros (the mean colour), insertion substrate blur (RISE)")
    table = Table(rows, notes, settings)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in ("csv", "md", "json"):
            save(table, folder / f"results.{suffix}")
    return table


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _load_set(name, quick, n_scenes, seed, lab_model, imagenet_model, photos, notes: list[str]) -> EvalSet | None:
    """The evaluation set ``name`` with its model, its settings appended to ``notes``; ``None`` when the model
    cannot be loaded (noted)."""
    from camlab.evaluate.datasets import LAB_LAYOUTS
    from camlab.models import load_model

    if name not in ("lab", "photos"):
        raise ValueError(f"unknown dataset {name!r}; choose 'lab' and/or 'photos'")
    wanted = lab_model if name == "lab" else imagenet_model
    try:
        model = load_model(wanted) if isinstance(wanted, str) else wanted
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        notes.append(f"{name}: skipped, model {wanted!r} not available ({error})")
        return None
    if name == "lab":
        data = lab_set(model, n_scenes, seed, steps=8 if quick else 16, sanity=4 if quick else 16)
        halves = " and ".join(f"{i} instance{'s' * (i > 1)} + {d} distractor{'s' * (d > 1)}" for i, d in LAB_LAYOUTS)
        notes.append(f"lab: {n_scenes} scenes (make_scenes seeds {seed}, {seed + 1}; 64x64; halves with {halves}), "
                     f"each explained for its label and for its first distractor's class: {len(data.targets)} "
                     f"samples; model {model.camlab.name} at layer '{data.layer}'; ground truth boxes; localization "
                     f"error per scene at a {data.threshold:.0%} box threshold (chosen on held-out scenes; the paper's "
                     f"15% gives 1.0 for every method on these small objects); pointing tolerance {data.tolerance} px; "
                     f"deletion/insertion {data.steps} steps; sanity check on {len(data.sanity_samples)} samples")
    else:
        data = photo_set(model, photos, steps=8 if quick else 28)
        notes.append(f"photos: {len(data.image_boxes)} bundled photos with boxes.json, {len(data.targets)} "
                     f"(image, class) samples, model {model.camlab.name} at its last spatial layer; localization at "
                     f"the paper's {data.threshold:.0%} threshold; pointing tolerance {data.tolerance} px at 224x224; "
                     f"deletion/insertion {data.steps} steps; sanity check on {len(data.sanity_samples)} samples")
    predicted = metrics._common.probabilities(model, data.x).argmax(1).tolist()
    first = {image: sample for sample, image in reversed(list(enumerate(data.image_of)))}
    right = sum(predicted[first[image]] in boxes for image, boxes in enumerate(data.image_boxes))
    notes.append(f"{name}: the model's top-1 class is a labelled class of the image for {right} of "
                 f"{len(data.image_boxes)} images")
    return data
