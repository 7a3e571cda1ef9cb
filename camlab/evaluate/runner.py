"""Every method against every metric on the evaluation sets: :func:`run` builds the :class:`Table`."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from camlab import metrics
from camlab.evaluate.datasets import EvalSet, lab_set, photo_set
from camlab.evaluate.table import Table, row_text, save
from camlab.methods.registry import build, builder, get_method, layer_for, ordered

#: the table's default methods, in the course's order (``camlab.methods.ordered("evaluate")``)
DEFAULT_METHODS = tuple(ordered("evaluate"))


def _maps(explainer, data: EvalSet, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(data.targets), batch_size):
        x = data.x[start:start + batch_size]
        out.append(metrics.saliency(explainer(x, data.targets[start:start + batch_size])))
    return torch.cat(out)


def _localization(data: EvalSet, maps: torch.Tensor, predicted: list[int]) -> float:
    """Top-1 localization error per image, from the maps of the samples whose class is the prediction."""
    n_images = len(data.image_boxes)
    image_maps = torch.zeros(n_images, *maps.shape[-2:], dtype=maps.dtype, device=maps.device)
    image_inputs = torch.zeros(n_images, *data.x.shape[1:], dtype=data.x.dtype, device=data.x.device)
    for sample, image in enumerate(data.image_of):
        image_inputs[image] = data.x[sample]
        if data.targets[sample] == predicted[image]:
            image_maps[image] = maps[sample]
    return metrics.localization_error(data.model, image_inputs, image_maps, boxes=data.image_boxes,
                                      top=(1,))["top1"]


def evaluate_method(data: EvalSet, method: str, *, batch_size: int = 32, sanity: bool = True) -> dict:
    """One row of the table: every metric for ``method`` on ``data``."""
    row = {"dataset": data.name, "model": data.model.camlab.name, "method": method, "note": ""}
    layer = layer_for(method, data.layer)  # the set's layer is for layer methods
    try:
        explainer = build(method, data.model, layer, progress=False)
    except ValueError as error:  # e.g. CAM on a model without a GAP head
        row["note"] = f"n/a: {str(error).split(':')[0]}"
        return row
    start = time.perf_counter()
    maps = _maps(explainer, data, batch_size)
    row["seconds"] = (time.perf_counter() - start) / len(data.targets)
    probs = metrics._common.probabilities(data.model, data.x)
    first_sample = {}
    for sample, image in enumerate(data.image_of):
        first_sample.setdefault(image, sample)
    predicted = [int(probs[first_sample[i]].argmax()) for i in range(len(data.image_boxes))]
    row["loc_error"] = _localization(data, maps, predicted)
    row["pointing"] = metrics.pointing_game(maps, data.masks, tolerance=data.tolerance)
    confidence = metrics.confidence_change(data.model, data.x, maps, data.targets, batch_size=batch_size)
    row["average_drop"] = confidence["average_drop"]
    row["increase"] = confidence["increase_in_confidence"]
    row["deletion"] = metrics.deletion_auc(data.model, data.x, maps, data.targets, steps=data.steps)
    row["insertion"] = metrics.insertion_auc(data.model, data.x, maps, data.targets, steps=data.steps)
    if sanity and data.sanity_samples:
        picked = data.sanity_samples
        result = metrics.sanity_check(data.model, data.x[picked], builder(method, layer, progress=False),
                                      target=[data.targets[i] for i in picked])
        values = list(result.values())
        row["sanity_top"], row["sanity_all"] = values[0], values[-1]
    elif data.sanity_samples:
        row["note"] = "sanity check skipped (cost)"
    return row


def run(*, quick: bool = False, datasets: Sequence[str] | None = None, methods: Sequence[str] = DEFAULT_METHODS,
        n_scenes: int | None = None, seed: int = 2024, lab_model: str | nn.Module = "lab_gap",
        imagenet_model: str | nn.Module = "efficientnet_lite0", photos: Sequence[str] | None = None,
        skip_sanity: Sequence[tuple[str, str]] = (("photos", "scorecam"),), out: str | Path | None = None,
        progress: bool = False, verbose: bool = False, threads: int | None = None) -> Table:
    """Measure every method with every metric and return the :class:`Table`.

    Args:
        quick: a small run for tests and smoke checks: 16 lab scenes, 8 deletion/insertion steps, sanity check on
            4 scenes, and only the lab set unless ``datasets`` says otherwise.
        datasets: ``"lab"`` and/or ``"photos"`` (default both; ``("lab",)`` when quick).
        methods: names in ``camlab.METHODS`` (default: ``camlab.methods.ordered("evaluate")``); an unknown name is
            an error before anything runs.
        n_scenes: lab scenes (default 200, 16 when quick), generated with ``seed``.
        lab_model, imagenet_model: names for :func:`camlab.load_model`, or models carrying ``model.camlab``.
            A lab model that cannot be loaded (weights not trained) is skipped with a note.
        skip_sanity: (dataset, method) pairs whose sanity check is skipped for cost (Score-CAM on EfficientNet's
            1280 channels needs about 12 x 2 x 500 masked forward passes).
        out: a folder to write ``results.csv`` and ``results.md`` into.
        verbose: print each row as it is measured.
        threads: torch's intra-op threads during the run (restored afterwards); ``1`` is much faster for these
            small batches on a busy machine (two threads that wait for each other spin), ``None`` leaves it.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(quick, datasets, methods, n_scenes, seed, lab_model, imagenet_model, photos, skip_sanity, out,
                    progress, verbose)
    finally:
        torch.set_num_threads(previous)


def _run(quick, datasets, methods, n_scenes, seed, lab_model, imagenet_model, photos, skip_sanity, out, progress,
         verbose) -> Table:
    for method in methods:
        get_method(method)  # an unknown name fails here, with the known names
    datasets = tuple(datasets) if datasets is not None else (("lab",) if quick else ("lab", "photos"))
    n_scenes = n_scenes if n_scenes is not None else (16 if quick else 200)
    settings = {"quick": quick, "datasets": list(datasets), "methods": list(methods), "n_scenes": n_scenes,
                "seed": seed, "threads": torch.get_num_threads()}
    notes: list[str] = []
    sets = [data for name in datasets
            if (data := _load_set(name, quick, n_scenes, seed, lab_model, imagenet_model, photos, notes)) is not None]
    rows = []
    jobs = [(data, method) for data in sets for method in methods]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="evaluate", leave=False)
    for data, method in jobs:
        row = evaluate_method(data, method, sanity=(data.name, method) not in set(map(tuple, skip_sanity)))
        rows.append(row)
        if verbose:
            print(row_text(row), flush=True)
    notes.append("fractions in [0, 1]; ρ = Spearman rank correlation with the original map after re-initialising "
                 "the top layer group only (top) and the whole cascade (all); soft masks x·M multiply the [0, 1] "
                 "image; deletion substrate zeros (the mean colour), insertion substrate blur (RISE)")
    table = Table(rows, notes, settings)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        save(table, folder / "results.csv")
        save(table, folder / "results.md")
    return table


def _load_set(name, quick, n_scenes, seed, lab_model, imagenet_model, photos, notes: list[str]) -> EvalSet | None:
    """The evaluation set ``name`` with its model, its settings appended to ``notes``; ``None`` when the model
    cannot be loaded (noted)."""
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
        data = lab_set(model, n_scenes, seed, steps=8 if quick else 32, sanity=4 if quick else 16)
        notes.append(f"lab: {n_scenes} scenes (make_scenes seed {seed}, 64x64, one object), model "
                     f"{model.camlab.name} at layer '{data.layer}'; pointing tolerance {data.tolerance} px; "
                     f"deletion/insertion {data.steps} steps; sanity check on {len(data.sanity_samples)} scenes")
    else:
        data = photo_set(model, photos, steps=8 if quick else 28)
        notes.append(f"photos: {len(data.image_boxes)} bundled photos with boxes.json, {len(data.targets)} "
                     f"(image, class) samples, model {model.camlab.name} at its last spatial layer; pointing "
                     f"tolerance {data.tolerance} px at 224x224; deletion/insertion {data.steps} steps; sanity "
                     f"check on {len(data.sanity_samples)} samples")
    accuracy = (metrics._common.probabilities(model, data.x).argmax(1) == torch.tensor(data.targets)).double()
    notes.append(f"{name}: the model's top-1 class is the explained class for {int(accuracy.sum())} of "
                 f"{len(data.targets)} samples")
    return data
