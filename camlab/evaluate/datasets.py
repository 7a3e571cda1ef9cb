"""The evaluation sets: seeded lab scenes and the bundled photos with their hand-checked boxes."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from camlab import metrics
from camlab._paths import data_dir

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
