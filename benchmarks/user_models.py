"""User-style CNNs outside rayprune's zoo, for the search benchmark (``user_models:dsconv_net``, ``user_models:resnext_net``).

Depthwise-separable blocks, a channel concatenation of two branches and a residual add: the
couplings Torch-Pruning's dependency graph must get right, in a model no zoo entry describes.
"""

from __future__ import annotations

import torch
from torch import nn


def _dsconv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (groups = channels) then pointwise 1x1, each with BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class DSConvNet(nn.Module):
    """stem -> ds block -> cat(ds branch, 1x1 branch) -> merge (+ residual ds pair) -> ds down -> head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.block1 = _dsconv(w, 2 * w, stride=2)
        self.branch_a = _dsconv(2 * w, w)
        self.branch_b = nn.Sequential(nn.Conv2d(2 * w, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.merge = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w))
        self.res = nn.Sequential(_dsconv(2 * w, 2 * w), nn.Conv2d(2 * w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w))
        self.down = _dsconv(2 * w, 4 * w, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        self.classifier_layer_name = "fc"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.stem(x))
        y = self.merge(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))
        y = torch.relu(y + self.res(y))
        return self.fc(torch.flatten(self.pool(self.down(y)), 1))


def dsconv_net(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    return DSConvNet(num_classes=num_classes, in_channels=in_channels, width=width)


class _ResNeXtBlock(nn.Module):
    """A ResNeXt bottleneck: 1x1 reduce, grouped 3x3 (``cardinality`` groups), 1x1 expand, residual add."""

    def __init__(self, cin: int, cout: int, inner: int, cardinality: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False),
            nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class ResNeXtNet(nn.Module):
    """stem -> two ResNeXt stages of two blocks each (grouped 3x3 convs) -> pool -> head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, cardinality: int = 4) -> None:
        super().__init__()
        w, c = width, cardinality
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stage1 = nn.Sequential(_ResNeXtBlock(w, 2 * w, 2 * w, c, stride=2), _ResNeXtBlock(2 * w, 2 * w, 2 * w, c))
        self.stage2 = nn.Sequential(_ResNeXtBlock(2 * w, 4 * w, 4 * w, c, stride=2),
                                    _ResNeXtBlock(4 * w, 4 * w, 4 * w, c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stage2(self.stage1(self.stem(x)))), 1))


def resnext_net(num_classes: int = 10, in_channels: int = 1, width: int = 16, cardinality: int = 4) -> nn.Module:
    """A small ResNeXt-style CNN: grouped convolutions whose channels are pruned in blocks of ``cardinality``."""
    return ResNeXtNet(num_classes=num_classes, in_channels=in_channels, width=width, cardinality=cardinality)
