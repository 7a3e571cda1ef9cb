"""Tiny CNNs for the synthetic lab, written as plain ``nn.Module``s with named layers.

Every non-linearity is an ``nn.ReLU`` module (never in-place, never ``F.relu``), so hooks, guided
backpropagation and layer lookup by dotted name (``"features"``, ``"features.7"``) all work.

* :class:`GapCNN` - conv blocks -> ``features`` (16x16 for 64x64 inputs) -> ``pool`` (global average) ->
  flatten -> ``fc``: the head CAM needs.
* :class:`VGGStyle` - conv blocks -> ``features`` (8x8) -> flatten -> ``classifier`` (Linear, ReLU, Dropout,
  Linear): CAM cannot run on it, Grad-CAM can.

Both take normalised images (``(x - 0.5) / 0.5`` for the lab; see ``model.camlab``).
"""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def conv_features(width: int, pools: int = 2, in_channels: int = 3) -> nn.Sequential:
    """The lab's conv trunk: [conv-bn-relu, maxpool] x ``pools`` then two conv-bn-relu at 4x width.

    With ``pools=2`` a 64x64 image gives a (4*width, 16, 16) map; ``features.N`` indexes its layers.
    """
    layers: list[nn.Module] = []
    c = in_channels
    for i in range(pools):
        c_out = width * (2**i)
        layers += _block(c, c_out) + [nn.MaxPool2d(2)]
        c = c_out
    layers += _block(c, 4 * width) + _block(4 * width, 4 * width)
    return nn.Sequential(*layers)


class GapCNN(nn.Module):
    """conv trunk -> global average pooling -> linear classifier (the CAM architecture)."""

    def __init__(self, num_classes: int = 5, width: int = 16):
        super().__init__()
        self.width = width
        self.features = conv_features(width, pools=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class VGGStyle(nn.Module):
    """conv trunk -> flatten -> fully connected classifier (no GAP: CAM does not apply)."""

    def __init__(self, num_classes: int = 5, width: int = 16, input_size: int = 64, hidden: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        self.width = width
        self.features = conv_features(width, pools=3)  # 64 -> 8
        spatial = input_size // 8
        self.classifier = nn.Sequential(
            nn.Linear(4 * width * spatial * spatial, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
