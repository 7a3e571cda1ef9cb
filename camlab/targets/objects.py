r"""Target objects: what to explain, as a batch-wise callable ``output -> (N,)`` scores (one per image) that any
camlab method accepts as ``target=``. Each receives the model's output exactly as the model returned it.

* :class:`ClassTarget` - a class logit (the same as passing the int);
* :class:`BinaryTarget` - a single-logit (or two-logit) binary classifier, either class;
* :class:`SegmentationTarget` - a class's scores summed over a pixel mask of a dense (segmentation) output;
* :class:`DetectionTarget` - the score of the detected box that matches a given box and label;
* :class:`EmbeddingTarget` - the cosine similarity of an embedding with a reference vector.

A target with per-image parameters (a :class:`SegmentationTarget` with one mask per image) gives the target of
image ``i`` alone by ``for_image(i)``; methods that score perturbed copies of one image use it.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import torch

from camlab.targets.outputs import dense_of, describe, logits_of


def as_index(value, what: str = "target") -> int:
    """``value`` as a class index: a Python or numpy integer, or a 0-d integer tensor / array (never a bool, a
    float or a float tensor, which would be truncated)."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        if value.dtype == torch.bool or value.dtype.is_floating_point or value.dtype.is_complex:
            raise TypeError(f"{what} must be an integer class index, got a 0-d {value.dtype} tensor ({value.item()!r})")
        return int(value.item())
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # a numpy scalar, checked below
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer class index, got {type(value).__name__} {value}")
    return int(value)


def check_classes(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``indices`` (N,) checked against (N, classes) ``logits``: a clear error for another shape or a class out of
    range; returned on the logits' device."""
    if logits.ndim != 2:
        raise ValueError(
            f"the model's logits have shape {tuple(logits.shape)}; class-index targets need (N, classes) logits: "
            "pass target=callable(output) -> (N,) scores or a target object from camlab.targets instead"
        )
    num_classes = logits.shape[1]
    bad = (indices < 0) | (indices >= num_classes)
    if bad.any():
        raise ValueError(f"target class {indices[bad][0].item()} is outside the model's {num_classes} classes "
                         f"(valid: 0..{num_classes - 1})")
    return indices.to(logits.device)


def class_probability(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N,) the probability of class ``indices[n]``: the softmax over the classes, or the sigmoid of the logit for a
    model with a single output (a softmax over one logit would be 1 whatever the input)."""
    indices = check_classes(logits, indices)
    if logits.shape[1] == 1:
        return logits[:, 0].sigmoid()
    return logits.softmax(dim=1).gather(1, indices[:, None])[:, 0]


class ClassTarget:
    r"""The logit of class ``category``, :math:`y_n = z_{n,c}`, with :math:`z` the model's logits (a tensor, the first
    item of a tuple, or the ``logits`` field of a dict/object). Everywhere the same as ``target=category``: Score-CAM's
    default form takes its softmax probability, CAM and the metrics its class. Equivalent to pytorch-grad-cam's
    ``ClassifierOutputTarget`` (which scores one image at a time)."""

    def __init__(self, category):
        self.category = as_index(category, "category")

    def __call__(self, output) -> torch.Tensor:
        logits = logits_of(output)
        indices = torch.full((logits.shape[0],), self.category, dtype=torch.long, device=logits.device)
        return logits.gather(1, check_classes(logits, indices)[:, None])[:, 0]

    def probability(self, output) -> torch.Tensor:
        """:math:`\\mathrm{softmax}(z_n)_c` (the sigmoid for a single-logit model)."""
        logits = logits_of(output)
        indices = torch.full((logits.shape[0],), self.category, dtype=torch.long, device=logits.device)
        return class_probability(logits, indices)

    def __repr__(self) -> str:
        return f"ClassTarget({self.category})"


class BinaryTarget:
    r"""Either class of a binary classifier: the log-odds of the class, i.e. the positive class's logit minus the
    negative class's.

    For a model with one logit :math:`z` (output (N,1) or (N,)), :math:`p(\text{positive}) = \sigma(z)` is the
    two-class softmax of the logits :math:`(0, z)`, so

    .. math:: y_n = z_n \ (\text{positive}), \qquad y_n = -z_n \ (\text{negative})

    and for a model with two logits (N,2), :math:`y_n = \pm(z_{n,1} - z_{n,0})`. Its probability (Score-CAM's default
    form) is :math:`\sigma(y_n)`: :math:`p` for the positive class, :math:`1 - p` for the negative one.
    pytorch-grad-cam's ``BinaryClassifierOutputTarget`` returns :math:`\pm z` the same way.
    """

    def __init__(self, positive: bool = True):
        if not isinstance(positive, (bool, np.bool_)):
            raise TypeError(f"positive must be True or False, got {positive!r}")
        self.positive = bool(positive)

    def __call__(self, output) -> torch.Tensor:
        logits = logits_of(output)
        if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
            log_odds = logits.reshape(-1)
        elif logits.ndim == 2 and logits.shape[1] == 2:
            log_odds = logits[:, 1] - logits[:, 0]
        else:
            raise ValueError(f"BinaryTarget needs one logit (N,1) or (N,), or two (N,2), per image; the model's logits "
                             f"have shape {tuple(logits.shape)} (use ClassTarget or an int for a multi-class model)")
        return log_odds if self.positive else -log_odds

    def probability(self, output) -> torch.Tensor:
        """:math:`\\sigma(y_n)`: the probability of the chosen class."""
        return self(output).sigmoid()

    def __repr__(self) -> str:
        return f"BinaryTarget(positive={self.positive})"


def _float_tensor(value, what: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{what} must be a tensor or an array, not {type(value).__name__}") from error
    return tensor.detach().float() if not tensor.is_complex() else tensor


class SegmentationTarget:
    r"""The scores of class ``category`` summed over a pixel mask of a dense (segmentation) output:

    .. math:: y_n = \sum_{ij} M_{n,ij}\, S_{n,c,ij}

    with :math:`S` the (N,K,H,W) score maps (the output itself, its ``"out"`` entry as torchvision's segmentation
    models return, or a ``logits`` field) and :math:`M` the ``mask``: (H,W) for every image or (N,H,W) one per image,
    boolean or float (weights), at the output's resolution. As pytorch-grad-cam's ``SemanticSegmentationTarget``
    (which takes the logits of one image and an (H,W) numpy mask). A common mask: the pixels the model assigns to the
    class, ``mask = output["out"].argmax(1) == category``. Different classes per image: a list of targets, one per
    image. Score-CAM's probability form uses :meth:`probability`, the class's mean probability over the mask.
    """

    def __init__(self, category, mask):
        self.category = as_index(category, "category")
        self.mask = _float_tensor(mask, "mask")
        if self.mask.ndim not in (2, 3) or self.mask.is_complex():
            raise ValueError(f"mask must be a real (H,W) or (N,H,W) array, got shape {tuple(self.mask.shape)}")
        if not bool(torch.isfinite(self.mask).all()):
            raise ValueError("mask contains NaN or infinity; use 0/1 (or finite weights) for every pixel")

    def _mask(self, dense: torch.Tensor) -> torch.Tensor:
        """The mask as (1 or N, H, W), checked against the (N,K,H,W) scores and the category."""
        n, k, h, w = dense.shape
        if not 0 <= self.category < k:
            raise ValueError(f"category {self.category} is outside the output's {k} classes (valid: 0..{k - 1})")
        mask = self.mask if self.mask.ndim == 3 else self.mask[None]
        if tuple(mask.shape[-2:]) != (h, w) or mask.shape[0] not in (1, n):
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not fit the output's {n} maps of "
                             f"{h}x{w}: give an (H,W) mask or one per image (N,H,W) at the output's resolution")
        return mask

    def __call__(self, output) -> torch.Tensor:
        dense = dense_of(output)
        mask = self._mask(dense).to(dense)
        return (dense[:, self.category] * mask).flatten(1).sum(dim=1)

    def probability(self, output) -> torch.Tensor:
        r"""The class's mean softmax probability over the mask, :math:`\sum_{ij} M_{ij}\, p_{c,ij} / \sum_{ij} M_{ij}`
        with :math:`p_{\cdot,ij} = \mathrm{softmax}(S_{\cdot,ij})` over the classes (Score-CAM's probability form);
        0 for an empty mask."""
        dense = dense_of(output)
        mask = self._mask(dense).to(dense).expand(dense.shape[0], -1, -1)
        probabilities = dense.softmax(dim=1) if dense.shape[1] > 1 else dense.sigmoid()
        summed = (probabilities[:, self.category] * mask).flatten(1).sum(dim=1)
        total = mask.flatten(1).sum(dim=1)
        return torch.where(total != 0, summed / torch.where(total != 0, total, 1), torch.zeros_like(summed))

    def for_image(self, index: int) -> SegmentationTarget:
        """The target of image ``index`` alone (its own mask when there is one per image)."""
        if self.mask.ndim == 3 and self.mask.shape[0] > 1:
            return SegmentationTarget(self.category, self.mask[index])
        return self

    def __repr__(self) -> str:
        return f"SegmentationTarget(category={self.category}, mask={tuple(self.mask.shape)} with " \
               f"{int((self.mask != 0).sum())} pixels)"


class DetectionTarget:
    r"""The score of the detected box that matches ``box`` (x0, y0, x1, y1, input pixels) and ``label``, for detectors
    that return one dict per image with ``"boxes"``, ``"labels"`` and ``"scores"`` (torchvision's Faster R-CNN,
    RetinaNet, FCOS, SSD, Mask R-CNN in eval mode):

    .. math::
        J_n = \{j : \ell_{n,j} = \text{label},\ \mathrm{IoU}(b_{n,j}, \text{box}) \ge t\}, \qquad
        y_n = s_{n,j^*} \ (+\,\mathrm{IoU}(b_{n,j^*}, \text{box}) \text{ with } \texttt{with\_iou}), \quad
        j^* = \arg\max_{j \in J_n} \mathrm{IoU}(b_{n,j}, \text{box})

    and :math:`y_n = 0` when :math:`J_n` is empty (then gradient methods give a flat map). :math:`t` =
    ``iou_threshold``. Differences from pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` (which takes lists of labels
    and boxes and sums over them): it takes the detection with the largest IoU among *all* labels and scores 0 unless
    that one has the label (here: the best-overlapping box *of that label*, so a slightly better box of another class
    does not hide it); it needs IoU :math:`> t` (here :math:`\ge t`, the COCO convention); it always adds the IoU
    (here only with ``with_iou=True``, so that by default the score is the detector's class score alone).
    """

    def __init__(self, box, label, iou_threshold: float = 0.5, *, with_iou: bool = False):
        self.box = _float_tensor(box, "box").reshape(-1)
        if (self.box.shape != (4,) or not bool(torch.isfinite(self.box).all()) or not bool(self.box[2] > self.box[0])
                or not bool(self.box[3] > self.box[1])):
            raise ValueError(f"box must be finite (x0, y0, x1, y1) pixel coordinates with x1 > x0 and y1 > y0, "
                             f"got {box!r}")
        self.label = as_index(label, "label")
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.iou_threshold, self.with_iou = float(iou_threshold), bool(with_iou)

    def _one(self, detections: Mapping) -> torch.Tensor:
        from torchvision.ops import box_iou  # here: `import camlab` does not load torchvision

        boxes, labels, scores = (detections.get(key) for key in ("boxes", "labels", "scores"))
        if not all(isinstance(value, torch.Tensor) for value in (boxes, labels, scores)):
            raise ValueError(f"DetectionTarget needs 'boxes', 'labels' and 'scores' tensors per image, got keys "
                             f"{list(detections)}")
        iou = box_iou(self.box.to(boxes)[None], boxes)[0] if len(boxes) else boxes.new_zeros(0)
        candidates = (labels == self.label) & (iou >= self.iou_threshold)
        if not bool(candidates.any()):
            return scores.sum() * 0  # 0, connected to the graph: a zero gradient rather than none
        best = torch.where(candidates, iou, iou.new_tensor(-1.0)).argmax()
        return scores[best] + (iou[best] if self.with_iou else 0)

    def __call__(self, output) -> torch.Tensor:
        if isinstance(output, Mapping):
            output = [output]
        if not isinstance(output, (list, tuple)) or not all(isinstance(item, Mapping) for item in output):
            raise TypeError(f"DetectionTarget needs a detector's output, one dict per image with 'boxes', 'labels' "
                            f"and 'scores'; the model returned {describe(output)}")
        return torch.stack([self._one(detections) for detections in output])

    def __repr__(self) -> str:
        extra = ", with_iou=True" if self.with_iou else ""
        return (f"DetectionTarget(box={[round(v, 2) for v in self.box.tolist()]}, label={self.label}, "
                f"iou_threshold={self.iou_threshold}{extra})")


class EmbeddingTarget:
    r"""The cosine similarity of the model's embedding :math:`e_n` (the output, flattened per image; or the first
    item of a tuple, or a ``logits`` field) with a ``reference`` vector :math:`r`:

    .. math:: y_n = \frac{\langle e_n, r\rangle}{\max(\lVert e_n\rVert\, \lVert r\rVert, \epsilon)}, \quad
        \epsilon = 10^{-8}

    (``torch.nn.functional.cosine_similarity``), as pytorch-grad-cam's ``SimilarityToConceptTarget``: explains what
    makes an image look like the reference (e.g. another image's embedding).
    """

    def __init__(self, reference):
        self.reference = _float_tensor(reference, "reference").reshape(-1)
        if self.reference.numel() == 0 or self.reference.is_complex():
            raise ValueError("reference must be a non-empty real vector")
        if not bool(torch.isfinite(self.reference).all()):
            raise ValueError("reference contains NaN or infinity; give a finite embedding vector")

    def __call__(self, output) -> torch.Tensor:
        embedding = logits_of(output)
        embedding = embedding.flatten(1) if embedding.ndim > 1 else embedding[:, None]
        if embedding.shape[1] != self.reference.numel():
            raise ValueError(f"the model's embeddings have {embedding.shape[1]} values per image, the reference "
                             f"{self.reference.numel()}")
        return torch.nn.functional.cosine_similarity(embedding, self.reference.to(embedding)[None], dim=1, eps=1e-8)

    def __repr__(self) -> str:
        return f"EmbeddingTarget(reference of {self.reference.numel()} values)"
