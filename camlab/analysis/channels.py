"""What each channel of a layer really contributes to the score, by ablation."""
from __future__ import annotations

import torch
from torch import nn

from camlab.ablation import ChannelAblation
from camlab.hooks import preserved_state, resolve_layer
from camlab.methods.forward import capture
from camlab.targets import Target


def channel_ablation_drop(model: nn.Module, x: torch.Tensor, layer: str | nn.Module, target: Target = None, *,
                          batch_size: int = 64) -> torch.Tensor:
    r"""The drop of the target score when channel :math:`k` of ``layer`` is set to zero, for every channel:

    .. math:: \Delta_k = y^c(A) - y^c(A \text{ with } A^k = 0)

    Positive: the channel supported the score. The ablated scores come from
    :class:`camlab.ablation.ChannelAblation`, the engine Ablation-CAM uses (batches of ``batch_size`` copies; only
    the part of the network above the layer runs at the batch size where the model broadcasts). The model's mode and
    parameters are untouched (:func:`camlab.hooks.preserved_state`).

    Args:
        model: the network; ``x``: (N,C,H,W) inputs; ``layer``: a dotted name or a submodule.
        target: as everywhere in camlab (None = top-1 class per image, an int, one int per image, a callable).

    Returns:
        (N,K) drops, one per image and channel.
    """
    layers = [resolve_layer(model, layer)]
    with preserved_state(model):
        forward = capture(model, x, target, layers, differentiable=False)
        ablation = ChannelAblation(model, layers[0][1], batch_size, layout=forward.layers[0].layout)
        targets = forward.per_image_targets()
        return torch.stack([forward.scores[i] - ablation.scores(forward.inputs[i:i + 1], forward.activations[i:i + 1],
                                                                targets[i], forward.scores[i])
                            for i in range(x.shape[0])])
