"""Tiny networks with weights set by hand, so that expected maps can be derived on paper."""
from __future__ import annotations

import torch
from torch import nn


class OneConvNet(nn.Module):
    """conv (1 -> 2 channels, 1x1, weights +1 and -1, no bias) -> ReLU -> flatten -> FC (2*2*2 -> 2).

    The input is one 1x2x2 image; FC weights are given per (channel, position)."""

    def __init__(self, fc_weight: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, fc_weight.shape[0], bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(fc_weight)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


class GapNet(nn.Module):
    """conv (3 -> 4, 3x3) -> ReLU -> GAP -> FC (4 -> 3): the architecture CAM needs."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=inplace),
                                      nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(inplace=inplace))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class FlattenHeadNet(nn.Module):
    """conv -> ReLU -> flatten -> FC -> ReLU -> FC: a VGG-style head, on which CAM cannot run."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
