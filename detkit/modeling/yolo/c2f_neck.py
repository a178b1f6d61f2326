"""YOLOv8's Path Aggregation neck of C2f blocks (Ultralytics, 2023; PANet, Liu et al., CVPR 2018, section 3.1).

    trunk maps ``[c3, c4, c5]``: ``[N, C_i, H / s_i, W / s_i]`` at strides 8, 16, 32
    -> ``[p3, p4, p5]``: ``[N, out_channels[i], H / s_i, W / s_i]``

The same two passes as YOLOX's neck (``neck.PANNeck``) without its 1x1 reductions before each
upsampling: top-down, c5 is upsampled and fused with c4, the result upsampled and fused with c3
(p3); bottom-up, p3 is strided down and fused with the top-down c4 map (p4), p4 strided down and
fused with c5 itself (p5). Every fusion is concatenation then a C2f block without residuals.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from detkit.modeling.backbones.csp_blocks import C2f, ConvNormAct
from detkit.modeling.yolo.neck import upsample_to

# YOLOv5/v8's BatchNorm settings, as the rest of the YOLO neck and head (``blocks.ConvBNAct``).
YOLO_NORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.03)


class C2fPANNeck(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: list[int], depth: int = 1) -> None:
        super().__init__()
        (c3, c4, c5), (o3, o4, o5) = in_channels, out_channels
        self.fuse4_top_down = C2f(c5 + c4, o4, depth, shortcut=False, norm_layer=YOLO_NORM)
        self.fuse3 = C2f(o4 + c3, o3, depth, shortcut=False, norm_layer=YOLO_NORM)
        self.down3 = ConvNormAct(o3, o3, 3, 2, YOLO_NORM)
        self.fuse4_bottom_up = C2f(o3 + o4, o4, depth, shortcut=False, norm_layer=YOLO_NORM)
        self.down4 = ConvNormAct(o4, o4, 3, 2, YOLO_NORM)
        self.fuse5 = C2f(o4 + c5, o5, depth, shortcut=False, norm_layer=YOLO_NORM)
        self.out_channels = list(out_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Three maps finest first -> three maps finest first, each at its input's resolution."""
        c3, c4, c5 = features
        top_down4 = self.fuse4_top_down(torch.cat([upsample_to(c5, c4), c4], dim=1))
        p3 = self.fuse3(torch.cat([upsample_to(top_down4, c3), c3], dim=1))
        p4 = self.fuse4_bottom_up(torch.cat([self.down3(p3), top_down4], dim=1))
        p5 = self.fuse5(torch.cat([self.down4(p4), c5], dim=1))
        return [p3, p4, p5]
