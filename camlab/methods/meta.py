"""Methods built on another camlab method: RefineCAM (several layers' maps multiplied) and SESS (the map of every
patch of a multi-scale sliding window, pasted back and fused). Each builds its base method with
:func:`camlab.methods.registry.build` and calls it like any user would."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from camlab.maps import safe_divide, upsample
from camlab.methods.base import Explainer, InputMethod, register
from camlab.methods.registry import build, get_method
from camlab.targets import Target, per_image, probabilities_of, scores


def _base_method(method, model: nn.Module, layer, options: dict | None, owner: str) -> Explainer:
    """The base explainer of a meta-method: a registered name or class of a method that gives (N,H,W) maps."""
    cls = get_method(method) if isinstance(method, str) else method
    if not isinstance(cls, type) or issubclass(cls, InputMethod) or cls.__name__ in ("SESS", "RefineCAM"):
        raise ValueError(f"{owner} needs a method that gives (N,H,W) maps (e.g. 'gradcam'), not {method!r}")
    return build(cls, model, layer, **dict(options or {}))


@register("refinecam")
class RefineCAM(Explainer):
    r"""RefineCAM (Domeniconi, Stramiglio, Lombardi & Salti, "How to Evaluate and Refine your CAM", arXiv 2026,
    https://arxiv.org/abs/2605.14641): the maps :math:`M_l` of one base method (``method``, Grad-CAM++ by default)
    at several layers ``layer`` = :math:`[l_1, \dots, l_m]`, each upsampled to the input and scaled to [0, 1], are
    multiplied element-wise,

    .. math:: L = \prod_{l} \frac{M_l - \min M_l}{\max M_l - \min M_l}

    so a coarse deep map keeps the fine detail of the shallow ones only where it agrees with them (the paper's idea:
    a high-resolution map from the layers' aggregate). ``method_options`` go to the base method. With one layer it
    is that layer's map. Same formula as pytorch-grad-cam's ``RefineCAM`` (whose base maps are scaled with 1e-7 in
    the denominator and upsampled after scaling).
    """

    def __init__(self, model: nn.Module, layer=None, *, method="gradcam++", method_options: dict | None = None):
        super().__init__(model)
        layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        if not layers:
            raise ValueError("RefineCAM needs at least one layer; got an empty list")
        self.explainers = [_base_method(method, model, item, method_options, "RefineCAM") for item in layers]

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        product = None
        for explainer in self.explainers:
            maps = explainer(x, target)
            product = maps if product is None else product * maps
        return product

    def __repr__(self) -> str:
        layers = [getattr(explainer, "layer_name", None) for explainer in self.explainers]
        return f"RefineCAM(model={type(self.model).__name__}, layer={layers!r}, method={self.explainers[0].name!r})"


def window_starts(length: int, step: int, window: int) -> list[int]:
    """Left edges of windows of size ``window`` every ``step`` along ``length``; the last window is shifted back to
    end at the border (so every pixel is covered and every window has the full size)."""
    starts = []
    for start in range(0, length, step):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def gaussian_blur(maps: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """(N,H,W) maps blurred by a separable ``size`` x ``size`` Gaussian (reflected borders, as OpenCV's default)."""
    offsets = torch.arange(size, dtype=maps.dtype, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    pad = size // 2
    padded = F.pad(maps[:, None], (pad, pad, pad, pad), mode="reflect" if min(maps.shape[1:]) > pad else "replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))[:, 0]


@register("sess")
class SESS(Explainer):
    r"""SESS, Saliency Enhancing with Scaling and Sliding (Tursun, Denman, Sridharan & Fookes,
    "SESS: Saliency Enhancing with Scaling and Sliding", ECCV 2022, https://arxiv.org/abs/2207.01769): a wrapper that
    makes any map method (``method``, Grad-CAM by default; ``method_options`` go to it) robust to scale, to several
    instances and to distractors.

    1. *Scaling*: the image is resized so its shorter side is each of ``scales`` (default ``num_scales`` = 12
       sizes from the window size up in steps of ``scale_step_ratio`` = 2/7 of it: 224, 288, ... for 224 x 224).
    2. *Sliding*: windows of ``window_size`` (default: the input's shorter side) every ``step_size`` (default: the
       window size; the last window of a row or column is shifted back inside) cut patches :math:`P_i`.
    3. *Pre-filtering*: the fraction ``pre_filter_ratio`` of patches with the lowest score is dropped.
    4. Each patch's map :math:`M_i` (the base method, scaled to [0, 1]) is weighted by its channel-wise weight
       :math:`w_i = s_i / \max_j s_j`, :math:`s_i` the target's softmax probability on the patch
       (``softmax_scores``; else its score, clipped at 0), pasted into its place in the resized image and resized
       back to the input (bilinear).
    5. *Fusion*: ``pool="mean"``: the spatial weighted average :math:`L(p) = \sum_i w_i M_i(p) /
       \#\{i: w_i M_i(p) > \theta\}` over the patches whose value exceeds ``theta`` at :math:`p`; ``"max"``: the
       maximum. ``smooth``: a Gaussian blur (11 x 11, :math:`\sigma` = 5).

    The target is resolved once per image on the whole input (``None``: its top-1 class) and explained in every
    patch. Base-method maps run in batches of ``batch_size`` patches. Same algorithm and defaults as
    pytorch-grad-cam's ``SESS``; camlab's base maps are upsampled before scaling (pytorch-grad-cam scales, then
    resizes), which is the only source of differences.
    """

    def __init__(self, model: nn.Module, layer=None, *, method="gradcam", method_options: dict | None = None,
                 scales: list[int] | None = None, num_scales: int = 12, scale_step_ratio: float = 2 / 7,
                 window_size: int | None = None, step_size: int | None = None, pre_filter_ratio: float = 0.0,
                 theta: float = 0.0, pool: str = "mean", smooth: bool = True, softmax_scores: bool = True,
                 batch_size: int = 32):
        super().__init__(model)
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        if not 0.0 <= pre_filter_ratio < 1.0:
            raise ValueError(f"pre_filter_ratio must be in [0, 1), got {pre_filter_ratio!r}")
        if num_scales < 1 or batch_size < 1:
            raise ValueError(f"num_scales and batch_size must be at least 1, got {num_scales} and {batch_size}")
        self.explainer = _base_method(method, model, layer, method_options, "SESS")
        self.scales, self.num_scales, self.scale_step_ratio = scales, num_scales, scale_step_ratio
        self.window_size, self.step_size, self.pre_filter_ratio = window_size, step_size, pre_filter_ratio
        self.theta, self.pool, self.smooth = theta, pool, smooth
        self.softmax_scores, self.batch_size = softmax_scores, batch_size

    def _scales(self, window: int) -> list[int]:
        if self.scales is not None:
            return list(self.scales)
        step = int(round(window * self.scale_step_ratio))
        return [window + step * i for i in range(self.num_scales)]

    def _patches(self, image: torch.Tensor, window: int, step: int):
        """Every window of every resized copy of ``image`` (1,C,H,W): (P,C,window,window) and each one's place
        ``(x1, y1, width, height)`` in its resized copy."""
        height, width = image.shape[2:]
        patches, places = [], []
        for scale in self._scales(window):
            if scale < window:
                raise ValueError(f"every scale must be at least the window size {window}, got {scale}")
            short = min(height, width)
            size = (scale, int(scale * width / short)) if height <= width else (int(scale * height / short), scale)
            resized = upsample(image, size)
            for y1 in window_starts(size[0], step, window):
                for x1 in window_starts(size[1], step, window):
                    patches.append(resized[:, :, y1:y1 + window, x1:x1 + window])
                    places.append((x1, y1, size[1], size[0]))
        return torch.cat(patches), places

    def _patch_scores(self, patches: torch.Tensor, target) -> torch.Tensor:
        values = []
        with torch.no_grad():
            for start in range(0, len(patches), self.batch_size):
                output = self.model(patches[start:start + self.batch_size])
                values.append(probabilities_of(output, target) if self.softmax_scores else scores(output, target))
        return torch.cat(values).clamp_min(0)

    def _fuse(self, image: torch.Tensor, target, window: int, step: int) -> torch.Tensor:
        height, width = image.shape[2:]
        patches, places = self._patches(image, window, step)
        patch_scores = self._patch_scores(patches, target)
        order = torch.argsort(patch_scores, stable=True)[int(len(patches) * self.pre_filter_ratio):]
        top = patch_scores[order[-1]]
        weights = patch_scores[order] / top if top > 0 else torch.ones(len(order), dtype=patch_scores.dtype)
        total = torch.zeros(height, width, dtype=image.dtype, device=image.device)
        count = torch.zeros_like(total)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            maps = self.explainer(patches[chunk], target) * weights[start:start + len(chunk), None, None]
            for cam, index in zip(maps, chunk.tolist()):
                x1, y1, scaled_width, scaled_height = places[index]
                canvas = torch.zeros(scaled_height, scaled_width, dtype=cam.dtype, device=cam.device)
                canvas[y1:y1 + window, x1:x1 + window] = cam
                pasted = F.interpolate(canvas[None, None], size=(height, width), mode="bilinear",
                                       align_corners=False)[0, 0]
                if self.pool == "max":
                    total = torch.maximum(total, pasted)
                else:
                    kept = pasted > self.theta
                    total += torch.where(kept, pasted, torch.zeros_like(pasted))
                    count += kept
        fused = total if self.pool == "max" else safe_divide(total, count)
        return gaussian_blur(fused[None]) if self.smooth else fused[None]

    def compute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        window = self.window_size or min(x.shape[2:])
        step = self.step_size or window
        with torch.no_grad():
            targets = per_image(self.model(x), target)
        return torch.cat([self._fuse(x[i:i + 1].detach(), targets[i], window, step) for i in range(len(x))])
