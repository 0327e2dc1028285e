"""A small CNN for MNIST-sized images (the quickstart model).

Three 3x3 conv-BN-ReLU layers of 16/32/64 channels, 2x2 max-pools after the first two, a global
average pool and ``Linear(64, num_classes)``. The pools use ``ceil_mode=True`` and the global pool
removes any remaining spatial extent, so 8x8 to 32x32 (and larger) inputs all work. With one input
channel and 10 classes it has 24,058 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rayprune.models.vgg import scale_width

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool x2, conv-BN-ReLU, global average pool, ``classifier``.

    Example:
        >>> SmallCNN(num_classes=10, in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    classifier_layer_name = "classifier"

    def __init__(self, *, num_classes: int, in_channels: int = 1, width_mult: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = (scale_width(c, width_mult) for c in (16, 32, 64))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def small_cnn(*, num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> SmallCNN:
    """Small CNN for 28x28 single-channel images; see :class:`SmallCNN`."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
