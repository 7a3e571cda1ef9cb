"""The reproducible results table: every method against every metric, on the synthetic lab and on the bundled photos.

    >>> table = camlab.evaluate.run()            # a few minutes on 2 CPU cores; run(quick=True) for seconds
    >>> print(camlab.evaluate.format_table(table))
    >>> camlab.evaluate.save(table, "results.md")  # or .csv

Two evaluation sets:

* ``lab``: ``n_scenes`` seeded scenes from :func:`camlab.lab.make_scenes` (the training distribution of
  ``lab_gap``: one object per scene), the ``lab_gap`` model at its ``features`` layer, the scenes' boxes and masks.
* ``photos``: the bundled photos with hand-checked boxes (``data/boxes.json``: cat, coffee, cat_and_coffee,
  two_cats) and ``efficientnet_lite0`` at its last spatial layer. Localization error is counted per image (the
  ILSVRC rule: the top-1 class must be one of the image's classes and the box of its map must match a box of that
  class); the other metrics are counted per (image, class) pair, so ``cat_and_coffee`` counts twice.

Every metric explains the ground-truth class of a sample (on these sets it is also the model's top-1 class for
nearly all samples; the table's notes give the accuracy), with maps computed once per method and shared by the
metrics. All numbers are fractions in [0, 1] (correlations in [-1, 1]); see :mod:`camlab.metrics` for the
definitions.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from camlab import metrics
from camlab._paths import data_dir

DEFAULT_METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "layercam", "guided_backprop", "random")

#: (key, column header); arrows say which direction is better
COLUMNS = (
    ("loc_error", "loc. error top-1 ↓"),
    ("pointing", "pointing game ↑"),
    ("average_drop", "avg. drop ↓"),
    ("increase", "increase ↑"),
    ("deletion", "deletion AUC ↓"),
    ("insertion", "insertion AUC ↑"),
    ("sanity_top", "sanity ρ top ↓"),
    ("sanity_all", "sanity ρ all ↓"),
    ("seconds", "s / map"),
)


# --- bundled ground truth ----------------------------------------------------------------------------------------

def bundled_boxes(name: str, size: tuple[int, int] | None = None) -> list[dict]:
    """The hand-checked objects of bundled photo ``name`` (see ``data/boxes.json``): a list of
    ``{"name", "classes", "boxes"}`` with ImageNet class indices that count as correct and the acceptable
    ``[x0, y0, x1, y1]`` boxes (upper edges exclusive), in the stored image's pixels, or scaled to ``size`` =
    (height, width) (e.g. ``model.camlab.input_size``: :func:`camlab.preprocess` resizes the whole image)."""
    with open(data_dir() / "boxes.json", encoding="utf-8") as handle:
        images = json.load(handle)["images"]
    if name not in images:
        raise ValueError(f"no hand-checked boxes for {name!r}; images with boxes: {', '.join(images)}")
    width, height = images[name]["size"]
    sx, sy = (1.0, 1.0) if size is None else (size[1] / width, size[0] / height)
    objects = []
    for entry in images[name]["objects"]:
        boxes = [[x0 * sx, y0 * sy, x1 * sx, y1 * sy] for x0, y0, x1, y1 in entry["boxes"]]
        objects.append({"name": entry["name"], "classes": list(entry["classes"]), "boxes": boxes})
    return objects


def photos_with_boxes() -> list[str]:
    with open(data_dir() / "boxes.json", encoding="utf-8") as handle:
        return list(json.load(handle)["images"])


# --- evaluation sets -----------------------------------------------------------------------------------------------

@dataclass
class EvalSet:
    """Samples (one explained class each) plus the per-image ground truth localization needs."""

    name: str
    model: nn.Module
    layer: str | None
    x: torch.Tensor                 # (S,C,H,W) one row per sample
    targets: list[int]              # (S,) class explained for each sample
    masks: torch.Tensor             # (S,H,W) bool: where the target class's objects are
    image_of: list[int]             # sample -> image index
    image_boxes: list[dict]         # per image {class: [[x0, y0, x1, y1], ...]}
    tolerance: float                # pointing game tolerance in input pixels
    steps: int                      # deletion / insertion steps
    sanity_samples: list[int]       # samples used by the sanity check
    notes: list[str] = field(default_factory=list)


def lab_set(model: nn.Module, n: int = 200, seed: int = 2024, steps: int = 32, sanity: int = 16,
            layer: str = "features") -> EvalSet:
    """``n`` seeded one-object lab scenes for a lab classifier."""
    from camlab.lab import make_scenes
    from camlab.models import preprocess

    scenes = make_scenes(n, seed=seed)
    x = preprocess(scenes.images, model)
    labels = scenes.labels.tolist()
    boxes = [{labels[i]: scenes.instance_boxes[i].tolist()} for i in range(n)]
    size = x.shape[-1]
    return EvalSet("lab", model, layer, x, labels, scenes.masks.clone(), list(range(n)), boxes,
                   tolerance=round(15 * size / 224), steps=steps, sanity_samples=list(range(min(sanity, n))))


def photo_set(model: nn.Module, names: Sequence[str] | None = None, steps: int = 28,
              sanity_images: Sequence[str] = ("cat", "coffee")) -> EvalSet:
    """The bundled photos with boxes, one sample per (image, object class)."""
    from camlab.images import load_image
    from camlab.models import preprocess

    names = list(names) if names is not None else photos_with_boxes()
    size = tuple(model.camlab.input_size)
    inputs = torch.cat([preprocess(load_image(name), model) for name in names])
    probs = metrics._common.probabilities(model, inputs)
    xs, targets, masks, image_of, image_boxes, sanity = [], [], [], [], [], []
    for index, name in enumerate(names):
        per_class: dict[int, list] = {}
        groups: dict[tuple[int, ...], list] = {}
        for entry in bundled_boxes(name, size):
            groups.setdefault(tuple(entry["classes"]), []).extend(entry["boxes"])
            for c in entry["classes"]:
                per_class.setdefault(c, []).extend(entry["boxes"])
        image_boxes.append(per_class)
        for classes, boxes in groups.items():
            target = max(classes, key=lambda c: float(probs[index, c]))  # the most probable acceptable class
            xs.append(inputs[index])
            targets.append(target)
            masks.append(metrics.gt_masks([boxes], 1, size)[0])
            image_of.append(index)
            if name in sanity_images:
                sanity.append(len(targets) - 1)
    return EvalSet("photos", model, None, torch.stack(xs), targets, torch.stack(masks), image_of, image_boxes,
                   tolerance=15, steps=steps, sanity_samples=sanity)


# --- the table ---------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """Rows of results: ``{"dataset", "model", "method", <metric keys of COLUMNS>, "note"}``; missing values are
    ``None``. ``notes`` explain the settings; ``settings`` holds the arguments of :func:`run`."""

    rows: list[dict]
    notes: list[str]
    settings: dict

    def column(self, key: str, dataset: str | None = None) -> dict[str, float | None]:
        """``{method: value}`` for one metric (and dataset)."""
        return {row["method"]: row.get(key) for row in self.rows if dataset is None or row["dataset"] == dataset}


def _build(method: str, model: nn.Module, layer: str | None):
    from camlab.explain import get_method

    cls = get_method(method)
    parameters = inspect.signature(cls.__init__).parameters
    options = {}
    if "layer" in parameters:
        options["layer"] = layer
    if "progress" in parameters:
        options["progress"] = False
    return cls(model, **options)


def _factory(method: str, layer: str | None):
    return lambda model: _build(method, model, layer)


def _maps(explainer, data: EvalSet, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(data.targets), batch_size):
        x = data.x[start:start + batch_size]
        out.append(metrics.saliency(explainer(x, data.targets[start:start + batch_size])))
    return torch.cat(out)


def _localization(data: EvalSet, maps: torch.Tensor, predicted: list[int]) -> float:
    """Top-1 localization error per image, from the maps of the samples whose class is the prediction."""
    n_images = len(data.image_boxes)
    image_maps = torch.zeros(n_images, *maps.shape[-2:])
    image_inputs = torch.zeros(n_images, *data.x.shape[1:])
    for sample, image in enumerate(data.image_of):
        image_inputs[image] = data.x[sample]
        if data.targets[sample] == predicted[image]:
            image_maps[image] = maps[sample]
    return metrics.localization_error(data.model, image_inputs, image_maps, boxes=data.image_boxes,
                                      top=(1,))["top1"]


def evaluate_method(data: EvalSet, method: str, *, batch_size: int = 32, sanity: bool = True) -> dict:
    """One row of the table: every metric for ``method`` on ``data``."""
    row = {"dataset": data.name, "model": data.model.camlab.name, "method": method, "note": ""}
    try:
        explainer = _build(method, data.model, data.layer)
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
        result = metrics.sanity_check(data.model, data.x[picked], _factory(method, data.layer),
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
        methods: names in ``camlab.METHODS``; a name not registered gets a row with a note instead of numbers.
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
    from camlab.explain import get_method
    from camlab.models import load_model

    datasets = tuple(datasets) if datasets is not None else (("lab",) if quick else ("lab", "photos"))
    n_scenes = n_scenes if n_scenes is not None else (16 if quick else 200)
    settings = {"quick": quick, "datasets": list(datasets), "methods": list(methods), "n_scenes": n_scenes,
                "seed": seed, "threads": torch.get_num_threads()}
    notes: list[str] = []
    sets: list[EvalSet] = []
    for name in datasets:
        if name not in ("lab", "photos"):
            raise ValueError(f"unknown dataset {name!r}; choose 'lab' and/or 'photos'")
        wanted = lab_model if name == "lab" else imagenet_model
        try:
            model = load_model(wanted) if isinstance(wanted, str) else wanted
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
            notes.append(f"{name}: skipped, model {wanted!r} not available ({error})")
            continue
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
        sets.append(data)
    rows = []
    jobs = [(data, method) for data in sets for method in methods]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="evaluate", leave=False)
    for data, method in jobs:
        try:
            get_method(method)
        except ValueError:
            rows.append({"dataset": data.name, "model": data.model.camlab.name, "method": method,
                         "note": "not registered in camlab.METHODS yet"})
            continue
        row = evaluate_method(data, method, sanity=(data.name, method) not in set(map(tuple, skip_sanity)))
        rows.append(row)
        if verbose:
            print(_row_text(row), flush=True)
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


# --- formatting --------------------------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _row_text(row: dict) -> str:
    return "  ".join([row["dataset"], row["method"]] + [f"{key}={_cell(row.get(key))}" for key, _ in COLUMNS])


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "method"] + [title for _, title in COLUMNS] + ["note"]
    body = [[row["dataset"], row["model"], row["method"]] + [_cell(row.get(key)) for key, _ in COLUMNS]
            + [row.get("note", "")] for row in table.rows]
    return header, body


def format_table(table: Table) -> str:
    """The table as aligned plain text, with its notes."""
    header, body = _grid(table)
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header] + body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines + [""] + [f"* {note}" for note in table.notes])


def format_markdown(table: Table) -> str:
    """The table as GitHub Markdown, with its notes as a list."""
    header, body = _grid(table)
    numeric = set(range(3, 3 + len(COLUMNS)))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    return "\n".join(lines + [""] + [f"- {note}" for note in table.notes]) + "\n"


def to_csv(table: Table) -> str:
    handle = io.StringIO()
    keys = ["dataset", "model", "method"] + [key for key, _ in COLUMNS] + ["note"]
    writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in keys})
    return handle.getvalue()


def save(table: Table, path: str | Path) -> Path:
    """Write the table as CSV (``.csv``, full precision) or Markdown (``.md``); returns the path."""
    path = Path(path)
    if path.suffix == ".csv":
        path.write_text(to_csv(table), encoding="utf-8")
    elif path.suffix in (".md", ".markdown"):
        path.write_text(format_markdown(table), encoding="utf-8")
    else:
        raise ValueError(f"save writes .csv or .md files, not {path.suffix or 'a path without suffix'!r}")
    return path


def main(argv: Sequence[str] | None = None) -> None:  # python -m camlab.evaluate [--quick] [--out DIR]
    import argparse

    parser = argparse.ArgumentParser(prog="camlab evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--datasets", nargs="+", choices=["lab", "photos"])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--scenes", type=int, default=None, help="lab scenes (default 200)")
    parser.add_argument("--out", default=None, help="folder for results.csv and results.md")
    parser.add_argument("--threads", type=int, default=None, help="torch threads during the run (e.g. 1)")
    args = parser.parse_args(argv)
    table = run(quick=args.quick, datasets=args.datasets, methods=args.methods, n_scenes=args.scenes, out=args.out,
                verbose=True, threads=args.threads)
    print()
    print(format_table(table))


if __name__ == "__main__":
    main()
