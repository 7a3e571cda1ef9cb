"""The figure of Deep Feature Factorization: every concept's map on the image in its own colour, with a legend of
each concept's top classes (what pytorch-grad-cam's ``run_dff_on_image`` draws)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from camlab.methods.factorization import Concepts
from camlab.viz import to_array


def concept_labels(scores: torch.Tensor, labels: Sequence[str] | None = None, top_k: int = 2) -> list[str]:
    """One legend line per concept: its ``top_k`` classes by the softmax of its head scores, as
    ``"label p%"`` (ties in the probability keep the lower class index first)."""
    probabilities = torch.softmax(scores.double(), dim=-1)
    lines = []
    for row in probabilities:
        order = sorted(range(len(row)), key=lambda c: (-float(row[c]), c))[:top_k]
        names = [labels[c] if labels is not None else str(c) for c in order]
        lines.append(", ".join(f"{name} {100 * float(row[c]):.0f}%" for name, c in zip(names, order)))
    return lines


def concept_overlay(image, maps: torch.Tensor, image_weight: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) image with each pixel coloured by its strongest concept (colour of the concept, intensity of its
    map; ties: the lower concept index), blended as ``image_weight * image + (1 - image_weight) * colours``; and the
    (k,3) concept colours (evenly spaced hues)."""
    import matplotlib

    maps = maps.detach().cpu().float()
    colours = matplotlib.colormaps["hsv"](np.arange(len(maps)) / len(maps))[:, :3]
    strength, winner = maps.max(dim=0)
    painted = colours[winner.numpy()] * strength.numpy()[..., None]
    rgb = to_array(image)
    if rgb.shape[:2] != painted.shape[:2]:
        raise ValueError(f"the image is {rgb.shape[:2]} but the concept maps are {tuple(painted.shape[:2])}; pass "
                         "the image the concepts were computed on")
    return np.clip(image_weight * rgb + (1 - image_weight) * painted, 0, 1), colours


def show_concepts(image, concepts: Concepts, index: int = 0, labels: Sequence[str] | None = None, top_k: int = 2,
                  image_weight: float = 0.3):
    """A matplotlib figure: image ``index`` of the batch and its concept overlay (:func:`concept_overlay`), with a
    legend naming each concept's top classes (:func:`concept_labels`; needs ``concepts.scores``, i.e. a ``head``).
    ``image`` is that image in [0, 1] (PIL, (H,W,3) array or (3,H,W) tensor); ``labels`` the class names."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    blended, colours = concept_overlay(image, concepts.maps[index], image_weight)
    figure, axes = plt.subplots(1, 2, figsize=(8, 4.6))
    for axis, picture, title in zip(axes, (to_array(image), blended), ("image", "concepts")):
        axis.imshow(picture)
        axis.set_title(title)
        axis.axis("off")
    if concepts.scores is not None:
        names = concept_labels(concepts.scores, labels, top_k)
        handles = [Patch(color=colours[j], label=f"{j}: {name}") for j, name in enumerate(names)]
        figure.legend(handles=handles, loc="lower center", ncol=1, fontsize=8, frameon=False)
        figure.subplots_adjust(bottom=0.08 + 0.05 * len(names))
    return figure
