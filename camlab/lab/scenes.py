"""Seeded procedural scenes with ground truth: the synthetic lab's images, labels, boxes and masks.

A scene is a smooth, low-contrast textured background with one or more flat-coloured shapes on it.
Everything is drawn with vectorised torch operations from one ``torch.Generator`` seeded by ``seed``,
so the same arguments always give bit-identical tensors (2,000 scenes of 64x64 take about a second).

Conventions
-----------
* ``images``: float32 (N, 3, H, W) in [0, 1] (not normalised; models carry mean/std in ``model.camlab``).
* Boxes are ``(x0, y0, x1, y1)`` float pixel *edges*: pixel (row ``y``, column ``x``) lies in the box iff
  ``x0 <= x < x1`` and ``y0 <= y < y1``, i.e. ``image[..., y0:y1, x0:x1]`` is the box. Boxes are tight
  around the drawn pixels.
* The **label** is the class of the scene's *main* object(s). With ``instances=k`` there are k main
  objects, all of the label class (and of different colours). **Distractors** (``distractors=k``) are
  objects of *other* classes, drawn clearly *smaller* than the main objects (radius 4-6 px vs 7-12 px at
  size 64), so the label is unambiguous: it is the class of the largest object(s).
* ``boxes`` (N, 4) is the box of the first main object; ``instance_boxes`` (N, K, 4) holds the boxes of all
  K = ``instances`` main objects (every image has exactly ``instances`` of them, so no padding is needed).
* ``masks`` (N, H, W) bool covers ALL pixels of all objects of the label class (never distractors, never
  the cue).
* ``objects``: per image, a list of dicts ``{"class", "colour", "box", "main"}`` (main objects first).
* The **spurious cue** is a fixed 6x6 black-and-white checkerboard glyph in the bottom-right corner
  (``cue_box``). Objects never overlap it. It appears on images of class ``spurious_cue`` with probability
  ``cue_rate`` and on images of the other classes with probability ``cue_other_rate``;
  ``cue_present`` (N,) says where it was drawn.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from camlab.modelinfo import normalize

LAB_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
#: the lab models' input: 64x64 RGB in [0, 1], normalised with mean = std = 0.5 per channel (to [-1, 1])
LAB_INPUT_SIZE = (64, 64)
LAB_MEAN = (0.5, 0.5, 0.5)
LAB_STD = (0.5, 0.5, 0.5)

#: Named flat colours (RGB in [0, 1]); each object gets one plus a little jitter.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.15, 0.85),
    "cyan": (0.10, 0.85, 0.90),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

CUE_SIZE = 6
CUE_MARGIN = 2

# Object radii (half-size in px) at size 64; scaled linearly with ``size``.
_MAIN_RADIUS = (7.0, 12.0)
_MULTI_RADIUS = (6.0, 9.0)
_DISTRACTOR_RADIUS = (4.0, 6.0)


def class_index(name: str) -> int:
    """Index of a lab class name in :data:`LAB_CLASSES` (``ValueError`` listing the names if unknown)."""
    try:
        return LAB_CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown lab class {name!r}; choose one of {', '.join(LAB_CLASSES)}") from None


def cue_box_for(size: int = 64) -> tuple[float, float, float, float]:
    """The spurious cue's box (x0, y0, x1, y1) in an image of ``size`` x ``size`` pixels."""
    hi = float(size - CUE_MARGIN)
    return (hi - CUE_SIZE, hi - CUE_SIZE, hi, hi)


@dataclass
class Scenes(torch.utils.data.Dataset):
    """A batch of lab scenes with ground truth; also a ``torch.utils.data.Dataset`` of (image, label)."""

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) long, index into LAB_CLASSES
    boxes: torch.Tensor  # (N, 4) float xyxy of the first main object
    instance_boxes: torch.Tensor  # (N, K, 4) float xyxy of all K main objects
    masks: torch.Tensor  # (N, H, W) bool, all pixels of objects of the label class
    objects: list[list[dict]]  # per image: [{"class", "colour", "box", "main"}, ...]
    cue_present: torch.Tensor  # (N,) bool
    cue_box: tuple[float, float, float, float]
    classes: tuple[str, ...] = field(default=LAB_CLASSES)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    @property
    def label_names(self) -> list[str]:
        return [self.classes[int(i)] for i in self.labels]

    def subset(self, index) -> "Scenes":
        """The scenes selected by a boolean mask, index tensor or slice, as a new :class:`Scenes`."""
        idx = torch.arange(len(self))[index]
        idx_list = idx.tolist()
        return Scenes(
            images=self.images[idx], labels=self.labels[idx], boxes=self.boxes[idx],
            instance_boxes=self.instance_boxes[idx], masks=self.masks[idx],
            objects=[self.objects[i] for i in idx_list], cue_present=self.cue_present[idx],
            cue_box=self.cue_box, classes=self.classes,
        )


# --------------------------------------------------------------------------------------------- drawing
def _shape_masks(cls: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    """Boolean (N, H, W) masks of one shape per image: class ``cls`` centred at (cx, cy), half-size ``r``."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    dx = coords.view(1, 1, size) - cx.view(-1, 1, 1)
    dy = coords.view(1, size, 1) - cy.view(-1, 1, 1)
    r = r.view(-1, 1, 1)
    adx, ady = dx.abs(), dy.abs()
    dist2 = dx * dx + dy * dy
    circle = dist2 <= r * r
    square = torch.maximum(adx, ady) <= 0.82 * r
    # upward triangle: apex at the top, base at the bottom
    triangle = (dy >= -r) & (dy <= 0.85 * r) & (adx <= (dy + r) * 0.55)
    arm = 0.32 * r
    cross = ((adx <= arm) & (ady <= r)) | ((ady <= arm) & (adx <= r))
    ring = circle & (dist2 >= (0.55 * r) ** 2)
    stacked = torch.stack([circle, square, triangle, cross, ring], 0)  # (C, N, H, W), order = LAB_CLASSES
    return stacked.gather(0, cls.view(1, -1, 1, 1).expand(1, -1, size, size))[0]


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy pixel-edge boxes (N, 4) of boolean masks (N, H, W); empty masks give zeros."""
    n, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)  # (N, W), (N, H)
    xr = torch.arange(w).expand(n, w)
    yr = torch.arange(h).expand(n, h)
    big = 10**6
    x0 = torch.where(cols, xr, big).min(1).values
    x1 = torch.where(cols, xr, -1).max(1).values + 1
    y0 = torch.where(rows, yr, big).min(1).values
    y1 = torch.where(rows, yr, -1).max(1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def _background(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Smooth, muted random texture: upsampled low-resolution noise plus faint stripes and pixel noise."""
    base = 0.25 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    tint = 0.06 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    low = torch.rand(n, 3, 6, 6, generator=g) - 0.5
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    theta = torch.rand(n, 1, 1, generator=g) * np.pi
    freq = 0.15 + 0.25 * torch.rand(n, 1, 1, generator=g)
    phase = torch.rand(n, 1, 1, generator=g) * 2 * np.pi
    coords = torch.arange(size, dtype=torch.float32)
    proj = coords.view(1, 1, size) * torch.cos(theta) + coords.view(1, size, 1) * torch.sin(theta)
    stripes = 0.04 * torch.sin(freq * proj + phase).unsqueeze(1)
    noise = 0.03 * torch.randn(n, 3, size, size, generator=g)
    return base + tint + 0.18 * smooth + stripes + noise


def _cue_glyph() -> torch.Tensor:
    """The 6x6 checkerboard (2x2 cells) drawn as the spurious cue, (3, 6, 6)."""
    yy, xx = torch.meshgrid(torch.arange(CUE_SIZE), torch.arange(CUE_SIZE), indexing="ij")
    board = (((yy // 2) + (xx // 2)) % 2 == 0).float()
    return board.expand(3, CUE_SIZE, CUE_SIZE) * 0.95 + 0.02


def _place(n: int, radii: torch.Tensor, taken: list[torch.Tensor], size: int, g: torch.Generator,
           forbid: torch.Tensor | None, gap: float = 2.0, tries: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Random centres (cx, cy) keeping each new object's square footprint off ``taken`` squares and ``forbid``.

    ``taken`` holds (N, 3) tensors (cx, cy, r) of objects already placed. Rejection sampling, vectorised over
    images; after ``tries`` rounds, any leftover overlaps are accepted (rare).
    """
    lo = radii + 1.0
    span = size - 2 * lo
    cx = lo + span * torch.rand(n, generator=g)
    cy = lo + span * torch.rand(n, generator=g)
    for _ in range(tries):
        bad = torch.zeros(n, dtype=torch.bool)
        for prev in taken:
            lim = radii + prev[:, 2] + gap
            bad |= ((cx - prev[:, 0]).abs() < lim) & ((cy - prev[:, 1]).abs() < lim)
        if forbid is not None:
            x0, y0, x1, y1 = forbid.tolist()
            bad |= (cx + radii + gap > x0) & (cx - radii - gap < x1) & (cy + radii + gap > y0) & (cy - radii - gap < y1)
        if not bad.any():
            break
        k = int(bad.sum())
        cx[bad] = lo[bad] + span[bad] * torch.rand(k, generator=g)
        cy[bad] = lo[bad] + span[bad] * torch.rand(k, generator=g)
    return cx, cy


def _pick_distinct(n: int, k: int, m: int, g: torch.Generator, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(N, k) indices in range(m), distinct within a row and (optionally) different from ``exclude`` (N,)."""
    scores = torch.rand(n, m, generator=g)
    if exclude is not None:
        scores[torch.arange(n), exclude] = 2.0  # sorted last
    return scores.argsort(1)[:, :k]


# ------------------------------------------------------------------------------------------ generator
def make_scenes(
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    instances: int = 1,
    distractors: int = 0,
    spurious_cue: str | None = None,
    cue_rate: float = 0.95,
    cue_other_rate: float = 0.02,
    classes: Sequence[str] | None = None,
    labels: Sequence[int] | torch.Tensor | None = None,
    contrast: float | dict[str, float] = 1.0,
) -> Scenes:
    """Generate ``n`` seeded lab scenes.

    Args:
        n: number of scenes.
        seed: the same seed (and arguments) gives bit-identical scenes.
        size: height = width in pixels (object sizes scale with it).
        instances: main objects per image, all of the label class (different colours, non-overlapping).
        distractors: extra, smaller objects per image, of classes other than the label (distinct classes).
        spurious_cue: a class name; its images carry the checkerboard cue with probability ``cue_rate``,
            other images with probability ``cue_other_rate``. ``None``: no cue anywhere.
        cue_rate, cue_other_rate: see ``spurious_cue``. ``cue_rate=0`` removes the cue from the cued class,
            ``cue_other_rate=1`` puts it on every other image (the bias experiment's controls).
        classes: restrict labels to these class names (default: all of :data:`LAB_CLASSES`).
        labels: explicit label indices (length ``n``) instead of balanced random ones.
        contrast: objects are drawn as ``background + contrast * (colour - background)``; 1 = flat colour,
            small values give faint shapes. A dict ``{class name: contrast}`` sets it per class (others 1);
            the bias experiment draws the cued class faintly so that its shape is hard and the cue easy.
    """
    per_class = _check_scene_options(n, size, instances, distractors, contrast, cue_rate, cue_other_rate)
    cue_cls = class_index(spurious_cue) if spurious_cue is not None else None
    g = torch.Generator().manual_seed(int(seed))
    label_t = _draw_labels(n, labels, classes, g)
    images = _background(n, size, g)
    forbid = torch.tensor(cue_box_for(size)) if cue_cls is not None else None
    obj_cls, obj_r, colour_idx, jitter = _draw_objects(n, instances, distractors, label_t, size / 64.0, g)
    colours = (torch.tensor(list(COLOURS.values()))[colour_idx] + jitter).clamp(0, 1)  # (N, objects, 3)
    images, label_mask, obj_boxes = _paint_objects(images, obj_cls, obj_r, colours, per_class, instances, forbid, g)
    cue_present = _draw_cue(images, label_t, cue_cls, cue_rate, cue_other_rate, g)
    images = images.clamp_(0.0, 1.0).contiguous()
    instance_boxes = torch.stack(obj_boxes[:instances], 1)  # (N, K, 4)
    objects = _object_records(obj_cls, colour_idx, obj_boxes, instances)
    return Scenes(
        images=images, labels=label_t, boxes=instance_boxes[:, 0].clone(), instance_boxes=instance_boxes,
        masks=label_mask, objects=objects, cue_present=cue_present, cue_box=cue_box_for(size),
    )


def _overlapping(placed: list[torch.Tensor], forbid: torch.Tensor | None, gap: float = 2.0) -> torch.Tensor:
    """(N,) bool: the images in which two objects' square footprints (half-size r + ``gap``) overlap, or one
    overlaps ``forbid``; ``placed`` holds an (N, 3) tensor (cx, cy, r) per object (the test :func:`_place` uses)."""
    bad = torch.zeros(len(placed[0]), dtype=torch.bool)
    for k, (cx, cy, r) in enumerate(p.unbind(1) for p in placed):
        for prev in placed[:k]:
            lim = r + prev[:, 2] + gap
            bad |= ((cx - prev[:, 0]).abs() < lim) & ((cy - prev[:, 1]).abs() < lim)
        if forbid is not None:
            x0, y0, x1, y1 = forbid.tolist()
            bad |= (cx + r + gap > x0) & (cx - r - gap < x1) & (cy + r + gap > y0) & (cy - r - gap < y1)
    return bad


#: whole-scene re-placements tried for a scene whose objects still overlap after :func:`_place`'s rounds
REPLACEMENT_ROUNDS = 200


def _side_generator(g: torch.Generator) -> torch.Generator:
    """A generator seeded from ``g``'s state *without drawing from it*, so that repairing one scene leaves every
    later draw of ``g`` (the other scenes, the cue) exactly as before."""
    digest = hashlib.sha256(g.get_state().numpy().tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _separate(placed: list[torch.Tensor], size: int, g: torch.Generator, forbid) -> list[torch.Tensor]:
    """``placed`` with the objects of every scene that still overlaps placed again from scratch, all objects of
    the scene, largest first, with a side generator (:func:`_side_generator`); scenes that did not overlap keep their
    placement bit for bit. A scene that cannot be separated in :data:`REPLACEMENT_ROUNDS` rounds raises
    ``ValueError``: the objects do not fit."""
    todo = _overlapping(placed, forbid).nonzero()[:, 0]
    if len(todo) == 0:
        return placed
    side, placed = _side_generator(g), torch.stack(placed, 1)  # (N, objects, 3)
    for _ in range(REPLACEMENT_ROUNDS):
        # largest objects first (the order objects are placed in does not matter once none overlaps)
        order = placed[todo, :, 2].argsort(dim=1, descending=True, stable=True)
        radii = placed[todo, :, 2].gather(1, order)
        again: list[torch.Tensor] = []
        for r in radii.unbind(1):
            cx, cy = _place(len(todo), r, again, size, side, forbid)
            again.append(torch.stack([cx, cy, r], 1))
        fixed = ~_overlapping(again, forbid)
        sorted_back = torch.empty_like(placed[todo]).scatter_(1, order[..., None].expand(-1, -1, 3),
                                                             torch.stack(again, 1))
        placed[todo[fixed]] = sorted_back[fixed]
        todo = todo[~fixed]
        if len(todo) == 0:
            return list(placed.unbind(1))
    raise ValueError(
        f"{placed.shape[1]} objects do not fit without overlap in {len(todo)} of the {len(placed)} scenes of "
        f"{size}x{size} pixels (first: scene {int(todo[0])}); use fewer instances or distractors, or a larger size")


def _paint_objects(images, obj_cls, obj_r, colours, per_class, instances: int, forbid, g: torch.Generator):
    """Place each object off the earlier ones (and the cue's corner), separate the scenes where that failed
    (:func:`_separate`), and paint them; returns the images, the (N,H,W) mask of the main instances and each
    object's (N,4) box."""
    n, size = images.shape[0], images.shape[-1]
    placed: list[torch.Tensor] = []
    for r in obj_r:
        cx, cy = _place(n, r, placed, size, g, forbid)
        placed.append(torch.stack([cx, cy, r], 1))
    placed = _separate(placed, size, g, forbid)
    label_mask = torch.zeros(n, size, size, dtype=torch.bool)
    obj_boxes = []
    for k in range(len(obj_cls)):
        cx, cy, r = placed[k].unbind(1)
        m = _shape_masks(obj_cls[k], cx, cy, r, size)
        c = per_class[obj_cls[k]].view(n, 1, 1, 1)
        flat = colours[:, k].reshape(n, 3, 1, 1).expand_as(images)
        paint = torch.where(c == 1.0, flat, images + c * (flat - images))
        images = torch.where(m.unsqueeze(1), paint, images)
        if k < instances:
            label_mask |= m
        obj_boxes.append(_mask_boxes(m))
    return images, label_mask, obj_boxes


def _check_scene_options(n, size, instances, distractors, contrast, cue_rate, cue_other_rate) -> torch.Tensor:
    """Check :func:`make_scenes`' options; returns the per-class contrast (len(LAB_CLASSES),)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels, got {size}")
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    if distractors < 0 or distractors > len(LAB_CLASSES) - 1:
        raise ValueError(f"distractors must be in 0..{len(LAB_CLASSES) - 1}, got {distractors}")
    if instances > len(COLOURS):
        raise ValueError(f"instances must be <= {len(COLOURS)} (one colour each), got {instances}")
    if instances + distractors > 8:
        raise ValueError("at most 8 objects per scene (instances + distractors)")
    per_class = torch.ones(len(LAB_CLASSES))
    if isinstance(contrast, dict):
        for name, c in contrast.items():
            per_class[class_index(name)] = float(c)
    else:
        per_class[:] = float(contrast)
    if not bool(((per_class > 0) & (per_class <= 1)).all()):
        raise ValueError(f"contrast must be in (0, 1], got {contrast}")
    for name, rate in (("cue_rate", cue_rate), ("cue_other_rate", cue_other_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate}")
    return per_class


def _draw_labels(n: int, labels, classes, g: torch.Generator) -> torch.Tensor:
    """(N,) labels: the given ones, else balanced over ``classes`` and shuffled."""
    if labels is not None:
        label_t = torch.as_tensor(labels, dtype=torch.long).clone()
        if label_t.shape != (n,):
            raise ValueError(f"labels must have length n={n}, got shape {tuple(label_t.shape)}")
        return label_t
    allowed = torch.tensor([class_index(c) for c in (classes or LAB_CLASSES)], dtype=torch.long)
    reps = allowed.repeat(n // len(allowed) + 1)[:n]
    return reps[torch.randperm(n, generator=g)]


def _draw_objects(n: int, instances: int, distractors: int, label_t: torch.Tensor, scale: float,
                  g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per object (main instances first, then distractors): class (N,) and radius (N,); then colour indices
    (N, objects) and colour jitter (N, objects, 3)."""
    n_obj = instances + distractors
    main_r_lo, main_r_hi = _MULTI_RADIUS if instances > 1 else _MAIN_RADIUS
    obj_cls, obj_r = [], []
    for _ in range(instances):
        obj_cls.append(label_t)
        obj_r.append(scale * (main_r_lo + (main_r_hi - main_r_lo) * torch.rand(n, generator=g)))
    if distractors:
        others = _pick_distinct(n, distractors, len(LAB_CLASSES), g, exclude=label_t)
        for j in range(distractors):
            obj_cls.append(others[:, j])
            lo, hi = _DISTRACTOR_RADIUS
            obj_r.append(scale * (lo + (hi - lo) * torch.rand(n, generator=g)))
    colour_idx = _pick_distinct(n, min(n_obj, len(COLOURS)), len(COLOURS), g)
    if n_obj > len(COLOURS):  # more objects than colours: distractors may repeat colours
        extra = torch.randint(0, len(COLOURS), (n, n_obj - len(COLOURS)), generator=g)
        colour_idx = torch.cat([colour_idx, extra], 1)
    jitter = 0.06 * (torch.rand(n, n_obj, 3, generator=g) - 0.5)
    return obj_cls, obj_r, colour_idx, jitter


def _draw_cue(images: torch.Tensor, label_t: torch.Tensor, cue_cls: int | None, cue_rate: float,
              cue_other_rate: float, g: torch.Generator) -> torch.Tensor:
    """Paint the checkerboard cue in place on the images that draw it; returns (N,) bool."""
    n, size = images.shape[0], images.shape[-1]
    cue_present = torch.zeros(n, dtype=torch.bool)
    if cue_cls is None:
        return cue_present
    u = torch.rand(n, generator=g)
    rate = torch.where(label_t == cue_cls, torch.tensor(cue_rate), torch.tensor(cue_other_rate))
    cue_present = u < rate
    x0, y0, x1, y1 = (int(v) for v in cue_box_for(size))
    if cue_present.any():
        images[cue_present, :, y0:y1, x0:x1] = _cue_glyph()
    return cue_present


def _object_records(obj_cls, colour_idx, obj_boxes, instances: int) -> list[list[dict]]:
    all_boxes = torch.stack(obj_boxes, 1).tolist()
    cls_l = torch.stack(obj_cls, 1).tolist()
    col_l = colour_idx.tolist()
    return [
        [
            {"class": LAB_CLASSES[cls_l[i][k]], "colour": COLOUR_NAMES[col_l[i][k]],
             "box": tuple(all_boxes[i][k]), "main": k < instances}
            for k in range(len(obj_cls))
        ]
        for i in range(len(cls_l))
    ]


def normalise(x: torch.Tensor, mean=LAB_MEAN, std=LAB_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel of (3,H,W) or (N,3,H,W) images, the formula :func:`camlab.preprocess`
    applies for lab models (:func:`camlab.modelinfo.normalize`)."""
    return normalize(x, mean, std)
