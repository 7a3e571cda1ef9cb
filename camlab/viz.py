"""Pictures: heat-map overlays, grids of them with colorbars, and percentile-clipped gradient images, in RGB.

Conventions (one per kind of map, used by every camlab figure):

* a non-negative map (CAM, Grad-CAM, ... scaled to [0, 1]) is drawn with ``CMAP`` ("jet", the papers' colour map)
  on the fixed range [0, 1] (or [0, max] when the map exceeds 1), so maps of one figure share one scale;
* a signed map (one with negative values, or any map drawn with ``signed=True``) is drawn with the diverging
  ``SIGNED_CMAP`` ("RdBu_r") on the symmetric range [-max|map|, +max|map|]: white is exactly 0, red positive, blue
  negative;
* an input-space gradient (gradient, deconvnet, guided backprop: an (N,3,H,W) image) is displayed through
  :func:`gradient_image`, which clips at a percentile of its magnitude; scaling by the maximum alone lets one outlier
  pixel flatten the whole image to grey.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.colors import Normalize
from PIL import Image

#: the colour map and heat-map opacity used by every camlab figure (the papers' "jet")
CMAP = "jet"
ALPHA = 0.5
#: the diverging colour map of signed maps, centred at 0 (white)
SIGNED_CMAP = "RdBu_r"
#: the smallest panel width in inches that :func:`show` draws (titles and colorbars stay readable)
MIN_PANEL_INCHES = 3.0
#: title characters per inch of panel width at 10 pt (longer titles are wrapped onto more lines)
_TITLE_CHARS_PER_INCH = 10


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


def _as_map(heat) -> torch.Tensor:
    """A map as a 2-D float tensor (leading singleton dimensions dropped)."""
    tensor = torch.as_tensor(np.asarray(heat.detach().cpu() if isinstance(heat, torch.Tensor) else heat),
                             dtype=torch.float32)
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise ValueError(f"a heat map must be (H,W), got shape {tuple(tensor.shape)}")
    return tensor


def _resized(heat, size: tuple[int, int]) -> np.ndarray:
    from camlab.maps import upsample

    return upsample(_as_map(heat)[None], size)[0].numpy()


def heat_array(heat, size: tuple[int, int]) -> np.ndarray:
    """A map (H,W) / (1,H,W) tensor or array in [0, 1], bilinearly resized to ``size`` = (H, W), clipped to [0, 1]."""
    return np.clip(_resized(heat, size), 0.0, 1.0)


def heat_scale(heat, signed: bool | None = None, cmap: str | None = None) -> tuple[str, Normalize]:
    """The colour map and value range a map is drawn with: ``(cmap, Normalize(vmin, vmax))``.

    ``signed=None`` decides from the map: signed when it has a negative value. Signed: ``SIGNED_CMAP`` on
    [-m, m] with m = max|map| (0 is the centre, white); otherwise ``CMAP`` on [0, max(1, max map)]. ``cmap``
    replaces the colour map, not the range."""
    values = _as_map(heat)
    if signed is None:
        signed = bool((values < 0).any())
    if signed:
        bound = float(values.abs().max()) or 1.0
        return cmap or SIGNED_CMAP, Normalize(-bound, bound)
    return cmap or CMAP, Normalize(0.0, max(1.0, float(values.max())))


def colorize(heat: np.ndarray, cmap: str = CMAP, norm: Normalize | None = None) -> np.ndarray:
    """An (H,W) map through a matplotlib colour map: (H,W,3) RGB floats. Without ``norm`` the map is taken to be in
    [0, 1]; with it, ``norm`` maps values to [0, 1] first (values outside its range get the end colours)."""
    values = np.asarray(heat, dtype=np.float64)
    if norm is not None:
        values = np.clip(norm(values), 0.0, 1.0)
    return matplotlib.colormaps[cmap](values)[..., :3].astype(np.float32)


def overlay(image, heat, alpha: float = ALPHA, cmap: str | None = None, signed: bool | None = None) -> Image.Image:
    """The heat map blended over the image: ``(1 - alpha) * image + alpha * cmap(norm(heat))``.

    ``image``: PIL image, (H,W,3) array or (3,H,W) tensor in [0, 1]; ``heat``: an (H,W) map (e.g. one image of an
    explainer's output), bilinearly resized to the image. Colour map and range as :func:`heat_scale`: a map in
    [0, 1] through "jet"; a signed map (``signed=True``, or automatically when it has negative values) through
    "RdBu_r" centred at 0. Returns an RGB PIL image (R, G, B order; no BGR as in OpenCV), without a colorbar:
    :func:`show` draws the same overlay with one."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = to_array(image)
    cmap, norm = heat_scale(heat, signed, cmap)
    coloured = colorize(_resized(heat, base.shape[:2]), cmap, norm)
    blended = (1.0 - alpha) * base + alpha * coloured
    return Image.fromarray((blended * 255).round().astype(np.uint8), mode="RGB")


def gradient_image(gradient, percentile: float = 99.0, mode: str = "rgb") -> torch.Tensor:
    r"""An input-space gradient (gradient, deconvnet, guided backprop, Guided Grad-CAM with ``raw=True``) made
    visible, clipped at a percentile of its magnitude, per image. ``gradient``: (3,H,W) or (N,3,H,W).

    * ``mode="rgb"`` (centred RGB, as the Grad-CAM and guided-backprop papers show them): with :math:`q` the
      ``percentile``-th percentile of :math:`|G|` over all pixels and channels of the image,
      :math:`\mathrm{clip}(G / (2q) + 1/2, 0, 1)`: grey (0.5) is a zero gradient, each channel brighter or darker
      where its gradient is positive or negative. Returns (3,H,W) / (N,3,H,W), drawn by :func:`show` as an image.
    * ``mode="abs"`` (magnitude, as Simonyan et al. 2014's saliency maps): :math:`S = \max_{\text{channel}} |G|`,
      :math:`\mathrm{clip}(S / q, 0, 1)` with :math:`q` the percentile of :math:`S` over the image's pixels.
      Returns (H,W) / (N,H,W) in [0, 1], drawn by :func:`show` as a heat map.

    ``percentile`` in (0, 100]; 100 is plain max scaling, where one outlier pixel turns everything else grey (or
    black); 99 (the default) lets the top 1% saturate instead. An all-zero gradient gives grey (rgb) or 0 (abs).
    """
    tensor = torch.as_tensor(np.asarray(gradient.detach().cpu() if isinstance(gradient, torch.Tensor)
                                        else gradient), dtype=torch.float32)
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"a gradient image must be (3,H,W) or (N,3,H,W), got shape {tuple(tensor.shape)}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if mode not in ("rgb", "abs"):
        raise ValueError(f"mode must be 'rgb' (centred RGB) or 'abs' (max over channels of |gradient|), got {mode!r}")
    batch = tensor if tensor.ndim == 4 else tensor[None]
    values = batch.abs() if mode == "rgb" else batch.abs().amax(dim=1)
    q = torch.from_numpy(np.percentile(values.flatten(1).numpy(), percentile, axis=1)).float()
    q = torch.where(q > 0, q, torch.ones_like(q)).view(-1, *[1] * (values.ndim - 1))
    shown = (batch / (2 * q) + 0.5) if mode == "rgb" else values / q
    shown = shown.clamp(0.0, 1.0)
    return shown if tensor.ndim == 4 else shown[0]


def _scaled_panel(image, heat, alpha, cmap, signed):
    """One panel: (RGB array, scale) with scale = (cmap, norm) for heat maps, None for pictures."""
    if heat is None:
        return to_array(image), None
    heat_t = heat if isinstance(heat, torch.Tensor) else torch.as_tensor(np.asarray(heat))
    if heat_t.ndim == 3 and heat_t.shape[0] == 3:  # a picture (e.g. gradient_image(...)): shown as is
        return to_array(heat_t), None
    scale = heat_scale(heat_t, signed, cmap)
    if image is None:
        return colorize(_as_map(heat_t).numpy(), *scale), scale
    return np.asarray(overlay(image, heat_t, alpha, scale[0], signed), dtype=np.float32) / 255.0, scale


def _panel(image, heat, alpha, cmap=None, signed=None) -> np.ndarray:
    """One panel's (H,W,3) RGB array, as :func:`show` draws it (used by camlab.widgets)."""
    return _scaled_panel(image, heat, alpha, cmap, signed)[0]


def _wrap(title: str, width: float) -> str:
    chars = max(12, int(width * _TITLE_CHARS_PER_INCH))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in str(title).split("\n"))


def _add_colorbars(figure, axes, scales) -> None:
    """One colorbar at the right of the figure when all its heat maps share one scale (maps in [0, 1]), else one
    beside each heat map; each says what its colours measure ("map value", or "signed map value (white = 0)")."""
    from matplotlib.cm import ScalarMappable

    keyed = [(axis, scale) for axis, scale in zip(axes, scales) if scale is not None]
    keys = {(cmap, norm.vmin, norm.vmax) for _, (cmap, norm) in keyed}
    groups = [(keyed[0][1], list(axes))] if len(keys) == 1 else [(scale, [axis]) for axis, scale in keyed]
    for (cmap, norm), group in groups:
        bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=group, fraction=0.05 if len(group) == 1
                              else 0.02, pad=0.02, shrink=0.9)
        bar.ax.tick_params(labelsize=8)
        bar.set_label("signed map value (white = 0)" if norm.vmin < 0 else "map value", fontsize=8)


def show(image=None, maps: Mapping[str, object] | Sequence | None = None, titles: Sequence[str] | None = None,
         ncols: int | None = None, size: float = MIN_PANEL_INCHES, alpha: float = ALPHA, cmap: str | None = None,
         show_image: bool = True, colorbar: bool = True, signed: bool | None = None):
    """A row (or grid) of panels: the image, then each map overlaid on it, with colorbars. Returns the Figure.

    ``maps`` is a dict ``{title: map}`` or a list of maps (with ``titles``). A map is (H,W), overlaid on the image
    and drawn as :func:`heat_scale` says ("jet" on [0, 1]; "RdBu_r" centred at 0 when it has negative values or
    ``signed=True``; ``signed=False`` clips negatives away), or (3,H,W), a picture drawn as it is (pass input-space
    gradients through :func:`gradient_image` first). With ``image=None`` the maps are drawn on their own.

    ``colorbar=True`` (default) adds one colorbar at the right of the figure when all its maps share one scale (maps
    in [0, 1]), else one beside each map. ``size`` is the panel width in inches, at least ``MIN_PANEL_INCHES`` (3;
    smaller values are raised to it); ``ncols`` defaults to at most 4 panels a row. Long titles are wrapped to the
    panel width, and the figure uses matplotlib's constrained layout, so titles and colorbars do not overlap."""
    import matplotlib.pyplot as plt

    if isinstance(maps, Mapping):
        titles, maps = list(maps.keys()), list(maps.values())
    maps = list(maps) if maps is not None else []
    titles = list(titles) if titles is not None else [""] * len(maps)
    if len(titles) != len(maps):
        raise ValueError(f"got {len(maps)} maps but {len(titles)} titles")
    panels = [(to_array(image), None, "image")] if image is not None and show_image else []
    panels += [(*_scaled_panel(image, heat, alpha, cmap, signed), title) for heat, title in zip(maps, titles)]
    if not panels:
        raise ValueError("nothing to show: pass an image and/or maps")
    size = max(float(size), MIN_PANEL_INCHES)
    ncols = ncols or min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    has_bars = colorbar and any(scale is not None for _, scale, _ in panels)
    figure, axes = plt.subplots(nrows, ncols, figsize=((size + 0.6 * has_bars) * ncols, (size + 0.5) * nrows),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for axis, (panel, _, name) in zip(axes.flat, panels):
        axis.imshow(panel)
        axis.set_title(_wrap(name, size), fontsize=10)
    if has_bars:
        _add_colorbars(figure, list(axes.flat), [scale for _, scale, _ in panels] + [None] * (axes.size - len(panels)))
    return figure
