"""Feature Pyramid Network (Lin et al., CVPR 2017, section 3).

    trunk features, finest first: ``[N, C_i, H_i, W_i]`` for i = 1..L
    -> pyramid levels, finest first: ``[N, D, H_i, W_i]`` for i = 1..L, then ``[N, D, ceil(H_L/2), ceil(W_L/2)]``
       when ``extra_pool`` (D = ``out_channels``)

Each level is a 1x1 lateral conv of the trunk map plus the nearest-neighbour upsampled level above
it, smoothed by a 3x3 conv; the extra level is a stride-2 subsampling of the coarsest output (the
paper's P6 for the RPN, section 4.1). The ops, their order and the initialisation are those of
``torchvision.ops.FeaturePyramidNetwork`` with ``LastLevelMaxPool``, so torchvision's weights give
torchvision's outputs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FeaturePyramid(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, extra_pool: bool = True) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_pool = extra_pool
        self.out_channels = out_channels
        for conv in (*self.lateral_convs, *self.output_convs):
            # Detectron's "c2_xavier_fill", which torchvision's FPN also uses.
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    @property
    def num_levels(self) -> int:
        return len(self.lateral_convs) + int(self.extra_pool)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """``L`` maps ``[N, C_i, H_i, W_i]`` finest first -> ``num_levels`` maps ``[N, D, ., .]`` finest first."""
        top_down = self.lateral_convs[-1](features[-1])
        levels = [self.output_convs[-1](top_down)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral_convs[i](features[i])
            # Upsample to the lateral's exact size (not x2): odd sizes round differently per level.
            # In place: the conv's backward needs its input, not its output, so this saves a copy.
            top_down = lateral.add_(F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest"))
            levels.append(self.output_convs[i](top_down))
        levels.reverse()
        if self.extra_pool:
            levels.append(F.max_pool2d(levels[-1], kernel_size=1, stride=2, padding=0))
        return levels
