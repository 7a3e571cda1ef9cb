r"""Hand-set toy networks whose gradients and forward effects are known in closed form (chapter 05).

* :class:`GatedHead` — saturation *inside* a network: channel 0 passes a sigmoid gate rescaled so that
  :math:`g(0) = 0` and :math:`g(1) = 1` for every gain, channel 1 passes unchanged; the score is
  :math:`y = \frac{1}{Z}\sum_{ij} g(A^0_{ij}) + \frac{1}{Z}\sum_{ij} A^1_{ij}`. On 0/1 activations the forward
  function (and so what removing a channel costs) is the same for every gain, while the slope
  :math:`g'(0) = g'(1)` shrinks as the gain grows: the gate saturates.
* :func:`two_blob_activations` — seeded (N, 2, S, S) activations with one square blob of ones per channel, the
  blobs apart, and their boxes.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedHead", "two_blob_activations"]


class GatedHead(nn.Module):
    r"""``features`` (an identity: the layer to explain is the input) → gate on channel 0 → spatial mean → sum.

    .. math:: g(a) = \frac{\sigma(\lambda (a - \tfrac12)) - \sigma(-\lambda/2)}{\sigma(\lambda/2) - \sigma(-\lambda/2)},
              \qquad g'(0) = g'(1) = \frac{\lambda\,\sigma'(\lambda/2)}{\sigma(\lambda/2) - \sigma(-\lambda/2)}

    with :math:`\lambda` = ``gain`` > 0. Small gains make :math:`g` nearly the identity on [0, 1]; large gains make it
    a step whose slope at 0 and 1 tends to 0 (at ``gain=10``, :math:`g'(1) \approx 0.067`). Output (N, 1): one class.
    """

    def __init__(self, gain: float):
        super().__init__()
        if not gain > 0:
            raise ValueError(f"gain must be a positive number (the gate's steepness), got {gain!r}")
        self.features = nn.Identity()
        self.gain = float(gain)

    def gate(self, a: torch.Tensor) -> torch.Tensor:
        low, high = (torch.sigmoid(torch.tensor(v * self.gain / 2, dtype=a.dtype)) for v in (-1.0, 1.0))
        return (torch.sigmoid(self.gain * (a - 0.5)) - low) / (high - low)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activations = self.features(x)
        if activations.ndim != 4 or activations.shape[1] != 2:
            raise ValueError(f"GatedHead reads (N, 2, h, w) activations, got shape {tuple(activations.shape)}")
        gated = self.gate(activations[:, 0]).mean(dim=(1, 2))
        return (gated + activations[:, 1].mean(dim=(1, 2)))[:, None]


def two_blob_activations(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2, size, size) activations and (N, 2, 4) boxes ``(x0, y0, x1, y1)`` (upper edges exclusive): channel k
    is 1 on a square of side 2-4 at a seeded random place and 0 elsewhere; blob 1 keeps at least one empty row or
    column between itself and blob 0. The same ``seed`` gives the same tensors; the global random state is
    untouched."""
    if n < 1 or size < 10:
        raise ValueError(f"two_blob_activations needs n >= 1 and size >= 10, got n={n}, size={size}")
    g = torch.Generator().manual_seed(int(seed))
    activations, boxes = torch.zeros(n, 2, size, size), torch.zeros(n, 2, 4, dtype=torch.long)
    for i in range(n):
        for k in range(2):
            while True:
                side = int(torch.randint(2, 5, (1,), generator=g))
                x0, y0 = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=g))
                box = torch.tensor([x0, y0, x0 + side, y0 + side])
                if k == 0 or _apart(box, boxes[i, 0]):
                    break
            activations[i, k, y0:y0 + side, x0:x0 + side] = 1.0
            boxes[i, k] = box
    return activations, boxes


def _apart(box: torch.Tensor, other: torch.Tensor) -> bool:
    """The two boxes have at least one empty row or column between them."""
    return bool(box[0] > other[2] or other[0] > box[2] or box[1] > other[3] or other[1] > box[3])
