r"""Channel ablation: the target score with one channel of a layer set to zero, for every channel.

.. math:: y^c_k = y^c(A \text{ with } A^k = 0)

Used by Ablation-CAM (:class:`camlab.AblationCAM`, weights :math:`(y^c - y^c_k) / y^c`) and by
:func:`camlab.analysis.channel_ablation_drop` (drops :math:`y^c - y^c_k`).

Speed: the activations are computed once by the caller; for each batch of ``batch_size`` ablated copies only the
network above the layer runs at full batch size: the model is called on the single image, and a temporary forward
hook on the layer replaces its (batch 1) output with the batch of ablated activations, so everything below the layer
runs at batch 1. Skip connections around the layer broadcast the batch-1 tensors. The first batch carries one extra,
unablated copy whose score must reproduce the original; if it does not, or the model cannot broadcast (e.g. a
``torch.cat`` around the layer, or a model that checks its batch sizes and raises any exception), the input is
repeated instead, which runs the whole network per copy (as
pytorch-grad-cam does). The hook is removed in all cases, also after an exception.

Layouts: channel k is channel k of the layer's feature map (N,K,h,w) as :mod:`camlab.layouts` reads it; the ablated
maps are put back into the layer's own layout (:meth:`camlab.layouts.Layout.from_map`) before the network goes on:
for a channels-last layer the last dim, for ViT tokens the channel of the patch tokens, the class token untouched.
A ``reshape_transform`` that does not only select and rearrange entries cannot be inverted and is refused.
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from camlab.layouts import NCHW, Layout
from camlab.targets import batch_size, scores


class ChannelAblation:
    """Scores of channel-ablated copies of one layer's output, in batches of ``batch_size``; ``bar`` (a tqdm bar or
    ``None``) is advanced by the channels done. One instance serves the images of one call, so that the broadcast
    check runs once."""

    def __init__(self, model: nn.Module, layer: nn.Module, batch_size: int, bar=None, layout: Layout | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.layer, self.batch_size, self.bar = model, layer, batch_size, bar
        self.layout = layout if layout is not None else Layout(NCHW)
        self.broadcast: bool | None = None  # unknown until the first batch is checked

    def _scores(self, image: torch.Tensor, ablated: torch.Tensor, target, broadcast: bool) -> torch.Tensor:
        """Target scores of the model with the layer's output replaced by ``ablated`` (B,K,h,w) maps."""
        thread = threading.get_ident()

        def replace(module, inputs, output):  # only in this thread's pass: another thread's forward stays untouched
            return self.layout.from_map(ablated, output) if threading.get_ident() == thread else None

        inputs = image if broadcast else image.expand(len(ablated), *image.shape[1:])
        handle = self.layer.register_forward_hook(replace)
        try:
            output = self.model(inputs)
        finally:
            handle.remove()
        if batch_size(output) != len(ablated):
            raise RuntimeError(f"the model returned {batch_size(output)} outputs for {len(ablated)} ablated copies")
        return scores(output, target)

    def _checked(self, image, activation, batch, target, original) -> torch.Tensor:
        """The first batch, with one unablated copy in front whose score decides whether broadcasting works.

        Any exception of the broadcast attempt (a ``RuntimeError`` from a shape mismatch, or whatever a model raises
        when its batch sizes disagree: ``ValueError``, ``IndexError``, ``AssertionError``, ...) means "does not
        broadcast": the batch is scored again on repeated inputs, and an error of the model itself surfaces there.
        """
        try:
            result = self._scores(image, torch.cat([activation, batch]), target, broadcast=True)
            self.broadcast = bool(torch.allclose(result[0], original, rtol=1e-4, atol=1e-5))
        except Exception:  # not BaseException: Ctrl-C stops at once
            self.broadcast = False
        return result[1:] if self.broadcast else self._scores(image, batch, target, broadcast=False)

    def scores(self, image: torch.Tensor, activation: torch.Tensor, target, original: torch.Tensor) -> torch.Tensor:
        """(K,) target scores with channel k of ``activation`` (1,K,h,w, the layer's output for ``image``, 1,C,H,W)
        set to zero; ``original`` is the unablated score, ``target`` this image's class index or callable."""
        k = activation.shape[1]
        result = torch.empty(k, dtype=original.dtype, device=original.device)
        with torch.inference_mode():
            for start in range(0, k, self.batch_size):
                channels = torch.arange(start, min(start + self.batch_size, k), device=activation.device)
                batch = activation.repeat(len(channels), *([1] * (activation.ndim - 1)))
                batch[torch.arange(len(channels), device=batch.device), channels] = 0
                if self.broadcast is None:
                    ablated = self._checked(image, activation, batch, target, original)
                else:
                    ablated = self._scores(image, batch, target, broadcast=self.broadcast)
                result[channels] = ablated.to(result.dtype)
                if self.bar is not None:
                    self.bar.update(len(channels))
        return result
