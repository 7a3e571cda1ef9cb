"""Pictures: heat-map overlays and grids of them, in RGB, with one colour map and opacity everywhere."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from PIL import Image

#: the colour map and heat-map opacity used by every camlab figure (the papers' "jet")
CMAP = "jet"
ALPHA = 0.5


def to_array(image) -> np.ndarray:
    """A PIL image, an (H,W,3) array or a (3,H,W) / (1,3,H,W) tensor in [0, 1] as an (H,W,3) float array in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu().float()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3):
            tensor = tensor.permute(1, 2, 0)
        array = tensor.numpy()
    else:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"cannot show an image of shape {array.shape}; expected (H,W,3), (3,H,W) or a PIL image")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def heat_array(heat, size: tuple[int, int]) -> np.ndarray:
    """A map (H,W) / (1,H,W) tensor or array in [0, 1], bilinearly resized to ``size`` = (H, W)."""
    tensor = torch.as_tensor(np.asarray(heat.detach().cpu() if isinstance(heat, torch.Tensor) else heat),
                             dtype=torch.float32)
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise ValueError(f"a heat map must be (H,W), got shape {tuple(tensor.shape)}")
    from camlab.maps import upsample

    return upsample(tensor[None], size)[0].clamp(0, 1).numpy()


def colorize(heat: np.ndarray, cmap: str = CMAP) -> np.ndarray:
    """An (H,W) map in [0, 1] through a matplotlib colour map: (H,W,3) RGB floats."""
    return matplotlib.colormaps[cmap](heat)[..., :3].astype(np.float32)


def overlay(image, heat, alpha: float = ALPHA, cmap: str = CMAP) -> Image.Image:
    """The heat map blended over the image: ``(1 - alpha) * image + alpha * cmap(heat)``.

    ``image``: PIL image, (H,W,3) array or (3,H,W) tensor in [0, 1]; ``heat``: an (H,W) map in [0, 1] (e.g. one
    image of an explainer's output), resized to the image. Returns an RGB PIL image (channels in R, G, B order; no
    BGR as in OpenCV)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = to_array(image)
    coloured = colorize(heat_array(heat, base.shape[:2]), cmap)
    blended = (1.0 - alpha) * base + alpha * coloured
    return Image.fromarray((blended * 255).round().astype(np.uint8), mode="RGB")


def _panel(image, heat, alpha, cmap):
    if heat is None:
        return to_array(image)
    heat_t = heat if isinstance(heat, torch.Tensor) else torch.as_tensor(np.asarray(heat))
    if heat_t.ndim == 3 and heat_t.shape[0] == 3:  # an input-space explanation (guided backprop): show it as is
        return to_array(heat_t)
    if image is None:
        return colorize(heat_array(heat_t, tuple(heat_t.shape[-2:])), cmap)
    return np.asarray(overlay(image, heat_t, alpha, cmap), dtype=np.float32) / 255.0


def show(image=None, maps: Mapping[str, object] | Sequence | None = None, titles: Sequence[str] | None = None,
         ncols: int | None = None, size: float = 3.0, alpha: float = ALPHA, cmap: str = CMAP,
         show_image: bool = True):
    """A row (or grid) of panels: the image, then each map overlaid on it. Returns the matplotlib Figure.

    ``maps`` is a dict ``{title: map}`` or a list of maps (with ``titles``). A map is (H,W) in [0, 1] (overlaid) or
    (3,H,W) (an input-space explanation, shown as an image). With ``image=None`` the maps are drawn on their own."""
    import matplotlib.pyplot as plt

    if isinstance(maps, Mapping):
        titles, maps = list(maps.keys()), list(maps.values())
    maps = list(maps) if maps is not None else []
    titles = list(titles) if titles is not None else [""] * len(maps)
    if len(titles) != len(maps):
        raise ValueError(f"got {len(maps)} maps but {len(titles)} titles")
    panels, names = [], []
    if image is not None and show_image:
        panels.append(to_array(image))
        names.append("image")
    for heat, title in zip(maps, titles):
        panels.append(_panel(image, heat, alpha, cmap))
        names.append(title)
    if not panels:
        raise ValueError("nothing to show: pass an image and/or maps")
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, panel, name in zip(axes.flat, panels, names):
        axis.imshow(panel)
        axis.set_title(name, fontsize=10)
    figure.tight_layout()
    return figure
