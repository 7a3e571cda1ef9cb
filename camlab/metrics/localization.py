r"""Localization metrics: boxes from maps (the Grad-CAM paper's protocol), IoU, weakly supervised localization
error (top-1 / top-5, as in the Grad-CAM paper's Table 1) and the pointing game (Zhang et al., ECCV 2016).

Box convention (the same as :func:`camlab.lab.make_scenes` and ``data/boxes.json``): ``(x0, y0, x1, y1)`` in
pixels, upper edges **exclusive**: pixel (row ``y``, column ``x``) is inside iff ``x0 <= x < x1`` and
``y0 <= y < y1``, so ``image[..., y0:y1, x0:x1]`` is the box and its area is ``(x1 - x0) * (y1 - y0)`` pixels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from camlab.maps import safe_divide
from camlab.metrics._common import (MapSource, batches, check_precomputed, compute_maps, is_precomputed, on_cpu,
                                    probabilities, refuses_nan_maps, saliency)

#: 8-connectivity: diagonal neighbours belong to the same segment (as OpenCV's contours and skimage's default)
_EIGHT = np.ones((3, 3), dtype=bool)


def _box_of_one(heat: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    height, width = heat.shape
    heat = np.nan_to_num(heat.astype(np.float64), nan=0.0)
    peak = heat.max()
    if not peak > 0:
        return (0, 0, width, height)
    region = heat >= threshold * peak
    segments, count = ndimage.label(region, structure=_EIGHT)
    if count > 1:
        sizes = np.bincount(segments.ravel(), minlength=count + 1)[1:]
        mass = np.bincount(segments.ravel(), weights=heat.ravel(), minlength=count + 1)[1:]
        # the largest segment; a tie in size goes to the larger summed map value, then to the first in raster order
        best = np.lexsort((-np.arange(count), mass, sizes))[-1] + 1
        region = segments == best
    ys, xs = np.nonzero(region)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


@refuses_nan_maps
def box_from_map(maps, threshold: float = 0.15):
    """The Grad-CAM paper's box: keep the pixels whose value is at least ``threshold`` times the map's maximum
    (15% in the paper), and draw the tight box around the largest 8-connected segment.

    Args:
        maps: one map (H,W), a batch (N,H,W), or input-space maps (N,3,H,W) (reduced to the largest absolute value
            over channels).
        threshold: a fraction of the maximum, in [0, 1].

    Returns:
        for an (H,W) map a tuple ``(x0, y0, x1, y1)`` of ints (upper edges exclusive, see the module docstring);
        for a batch an (N,4) ``torch.long`` tensor. Ties between segments of equal size go to the one with the
        larger summed map value. A map whose maximum is not positive (all zeros, flat after scaling) has no
        segment and gives the whole image, never an error.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1], got {threshold}")
    single = torch.as_tensor(maps).ndim == 2
    heat = saliency(maps).cpu().numpy()
    boxes = [_box_of_one(one, threshold) for one in heat]
    return boxes[0] if single else torch.tensor(boxes, dtype=torch.long, device="cpu")


def iou(box_a, box_b):
    """Intersection over union of ``(x0, y0, x1, y1)`` boxes with exclusive upper edges (module docstring), so
    for integer boxes the areas are pixel counts. Broadcasts over leading dimensions of (..., 4) tensors; two
    tuples give a ``float``. Boxes with no area and no overlap give 0.0, never NaN."""
    plain = not isinstance(box_a, torch.Tensor) and not isinstance(box_b, torch.Tensor)
    a = on_cpu(box_a).double()
    b = on_cpu(box_b).double()
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"boxes must be (x0, y0, x1, y1), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    intersection = width * height

    def area(box):
        return (box[..., 2] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 1]).clamp_min(0)

    union = area(a) + area(b) - intersection
    result = safe_divide(intersection, union)
    return float(result) if plain else result


# --- ground truth in its several forms ------------------------------------------------------------------------

def gt_boxes(boxes, n: int) -> list[torch.Tensor]:
    """Per image a (K,4) float tensor of ground-truth boxes (any of them may be matched, as in ILSVRC).

    Accepts an (N,4) or (N,K,4) tensor / array, or a list with one (4,) box or (K,4) boxes per image."""
    if boxes is None:
        raise ValueError("ground-truth boxes are needed (an (N,4) tensor or a list of (K,4) boxes per image)")
    if isinstance(boxes, (torch.Tensor, np.ndarray)):
        tensor = on_cpu(boxes).double()
        if tensor.ndim == 1:
            tensor = tensor[None]
        if tensor.ndim == 2:
            tensor = tensor[:, None]
        if tensor.ndim != 3 or tensor.shape[-1] != 4 or tensor.shape[0] != n:
            raise ValueError(f"boxes must be (N,4) or (N,K,4) for N={n} images, got {tuple(boxes.shape)}")
        return list(tensor)
    per_image = list(boxes)
    if len(per_image) != n:
        raise ValueError(f"{len(per_image)} entries of boxes for {n} images")
    out = []
    for entry in per_image:
        tensor = on_cpu(entry).double().reshape(-1, 4)
        out.append(tensor)
    return out


def label_sets(labels, n: int) -> list[set[int]]:
    """Per image the set of acceptable class indices: an int for all, one int per image, or one collection of
    ints per image (e.g. ImageNet's three domestic-cat classes for one photo)."""
    if labels is None:
        raise ValueError("ground-truth labels are needed (one class index, or a set of them, per image)")
    if isinstance(labels, int) or (isinstance(labels, (torch.Tensor, np.ndarray)) and np.ndim(labels) == 0):
        return [{int(labels)} for _ in range(n)]
    entries = labels.tolist() if isinstance(labels, (torch.Tensor, np.ndarray)) else list(labels)
    if len(entries) != n:
        raise ValueError(f"{len(entries)} labels for {n} images")
    return [{int(e)} if np.ndim(e) == 0 else {int(v) for v in e} for e in entries]


def gt_masks(ground_truth, n: int, size: tuple[int, int]) -> torch.Tensor:
    """(N,H,W) bool masks from masks (bool / 0-1 (N,H,W)) or from boxes (see :func:`gt_boxes`)."""
    height, width = size
    if isinstance(ground_truth, (torch.Tensor, np.ndarray)):
        tensor = on_cpu(ground_truth)
        if tensor.ndim == 2 and tuple(tensor.shape) == (height, width):
            tensor = tensor[None]
        if tensor.ndim == 3 and tuple(tensor.shape[-2:]) == (height, width) and (
                tensor.dtype == torch.bool or tensor.shape[-1] != 4):
            if tensor.shape[0] != n:
                raise ValueError(f"{tensor.shape[0]} masks for {n} images")
            return tensor.bool()
        if tensor.ndim in (2, 3) and (tensor.dtype == torch.bool or tensor.shape[-1] != 4):
            raise ValueError(
                f"ground-truth masks of shape {tuple(tensor.shape)} do not match {n} maps of size {height}x{width}; "
                "give one (H,W) mask per map at the maps' resolution (or boxes as (N,4) / (N,K,4))"
            )
    masks = torch.zeros(n, height, width, dtype=torch.bool, device="cpu")
    rows = torch.arange(height, dtype=torch.float64, device="cpu")[:, None]
    cols = torch.arange(width, dtype=torch.float64, device="cpu")[None, :]
    for i, boxes in enumerate(gt_boxes(ground_truth, n)):
        for x0, y0, x1, y1 in boxes.tolist():
            masks[i] |= (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)
    return masks


# --- localization error -----------------------------------------------------------------------------------------

@refuses_nan_maps
def localization_error(model: nn.Module, inputs, explainer: MapSource, labels=None, boxes=None, *,
                       top: Sequence[int] = (1, 5), threshold: float = 0.15, iou_threshold: float = 0.5,
                       batch_size: int = 32, progress: bool = False) -> dict[str, float]:
    """Weakly supervised localization error, the Grad-CAM paper's Table 1 protocol (from ILSVRC): for each of the
    model's top-k predicted classes, a box is drawn from that class's map (:func:`box_from_map`); an image is
    correctly localized at k if one of its top-k classes is a ground-truth class **and** that class's box has
    IoU >= ``iou_threshold`` with one of the ground-truth boxes.

    Args:
        model: the classifier (run in eval mode without gradients; its mode is restored).
        inputs: (N,C,H,W) model inputs, or a DataLoader of ``(x, labels, boxes)`` batches.
        explainer: an explainer (``camlab.GradCAM(model)``) or callable ``(x, target) -> maps``. Precomputed maps
            (N,H,W) are accepted only with ``top=(1,)`` and must be the maps of the top-1 predicted classes.
        labels: per image a class index or a set of acceptable indices (see :func:`label_sets`).
        boxes: per image one (4,) or several (K,4) ground-truth boxes in input pixels (see :func:`gt_boxes`), or,
            for images holding objects of several classes, one dict ``{class index: (K,4) boxes}`` per image: then
            the predicted class's box must match a box of that class, and ``labels`` defaults to the dict's keys.
        top: which top-k errors to report.

    Returns:
        ``{"top1": ..., "top5": ..., "gt_known": ..., "n": N}``: errors as **fractions** in [0, 1] (the paper prints
        percent: multiply by 100). ``gt_known`` is the error with the map of the ground-truth class (of several
        acceptable ones, the most probable) and no
        classification requirement, the "GT-known" localization of later weakly supervised work. ``n`` counts images.
    """
    top = tuple(sorted(set(int(k) for k in top)))
    if not top or top[0] < 1:
        raise ValueError(f"top must hold k >= 1, got {top}")
    precomputed = is_precomputed(explainer)
    if precomputed and top != (1,):
        raise ValueError("precomputed maps give only the top-1 error (pass top=(1,)); pass an explainer for top-5")
    check_precomputed(explainer, inputs)
    correct = {k: 0 for k in top}
    known_correct, total = 0, 0
    for x, batch_labels, batch_boxes in batches(inputs, (labels, boxes), batch_size, progress, "localization"):
        accepted, per_class = _ground_truth(batch_labels, batch_boxes, x.shape[0])
        probs = probabilities(model, x)
        ranked = probs.topk(min(max(top), probs.shape[1]), dim=1).indices
        # the first rank at which the image is correctly localized
        hit_at = torch.full((x.shape[0],), 10**9, device="cpu")
        for rank in range(ranked.shape[1]):
            classes = ranked[:, rank]
            predicted = box_from_map(compute_maps(explainer, x, classes.tolist(), total), threshold).double()
            hits = _localized(predicted, classes.tolist(), accepted, per_class, iou_threshold)
            hit_at = torch.where(hits & (hit_at > rank), rank, hit_at)
        for k in top:
            correct[k] += int((hit_at < k).sum())
        if not precomputed:
            known = [max(sorted(s), key=lambda c, i=i: float(probs[i, c])) for i, s in enumerate(accepted)]
            known_boxes = box_from_map(compute_maps(explainer, x, known), threshold).double()
            known_correct += int(_localized(known_boxes, known, accepted, per_class, iou_threshold).sum())
        total += x.shape[0]
    result = {f"top{k}": 1.0 - correct[k] / total for k in top}
    if not precomputed:
        result["gt_known"] = 1.0 - known_correct / total
    result["n"] = total
    return result


def _ground_truth(batch_labels, batch_boxes, n: int) -> tuple[list[set[int]], list[dict[int, torch.Tensor]]]:
    """Per image: the accepted classes and ``{class: (M,4) boxes}``, from per-image ``{class: boxes}`` dicts or
    from labels plus boxes."""
    if isinstance(batch_boxes, (list, tuple)) and batch_boxes and all(isinstance(b, dict) for b in batch_boxes):
        per_class = [{int(c): on_cpu(v).double().reshape(-1, 4) for c, v in b.items()}
                     for b in batch_boxes]
        if len(per_class) != n:
            raise ValueError(f"{len(per_class)} entries of boxes for {n} images")
        accepted = label_sets(batch_labels, n) if batch_labels is not None else [set(b) for b in per_class]
        return accepted, per_class
    accepted = label_sets(batch_labels, n)
    truth = gt_boxes(batch_boxes, n)
    return accepted, [{c: truth[i] for c in accepted[i]} for i in range(n)]


def _localized(predicted: torch.Tensor, classes: list[int], accepted, per_class, iou_threshold: float) -> torch.Tensor:
    """(N,) bool: image i's class is accepted and its predicted box overlaps a box of that class enough."""
    return torch.tensor([classes[i] in accepted[i] and classes[i] in per_class[i]
                         and float(iou(predicted[i][None], per_class[i][classes[i]]).max()) >= iou_threshold
                         for i in range(len(classes))], dtype=torch.bool, device="cpu")


# --- pointing game ----------------------------------------------------------------------------------------------

def _pointing_scores(maps: torch.Tensor, masks: torch.Tensor, tolerance: float) -> list[float | None]:
    scores: list[float | None] = []
    for heat, mask in zip(maps.cpu().numpy(), masks.cpu().numpy()):
        if not mask.any():
            scores.append(None)  # nothing to point at: the image does not count
            continue
        near = ndimage.distance_transform_edt(~mask) <= tolerance
        heat = np.nan_to_num(heat.astype(np.float64), nan=-np.inf)
        maxima = heat == heat.max()
        scores.append(float(near[maxima].mean()))
    return scores


@refuses_nan_maps
def pointing_game(maps, ground_truth=None, tolerance: float = 15, *, inputs=None, target=None,
                  batch_size: int = 32, progress: bool = False) -> float:
    """The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016): a hit when
    the map's maximum lies within ``tolerance`` pixels (Euclidean, at the maps' resolution; the paper uses 15 px on
    the original image) of the ground-truth mask or box.

    Ties: when several pixels share the maximum value, the image scores the **share of those maxima that hit**,
    i.e. the expected hit of a uniformly random choice among them. A flat map thus scores the chance level (the
    share of the image within ``tolerance`` of the object) instead of an arbitrary hit or miss. Images with an empty
    mask (no object) are left out, as the paper leaves out images without the class.

    Args:
        maps: precomputed (N,H,W) / (N,3,H,W) maps, or an explainer / callable ``(x, target) -> maps`` used on
            ``inputs`` with ``target``.
        ground_truth: (N,H,W) bool masks, or boxes (see :func:`gt_boxes`), in the maps' pixels.
        tolerance: pixels; 0 requires the maximum inside the object.
        inputs: (N,C,H,W) tensor or a DataLoader of ``(x, target, ground_truth)`` batches, when ``maps`` is an
            explainer.

    Returns:
        the hit rate hits / (hits + misses), a fraction in [0, 1] (the paper prints percent).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance is a distance in pixels >= 0, got {tolerance}")
    scores: list[float | None] = []
    if is_precomputed(maps):
        heat = saliency(maps)
        scores = _pointing_scores(heat, gt_masks(ground_truth, heat.shape[0], tuple(heat.shape[-2:])), tolerance)
    else:
        if inputs is None:
            raise ValueError("pass inputs=... when maps is an explainer (or pass precomputed maps)")
        for x, batch_target, batch_truth in batches(inputs, (target, ground_truth), batch_size, progress,
                                                    "pointing game"):
            heat = compute_maps(maps, x, batch_target)
            scores += _pointing_scores(heat, gt_masks(batch_truth, heat.shape[0], tuple(heat.shape[-2:])),
                                       tolerance)
    counted = [s for s in scores if s is not None]
    if not counted:
        raise ValueError("every ground-truth mask is empty: the pointing game has nothing to score")
    return float(np.mean(counted))
