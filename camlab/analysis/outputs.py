"""Outputs and targets beyond a class logit: a logit map per class, a region of a dense output, one VQA question
per image."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from camlab.targets.outputs import dense_of


class DenseLogits(nn.Module):
    r"""A GAP + linear classifier as a fully convolutional one: the linear layer applied at every position of the
    feature map gives a logit map per class, (N, classes, h, w), whose spatial mean is exactly the classifier's
    logits (the mean commutes with the linear layer):

    .. math:: S^c_{ij} = \sum_k w^c_k A^k_{ij} + b^c, \qquad \frac{1}{Z}\sum_{ij} S^c_{ij} = y^c

    ``features`` and ``fc`` are the classifier's own modules (shared parameters), so layers are found by the same
    dotted names (``"features"``, ``"features.9"``) and ``model.camlab`` carries over. Building it changes nothing
    in ``model``: each submodule keeps its own train/eval mode.
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
        # only this wrapper's own flag: ``self.train()`` would reset every shared submodule's mode to one value
        self.training = model.training

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

    def target(output) -> torch.Tensor:
        output = dense_of(output)  # the tensor, torchvision's {"out": ...}, or a logits field; (N, classes, h, w)
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
