"""CIFAR-style ResNets built from BasicBlocks.

Two families share one implementation:

- ``resnet18``/``resnet34``: the CIFAR adaptation of the ImageNet ResNets (kuangliu/pytorch-cifar):
  a 3x3 stride-1 stem with 64 channels and no max-pool, four stages of 64/128/256/512 channels.
- ``resnet20``/``resnet56``: He et al. (2016), section 4.2: a 16-channel stem and three stages of
  16/32/64 channels with ``n`` = 3 or 9 blocks each. The paper uses parameter-free "option A"
  shortcuts (strided identity plus zero padding); here every shortcut that changes shape is a
  1x1 conv + BatchNorm ("option B"), which Torch-Pruning can trace and prune. That adds
  2,752 parameters.

Parameter counts at width 1 with 10 classes: ResNet18 11,173,962; ResNet34 21,282,122; ResNet20
272,474 (option A: 269,722, the paper's "0.27M"); ResNet56 855,770 (option A: 853,018, "0.85M").

All ReLUs are separate, non-inplace modules and residuals are added with ``out + shortcut``, so the
graph is easy for dependency tracers and for forward hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rayprune.models.vgg import scale_width

__all__ = ["BasicBlock", "CifarResNet", "resnet18", "resnet20", "resnet34", "resnet56"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + sc(x))``.

    The shortcut is the identity when shapes match, else a strided 1x1 conv + BatchNorm.

    Example:
        >>> BasicBlock(16, 32, stride=2)(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stem, BasicBlock stages, global average pool, ``classifier``.

    Stage ``i`` has ``blocks[i]`` blocks of ``widths[i]`` channels; every stage after the first
    halves the spatial size in its first block.

    Example:
        >>> model = CifarResNet(blocks=(3, 3, 3), widths=(16, 32, 64), num_classes=10)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    classifier_layer_name = "classifier"

    def __init__(
        self,
        *,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(
                f"'blocks' and 'widths' must be non-empty and of equal length; "
                f"got {len(blocks)} and {len(widths)}."
            )
        scaled = [scale_width(w, width_mult) for w in widths]
        self.conv1 = nn.Conv2d(in_channels, scaled[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(scaled[0])
        self.relu = nn.ReLU()
        stages: list[nn.Sequential] = []
        channels = scaled[0]
        for index, (count, width) in enumerate(zip(blocks, scaled)):
            stride = 1 if index == 0 else 2
            stage = []
            for block_index in range(count):
                stage.append(BasicBlock(channels, width, stride if block_index == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.relu(self.bn1(self.conv1(x))))
        return self.classifier(self.flatten(self.pool(out)))


def resnet18(
    *, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0
) -> CifarResNet:
    """CIFAR ResNet18: 3x3 stem, no max-pool, stages 64/128/256/512 x (2, 2, 2, 2)."""
    return CifarResNet(
        blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512),
        num_classes=num_classes, in_channels=in_channels, width_mult=width_mult,
    )  # fmt: skip


def resnet34(
    *, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0
) -> CifarResNet:
    """CIFAR ResNet34: 3x3 stem, no max-pool, stages 64/128/256/512 x (3, 4, 6, 3)."""
    return CifarResNet(
        blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512),
        num_classes=num_classes, in_channels=in_channels, width_mult=width_mult,
    )  # fmt: skip


def resnet20(
    *, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0
) -> CifarResNet:
    """He et al. CIFAR ResNet20 (n=3, 16/32/64 channels) with 1x1-conv shortcuts."""
    return CifarResNet(
        blocks=(3, 3, 3), widths=(16, 32, 64),
        num_classes=num_classes, in_channels=in_channels, width_mult=width_mult,
    )  # fmt: skip


def resnet56(
    *, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0
) -> CifarResNet:
    """He et al. CIFAR ResNet56 (n=9, 16/32/64 channels) with 1x1-conv shortcuts."""
    return CifarResNet(
        blocks=(9, 9, 9), widths=(16, 32, 64),
        num_classes=num_classes, in_channels=in_channels, width_mult=width_mult,
    )  # fmt: skip
