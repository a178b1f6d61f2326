"""The CSP trunk of YOLOv8 (Ultralytics, 2023), written for detkit and trained from scratch: dense
convolutions only, no depthwise ones.

    images ``[N, 3, H, W]`` -> stage outputs at strides 2, 4, 8, 16, 32, with channels
    ``scaled(64, 128, 256, 512, 1024)``

    stage 1  stem: 3x3 stride-2 conv
    stage 2  3x3 stride-2 conv, C2f of 3d residual bottlenecks
    stage 3  3x3 stride-2 conv, C2f of 6d
    stage 4  3x3 stride-2 conv, C2f of 6d
    stage 5  3x3 stride-2 conv, C2f of 3d, SPPF

Each conv is conv-BN-SiLU (``csp_blocks``); ``d`` is the depth multiple (blocks rounded, at least 1)
and a width of ``c`` channels becomes ``min(c, max_channels) * width_multiple`` rounded up to a
multiple of 8, YOLOv8's scaling:

    size  depth  width  max channels  channels c1..c5          C2f blocks (stages 2-5)
    n     0.33   0.25   1024          16 32 64 128 256         1 2 2 1
    s     0.33   0.50   1024          32 64 128 256 512        1 2 2 1
    m     0.67   0.75    768          48 96 192 384 576        2 4 4 2

Why it is faster than MobileNetV2 at about equal FLOPs on a CPU (``benchmarks/yolo_vs_ultralytics.py``:
the yolo preset, 7.8 GFLOPs, takes 0.45x the time of the MobileNetV2 one at width 0.25, 8.9 GFLOPs,
at 640 px on 1 thread): MobileNetV2's FLOPs are mostly 1x1 convolutions over 6x-expanded maps at high
resolution, a few multiply-adds per byte moved, and the depthwise 3x3s between them even fewer, so
it is bound by memory; most of this trunk's FLOPs are dense 3x3 convolutions at multiples of 8
channels, bound by arithmetic (about twice the FLOPs per second in oneDNN).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from detkit.modeling.backbones.csp_blocks import SPPF, C2f, ConvNormAct, NormLayer
from detkit.modeling.scaling import scaled_channels, scaled_depth

# YOLOv8's base widths of stages 1-5 and C2f blocks of stages 2-5 at multiples 1.0.
BASE_CHANNELS = (64, 128, 256, 512, 1024)
BASE_DEPTHS = (3, 6, 6, 3)


@dataclass(frozen=True)
class CSPSize:
    depth_multiple: float
    width_multiple: float
    max_channels: int

    def channels(self, base: int) -> int:
        return scaled_channels(min(base, self.max_channels), self.width_multiple)

    def depth(self, base: int) -> int:
        return scaled_depth(base, self.depth_multiple)


CSP_SIZES = {
    "n": CSPSize(depth_multiple=0.33, width_multiple=0.25, max_channels=1024),
    "s": CSPSize(depth_multiple=0.33, width_multiple=0.50, max_channels=1024),
    "m": CSPSize(depth_multiple=0.67, width_multiple=0.75, max_channels=768),
}

# The layer whose output ends each stage 1..5 (the stage's tap).
STAGE_ENDS = ("stem", "c2f2", "c2f3", "c2f4", "sppf")


def csp_darknet_layers(size: CSPSize, norm_layer: NormLayer) -> tuple[list[tuple[str, nn.Module]], list[int]]:
    """The trunk's named layers in forward order, and the output channels of stages 1..5."""
    channels = [size.channels(c) for c in BASE_CHANNELS]
    layers: list[tuple[str, nn.Module]] = [("stem", ConvNormAct(3, channels[0], 3, 2, norm_layer))]
    for stage, (c_in, c_out, depth) in enumerate(zip(channels, channels[1:], BASE_DEPTHS), start=2):
        layers.append((f"down{stage}", ConvNormAct(c_in, c_out, 3, 2, norm_layer)))
        layers.append((f"c2f{stage}", C2f(c_out, c_out, size.depth(depth), shortcut=True, norm_layer=norm_layer)))
    layers.append(("sppf", SPPF(channels[-1], channels[-1], norm_layer)))
    return layers, channels
