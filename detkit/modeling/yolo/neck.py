"""Path Aggregation neck (PANet, Liu et al., CVPR 2018, section 3.1) as YOLOv4/YOLOX arrange it.

    trunk maps ``[c3, c4, c5]``: ``[N, C_i, H / s_i, W / s_i]`` at strides 8, 16, 32
    -> ``[p3, p4, p5]``: ``[N, out_channels[i], H / s_i, W / s_i]``

Top-down (FPN) pass: c5 is reduced, upsampled and fused with c4, then again with c3, so the fine
levels learn what the coarse ones see. Bottom-up pass: p3 is strided down and fused back into the
top-down maps, giving the coarse levels a short path to fine localisation detail. Every fusion is
concatenation then a CSP block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.yolo.blocks import ConvBNAct, CSPBlock


class PANNeck(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: list[int], depth: int = 1) -> None:
        super().__init__()
        (c3, c4, c5), (o3, o4, o5) = in_channels, out_channels
        self.reduce5 = ConvBNAct(c5, o4, 1)
        self.fuse4_top_down = CSPBlock(o4 + c4, o4, depth, shortcut=False)
        self.reduce4 = ConvBNAct(o4, o3, 1)
        self.fuse3 = CSPBlock(o3 + c3, o3, depth, shortcut=False)
        self.down3 = ConvBNAct(o3, o3, 3, stride=2)
        self.fuse4_bottom_up = CSPBlock(o3 + o3, o4, depth, shortcut=False)
        self.down4 = ConvBNAct(o4, o4, 3, stride=2)
        self.fuse5 = CSPBlock(o4 + o4, o5, depth, shortcut=False)
        self.out_channels = list(out_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Three maps finest first -> three maps finest first, each at its input's resolution."""
        c3, c4, c5 = features
        lateral5 = self.reduce5(c5)
        top_down4 = self.fuse4_top_down(torch.cat([upsample_to(lateral5, c4), c4], dim=1))
        lateral4 = self.reduce4(top_down4)
        p3 = self.fuse3(torch.cat([upsample_to(lateral4, c3), c3], dim=1))
        p4 = self.fuse4_bottom_up(torch.cat([self.down3(p3), lateral4], dim=1))
        p5 = self.fuse5(torch.cat([self.down4(p4), lateral5], dim=1))
        return [p3, p4, p5]


def upsample_to(x: Tensor, reference: Tensor) -> Tensor:
    """``x`` ``[N, C, h, w]`` -> ``[N, C, H, W]`` of ``reference``, nearest neighbour."""
    # To the reference's exact size, not x2: an odd-sized map halves with rounding up.
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")
