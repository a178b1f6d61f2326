"""Building blocks of the YOLO neck and head.

    ConvBNAct:  ``[N, C_in, H, W]`` -> ``[N, C_out, H / stride, W / stride]``: conv, BatchNorm, SiLU
    CSPBlock:   ``[N, C_in, H, W]`` -> ``[N, C_out, H, W]``: a Cross Stage Partial block
                (Wang et al., CVPRW 2020) as YOLOv5/YOLOX's "C3": half the channels run through
                ``depth`` residual bottlenecks, the other half skips them, a 1x1 conv fuses both.

SiLU (YOLOv5, YOLOX) in place of the leaky ReLU of YOLOv3: smooth, and ~1 AP better at equal cost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__(
            # No conv bias: BatchNorm's shift replaces it.
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            # YOLOv5's BatchNorm settings: eps 1e-3 and a faster-moving running mean than torch's 0.1.
            nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03),
            nn.SiLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, added to the input when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool = True) -> None:
        super().__init__()
        self.reduce = ConvBNAct(channels, channels, 1)
        self.conv = ConvBNAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(self.reduce(x))
        return x + out if self.shortcut else out


class CSPBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.main = ConvBNAct(in_channels, hidden, 1)
        self.bypass = ConvBNAct(in_channels, hidden, 1)
        self.bottlenecks = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(depth)))
        self.fuse = ConvBNAct(2 * hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        fused: Tensor = self.fuse(torch.cat([self.bottlenecks(self.main(x)), self.bypass(x)], dim=1))
        return fused
