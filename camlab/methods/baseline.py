"""A sanity baseline: random channel weights."""
from __future__ import annotations

import torch
from torch import nn

from camlab.methods.base import ForwardPass, LayerMethod, register


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
