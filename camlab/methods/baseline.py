"""Sanity baselines: random channel weights, and Sobel edges (no model at all)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camlab.methods.base import Explainer, ForwardPass, LayerMethod, register
from camlab.modelinfo import info_of


@register("random")
class RandomCAM(LayerMethod):
    r"""Random-weight CAM: :math:`L = \mathrm{ReLU}(\sum_k w_k A^k)` with :math:`w_k \sim U[0, 1)` drawn from a
    local ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched; the same seed gives the same map).
    A baseline for the metrics and sanity checks (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018,
    https://arxiv.org/abs/1810.03292): a method that scores no better than this explains nothing about the class.
    ``target`` is ignored (the model's output is never read)."""

    uses_gradients = False
    uses_target = False

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True,
                 reshape_transform=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False, seed: int = 0):
        super().__init__(model, layer, relu=relu, reshape_transform=reshape_transform,
                         aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.seed = seed

    def weights(self, forward: ForwardPass) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        n, k = forward.activations.shape[:2]
        # drawn on the CPU whatever the device, so a seed gives the same map everywhere
        weights = torch.rand(n, k, generator=generator, dtype=torch.float64, device="cpu")
        return weights.to(device=forward.activations.device, dtype=forward.activations.dtype)


#: Sobel's derivative kernel along the width (its transpose differentiates along the height)
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
#: ITU-R BT.601 luma, as OpenCV's ``COLOR_RGB2GRAY``
_LUMA = (0.299, 0.587, 0.114)


@register("sobel")
class SobelCAM(Explainer):
    r"""Sobel edges, a model-independent baseline (pytorch-grad-cam's ``sobel_cam``; Sobel & Feldman's 3x3 operator,
    1968): a map that only knows where the image has edges, for the metrics to beat. With :math:`I` the grey image
    (BT.601 luma of the RGB pixels) and :math:`S_x`, :math:`S_y` the Sobel kernels,

    .. math:: L = \tfrac12\big(|S_x * I| + |S_y * I|\big)

    at the input's resolution, (N,H,W), borders reflected without repeating the edge pixel (OpenCV's default
    ``BORDER_REFLECT_101``). For a camlab model the input is unnormalised to [0, 1] pixels first
    (``model.camlab.unnormalize``); otherwise the input's channels are taken as they are (3 channels: their luma, else
    their mean). The model and the target are never used. pytorch-grad-cam works on a uint8 RGB picture and
    saturates each absolute derivative at 255 (``convertScaleAbs``) before averaging, so its strong edges are clipped
    and its values quantised; camlab keeps the float values (equal where nothing saturates, pinned by a test).
    """

    uses_target = False

    def compute(self, x: torch.Tensor, target) -> torch.Tensor:
        info = info_of(self.model)
        pixels = info.unnormalize(x) if info is not None and x.shape[1] == 3 else x
        if pixels.shape[1] == 3:
            luma = torch.tensor(_LUMA, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
            grey = (pixels * luma).sum(dim=1, keepdim=True)
        else:
            grey = pixels.mean(dim=1, keepdim=True)
        padded = F.pad(grey, (1, 1, 1, 1), mode="reflect")
        kernels = torch.stack([_SOBEL, _SOBEL.T])[:, None].to(dtype=grey.dtype, device=grey.device)
        derivatives = F.conv2d(padded, kernels)
        return derivatives.abs().sum(dim=1) / 2
