"""CIFAR-style VGG with BatchNorm, as used in the channel-pruning literature.

The layout follows the VGG most CIFAR pruning code uses (kuangliu/pytorch-cifar, the Torch-Pruning
benchmarks, RepDistiller): 3x3 convolutions with bias, each followed by BatchNorm and ReLU, five 2x2
max-pools, then a single ``Linear(512, num_classes)`` classifier. At width 1 and 10 classes VGG16
has 14,728,266 parameters (the "14.7M" of the papers); the variant with an extra 512-wide hidden
layer (Li et al. 2017, HRank: ~15.0M) is not built here.

Two changes make it accept any input size without altering the CIFAR network:

- the max-pools use ``ceil_mode=True``, so odd sizes round up instead of shrinking to zero
  (28x28 inputs go 28 -> 14 -> 7 -> 4 -> 2 -> 1); on 32x32 inputs this changes nothing;
- an ``AdaptiveAvgPool2d(1)`` before the classifier averages whatever spatial extent is left
  (1x1 for inputs up to 32x32, so it is the identity there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["VGG", "VGG_CONFIGS", "scale_width", "vgg11", "vgg13", "vgg16", "vgg19"]

# Conv output widths; "M" is a 2x2 max-pool.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
    ),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


def scale_width(channels: int, width_mult: float) -> int:
    """Scale a layer width: ``max(1, round(channels * width_mult))``.

    Example:
        >>> scale_width(64, 0.25), scale_width(16, 0.01)
        (16, 1)
    """
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise ValueError(f"'width_mult' must be a number > 0; got {width_mult!r}.")
    return max(1, round(channels * width_mult))


class VGG(nn.Module):
    """VGG-BN for small images: ``features`` -> global average pool -> ``classifier`` (Linear).

    Example:
        >>> model = VGG(VGG_CONFIGS["vgg11"], num_classes=10, width_mult=0.125)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    classifier_layer_name = "classifier"

    def __init__(
        self,
        config: Sequence[int | str],
        *,
        num_classes: int,
        in_channels: int = 3,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            width = scale_width(int(item), width_mult)
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def _vgg(name: str, num_classes: int, in_channels: int, width_mult: float) -> VGG:
    return VGG(
        VGG_CONFIGS[name], num_classes=num_classes, in_channels=in_channels, width_mult=width_mult
    )


def vgg11(*, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> VGG:
    """VGG11-BN for CIFAR-sized inputs (9.23M parameters at width 1, 10 classes)."""
    return _vgg("vgg11", num_classes, in_channels, width_mult)


def vgg13(*, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> VGG:
    """VGG13-BN for CIFAR-sized inputs (9.42M parameters at width 1, 10 classes)."""
    return _vgg("vgg13", num_classes, in_channels, width_mult)


def vgg16(*, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> VGG:
    """VGG16-BN for CIFAR-sized inputs (14.73M parameters at width 1, 10 classes)."""
    return _vgg("vgg16", num_classes, in_channels, width_mult)


def vgg19(*, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> VGG:
    """VGG19-BN for CIFAR-sized inputs (20.04M parameters at width 1, 10 classes)."""
    return _vgg("vgg19", num_classes, in_channels, width_mult)
