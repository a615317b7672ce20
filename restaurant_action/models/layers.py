"""Building blocks shared by the Darknet backbones and the detection heads."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

LEAKY_SLOPE = 0.1


def scale_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels of a layer in a model ``width`` times as wide, rounded up to a multiple of ``divisor``.

    Every Darknet width is a multiple of 8, so ``width=1.0`` gives the original network;
    ``scale_channels(32, 0.125) == 8`` (never below ``divisor``).
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(divisor, math.ceil(channels * width / divisor) * divisor)


def scale_depth(repeats: int, depth: float) -> int:
    """Number of repeated blocks in a model ``depth`` times as deep: ``max(1, round(repeats * depth))``."""
    if depth <= 0:
        raise ValueError(f"depth must be > 0, got {depth}")
    return max(1, round(repeats * depth))


class ConvBNAct(nn.Module):
    """Darknet's ``[convolutional]`` with ``batch_normalize=1, activation=leaky``.

    Conv (no bias, 'same' padding) → BatchNorm → LeakyReLU(0.1).
    ``(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)``.
    After :func:`fuse_conv_bn` the BatchNorm is folded into the conv's bias and ``bn`` is an
    ``nn.Identity``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    @property
    def fused(self) -> bool:
        """Whether the BatchNorm has been folded into the conv."""
        return isinstance(self.bn, nn.Identity)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """Darknet-53 residual unit: 1×1 conv to ``hidden_channels``, 3×3 conv back, plus the input.

    ``(B, channels, H, W) -> (B, channels, H, W)``; the shortcut is linear as in yolov3.cfg.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(channels, hidden_channels, 1)
        self.conv2 = ConvBNAct(hidden_channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every :class:`ConvBNAct`'s BatchNorm into its conv, in place, for inference.

    Uses the running statistics, so the model must be in eval mode; outputs are unchanged up to
    float rounding. Returns ``model``.
    """
    if model.training:
        raise ValueError("fuse_conv_bn folds the BatchNorm running statistics: call model.eval() first")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ConvBNAct) and not module.fused:
                module.conv = fuse_conv_bn_eval(module.conv, module.bn)
                module.bn = nn.Identity()
    return model
