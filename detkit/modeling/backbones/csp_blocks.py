"""The blocks of the CSP trunk and of YOLO's C2f neck, as YOLOv8 arranges them (Ultralytics, 2023).

    ConvNormAct: ``[N, C_in, H, W]`` -> ``[N, C_out, H / stride, W / stride]``: conv (no bias), norm, SiLU
    C2f:         ``[N, C_in, H, W]`` -> ``[N, C_out, H, W]``: a 1x1 conv's output is split in two halves
                 of ``c = C_out / 2`` channels; ``n`` bottlenecks (3x3, 3x3) run one after another on the
                 second half; the two halves and every bottleneck's output (``(2 + n) c`` channels) are
                 concatenated and fused by a 1x1 conv
    SPPF:        ``[N, C_in, H, W]`` -> ``[N, C_out, H, W]``: three chained 5x5 stride-1 max-pools
                 concatenated with their input, fused by a 1x1 conv

C2f is a Cross Stage Partial block (Wang et al., CVPRW 2020): half of the channels skip the
bottlenecks, so gradients reach the block's input by a short path and the bottlenecks cost half the
channels. Unlike YOLOv5's C3 (``yolo/blocks.CSPBlock``) it also keeps every intermediate bottleneck
output, the richer gradient flow of YOLOv7's ELAN (Wang et al., CVPR 2023), at the cost of a wider
fusing 1x1. SPPF is YOLOv5's equivalent of spatial pyramid pooling (He et al., TPAMI 2015) with
5x5, 9x9 and 13x13 windows: chaining 5x5 pools gives the same three receptive fields more cheaply.

Every conv is a plain ``Conv2d`` followed by a ``BatchNorm2d`` (or the norm layer passed in) in an
``nn.Sequential``, so a generic Conv+BN folding pass finds and folds all of them for inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


class ConvNormAct(nn.Sequential):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, norm_layer: NormLayer
    ) -> None:
        super().__init__(
            # No conv bias: the norm's shift replaces it.
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            norm_layer(out_channels),
            nn.SiLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """Two 3x3 convs at constant width, added to the input when ``shortcut`` (YOLOv8's C2f bottleneck)."""

    def __init__(self, channels: int, shortcut: bool, norm_layer: NormLayer) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, 1, norm_layer)
        self.conv2 = ConvNormAct(channels, channels, 3, 1, norm_layer)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv2(self.conv1(x))
        return x + out if self.shortcut else out


class C2f(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int, shortcut: bool, norm_layer: NormLayer) -> None:
        """``depth`` bottlenecks; ``shortcut`` adds their residuals (YOLOv8: in the trunk, not the neck)."""
        super().__init__()
        self.hidden = out_channels // 2
        self.split = ConvNormAct(in_channels, 2 * self.hidden, 1, 1, norm_layer)
        self.bottlenecks = nn.ModuleList(Bottleneck(self.hidden, shortcut, norm_layer) for _ in range(depth))
        self.fuse = ConvNormAct((2 + depth) * self.hidden, out_channels, 1, 1, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.split(x).split(self.hidden, dim=1))
        for bottleneck in self.bottlenecks:
            parts.append(bottleneck(parts[-1]))
        fused: Tensor = self.fuse(torch.cat(parts, dim=1))
        return fused


class SPPF(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormLayer, pool_size: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.reduce = ConvNormAct(in_channels, hidden, 1, 1, norm_layer)
        self.pool = nn.MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.fuse = ConvNormAct(4 * hidden, out_channels, 1, 1, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        pooled = [self.reduce(x)]
        for _ in range(3):
            pooled.append(self.pool(pooled[-1]))
        fused: Tensor = self.fuse(torch.cat(pooled, dim=1))
        return fused
