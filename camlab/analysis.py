"""Tools for taking explanations apart: where a map's mass lies, how many blobs it has, what each channel really
contributes, and targets beyond a class logit. Used by the course's failure-analysis chapter (05) and the
beyond-classification chapter (06).

* :func:`mass_in_boxes` - share of a map's mass inside boxes (a spurious cue's corner, each instance of a class).
* :func:`count_blobs` - 8-connected segments of a thresholded map (several instances -> one blob?).
* :func:`channel_ablation_drop` - the score drop when one channel of a layer is set to zero, for every channel.
* :func:`dense_logits` - a GAP + linear classifier turned into a fully convolutional one (a logit *map* per class).
* :func:`region_target` - a target callable: the sum of one class's logit map inside a box (segmentation style).
* :func:`ask_each` - a VQA model with one question per image, as an ``images -> answer logits`` module (batched).

Boxes are ``(x0, y0, x1, y1)`` in pixels with exclusive upper edges, as everywhere in camlab.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from camlab.hooks import preserved_state, resolve_layer
from camlab.metrics import gt_masks, mass_inside
from camlab.targets import Target, scores

__all__ = ["mass_in_boxes", "count_blobs", "channel_ablation_drop", "dense_logits", "DenseLogits", "region_target",
           "ask_each", "AskEach"]


def mass_in_boxes(maps: torch.Tensor, boxes) -> torch.Tensor:
    """Share of each map's mass inside boxes, in [0, 1].

    Args:
        maps: (N,H,W) or one (H,W) map; negative values are clipped to 0 first.
        boxes: one ``(x0, y0, x1, y1)`` box for all images, an (N,4) tensor (one box per image), or an (N,K,4)
            tensor (K boxes per image).

    Returns:
        (N,) shares for one box per image; (N,K) for K boxes per image (each box measured on its own). A map with
        no mass gets the box's area fraction (the share of a uniform map), never NaN.
    """
    maps = torch.as_tensor(maps)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    n, height, width = maps.shape
    boxes_t = torch.as_tensor(boxes, dtype=torch.float64)
    if boxes_t.ndim == 1:
        boxes_t = boxes_t.expand(n, 4)
    if boxes_t.shape[-1] != 4 or boxes_t.shape[0] != n or boxes_t.ndim not in (2, 3):
        raise ValueError(f"boxes must be (4,), (N,4) or (N,K,4) for N={n} maps, got shape {tuple(boxes_t.shape)}")
    if boxes_t.ndim == 2:
        shares = mass_inside(maps, gt_masks(boxes_t, n, (height, width))).float()
        return shares[0] if single else shares
    shares = torch.stack([mass_inside(maps, gt_masks(boxes_t[:, k], n, (height, width)))
                          for k in range(boxes_t.shape[1])], dim=1).float()
    return shares[0] if single else shares


def count_blobs(maps: torch.Tensor, threshold: float = 0.15) -> torch.Tensor:
    """Number of 8-connected segments of each map's pixels at or above ``threshold`` times its maximum (the
    Grad-CAM paper thresholds at 15% before drawing a box around the largest segment).

    Args:
        maps: (N,H,W) or one (H,W) map.
        threshold: a fraction of each map's maximum, in (0, 1].

    Returns:
        (N,) long counts (a 0-d tensor for one map). A map whose maximum is not positive has 0 segments.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the map's maximum in (0, 1], got {threshold}")
    maps = torch.as_tensor(maps).detach().double()
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    counts = []
    for heat in maps.cpu().numpy():
        peak = heat.max()
        if not peak > 0:
            counts.append(0)
            continue
        counts.append(ndimage.label(heat >= threshold * peak, structure=np.ones((3, 3), dtype=bool))[1])
    result = torch.tensor(counts, dtype=torch.long)
    return result[0] if single else result


def channel_ablation_drop(model: nn.Module, x: torch.Tensor, layer: str | nn.Module, target: Target = None, *,
                          batch_size: int = 64) -> torch.Tensor:
    r"""The drop of the target score when channel :math:`k` of ``layer`` is set to zero, for every channel:

    .. math:: \Delta_k = y^c(A) - y^c(A \text{ with } A^k = 0)

    Positive: the channel supported the score. The layer's output is replaced by a batch of ablated copies with a
    forward hook. Speed: the model is called on the single image, so everything below the layer runs at batch 1 and
    only the part above it runs at the batch of copies (skip connections around the layer broadcast their batch-1
    tensors); where that fails (a ``torch.cat`` around the layer, a wrong batch size out) the input is repeated
    instead, which works for any architecture. The model's mode and parameters are untouched
    (:func:`camlab.hooks.preserved_state`).

    Args:
        model: the network; ``x``: (N,C,H,W) inputs; ``layer``: a dotted name or a submodule.
        target: as everywhere in camlab (None = top-1 class per image, an int, one int per image, a callable).

    Returns:
        (N,K) drops, one per image and channel.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    _, module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []
    replacement: list[torch.Tensor | None] = [None]

    def hook(_module, _inputs, output):
        if replacement[0] is None:
            captured.append(output.detach())
            return None
        return replacement[0]

    drops = []
    with preserved_state(model), torch.no_grad():
        handle = module.register_forward_hook(hook)
        try:
            logits = model(x)
            if isinstance(target, (list, tuple)) or (isinstance(target, torch.Tensor) and target.ndim == 1):
                per_image = [int(t) for t in target]
            elif target is None:
                per_image = logits.argmax(dim=1).tolist()
            else:
                per_image = [target] * x.shape[0]
            base = torch.stack([scores(logits[i:i + 1], per_image[i])[0] for i in range(x.shape[0])])
            activations = captured[0]
            broadcast = True
            channels = activations.shape[1]
            for i in range(x.shape[0]):
                row = torch.empty(channels, dtype=base.dtype, device=base.device)
                for start in range(0, channels, batch_size):
                    stop = min(start + batch_size, channels)
                    ablated = activations[i:i + 1].repeat(stop - start, *([1] * (activations.ndim - 1)))
                    ablated[torch.arange(stop - start), torch.arange(start, stop)] = 0
                    replacement[0] = ablated
                    out = None
                    if broadcast:
                        try:
                            out = model(x[i:i + 1])
                        except RuntimeError:
                            out = None
                        if out is None or out.shape[0] != stop - start:
                            broadcast, out = False, None
                    if out is None:
                        out = model(x[i:i + 1].expand(stop - start, *x.shape[1:]))
                    replacement[0] = None
                    row[start:stop] = scores(out, per_image[i])
                drops.append(base[i] - row)
        finally:
            handle.remove()
    return torch.stack(drops)


class DenseLogits(nn.Module):
    r"""A GAP + linear classifier as a fully convolutional one: the linear layer applied at every position of the
    feature map gives a logit map per class, (N, classes, h, w), whose spatial mean is exactly the classifier's
    logits (the mean commutes with the linear layer):

    .. math:: S^c_{ij} = \sum_k w^c_k A^k_{ij} + b^c, \qquad \frac{1}{Z}\sum_{ij} S^c_{ij} = y^c

    ``features`` and ``fc`` are the classifier's own modules (shared parameters), so layers are found by the same
    dotted names (``"features"``, ``"features.9"``) and ``model.camlab`` carries over.
    """

    def __init__(self, model: nn.Module, features: str = "features", fc: str = "fc"):
        super().__init__()
        modules = dict(model.named_modules())
        for name in (features, fc):
            if name not in modules:
                raise ValueError(f"{type(model).__name__} has no module {name!r}; DenseLogits needs a GAP + linear "
                                 "classifier with a feature trunk and a linear layer (e.g. a camlab lab GapCNN)")
        if not isinstance(modules[fc], nn.Linear):
            raise TypeError(f"{fc!r} must be an nn.Linear, got {type(modules[fc]).__name__}")
        self.features = modules[features]
        self.fc = modules[fc]
        if hasattr(model, "camlab"):
            self.camlab = model.camlab
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activations = self.features(x)
        return torch.einsum("nkhw,ck->nchw", activations, self.fc.weight) + self.fc.bias[None, :, None, None]


def dense_logits(model: nn.Module, features: str = "features", fc: str = "fc") -> DenseLogits:
    """:class:`DenseLogits` for ``model`` (a GAP + linear classifier): images -> (N, classes, h, w) logit maps."""
    return DenseLogits(model, features, fc)


def region_target(class_index, box, input_size: tuple[int, int] | None = None) -> Callable[[torch.Tensor],
                                                                                        torch.Tensor]:
    """A target callable for a dense (segmentation-style) output: the sum of class ``class_index``'s score map
    inside ``box``.

    Args:
        class_index: the channel of the (N, classes, h, w) output: one int, or one per image.
        box: ``(x0, y0, x1, y1)`` with exclusive upper edges, or an (N,4) tensor / list with one box per image; in
            the output's cells, or in input pixels when ``input_size`` = (H, W) is given (then scaled to the output's
            grid, rounding outwards).

    Returns:
        ``output -> (N,)`` scores, for ``target=`` of any camlab method.
    """
    boxes = torch.as_tensor(box, dtype=torch.float64)
    if boxes.shape[-1] != 4 or boxes.ndim not in (1, 2):
        raise ValueError(f"box must be (x0, y0, x1, y1) or one such box per image, got shape {tuple(boxes.shape)}")
    boxes = boxes.reshape(-1, 4)
    if not bool(((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()):
        raise ValueError(f"a box is empty (need x1 > x0 and y1 > y0): {boxes.tolist()}")
    classes = torch.as_tensor(class_index, dtype=torch.long).reshape(-1)

    def target(output: torch.Tensor) -> torch.Tensor:
        if output.ndim != 4:
            raise ValueError(f"region_target needs a dense (N, classes, h, w) output, got shape {tuple(output.shape)}")
        n, _, h, w = output.shape
        for name, value in (("boxes", boxes), ("class indices", classes)):
            if len(value) not in (1, n):
                raise ValueError(f"{len(value)} {name} for a batch of {n}: give one for all or one per image")
        scaled = boxes.clone()
        if input_size is not None:
            scaled[:, 0::2] *= w / input_size[1]
            scaled[:, 1::2] *= h / input_size[0]
        low, high = scaled[:, :2].floor().long(), scaled[:, 2:].ceil().long()
        rows = torch.arange(h, device=output.device)
        cols = torch.arange(w, device=output.device)
        inside = ((rows[None, :, None] >= low[:, 1, None, None].to(output.device))
                  & (rows[None, :, None] < high[:, 1, None, None].to(output.device))
                  & (cols[None, None, :] >= low[:, 0, None, None].to(output.device))
                  & (cols[None, None, :] < high[:, 0, None, None].to(output.device)))       # (1 or N, h, w)
        picked = output.gather(1, classes.to(output.device).expand(n).view(n, 1, 1, 1).expand(n, 1, h, w))[:, 0]
        return (picked * inside.to(picked.dtype)).sum(dim=(1, 2))

    return target


class AskEach(nn.Module):
    """A VQA model (:class:`camlab.lab.VQAModel`) with one fixed question per image: ``forward(images)`` gives the
    (N, answers) logits, ``images[i]`` asked ``questions[i]``. Like ``vqa.bind(question)`` but batched over
    different questions; its submodules are the VQA model's own (same dotted names, shared parameters)."""

    def __init__(self, vqa: nn.Module, questions):
        super().__init__()
        self.questions = list(questions)
        object.__setattr__(self, "_vqa", vqa)  # not a registered child: the layers below keep their own names
        for name, child in vqa.named_children():
            self.add_module(name, child)
        if hasattr(vqa, "camlab"):
            self.camlab = vqa.camlab
        self.train(vqa.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != len(self.questions):
            raise ValueError(f"{images.shape[0]} images but {len(self.questions)} questions (one per image)")
        return self._vqa(images, self.questions)


def ask_each(vqa: nn.Module, questions) -> AskEach:
    """:class:`AskEach`: ``vqa`` with ``questions[i]`` asked of image ``i``."""
    return AskEach(vqa, questions)
