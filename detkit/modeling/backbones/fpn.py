"""Feature Pyramid Network (Lin et al., CVPR 2017, section 3).

    trunk features, finest first: ``[N, C_i, H_i, W_i]`` for i = 1..L
    -> pyramid levels, finest first: ``[N, D, H_i, W_i]`` for i = 1..L, then ``[N, D, ceil(H_L/2), ceil(W_L/2)]``
       when ``extra_pool`` (D = ``out_channels``)

Each level is a 1x1 lateral conv of the trunk map plus the nearest-neighbour upsampled level above
it, smoothed by a 3x3 conv (each conv followed by BatchNorm with ``norm="bn"``); the extra level is
a stride-2 subsampling of the coarsest output (the paper's P6 for the RPN, section 4.1). The ops,
their order and the initialisation are those of ``torchvision.ops.FeaturePyramidNetwork`` with
``LastLevelMaxPool`` (and ``norm_layer=BatchNorm2d`` for ``"bn"``), so torchvision's weights give
torchvision's outputs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.conv_blocks import conv_norm, convs_of


class FeaturePyramid(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, extra_pool: bool = True, norm: str = "none") -> None:
        """``norm="bn"`` follows every lateral and output conv by a BatchNorm (``conv_blocks``): each is
        then ``Sequential(conv, norm)`` instead of a bare conv, as in torchvision's ``*_v2`` detectors."""
        super().__init__()
        self.lateral_convs = nn.ModuleList(_conv(c, out_channels, 1, norm) for c in in_channels)
        self.output_convs = nn.ModuleList(_conv(out_channels, out_channels, 3, norm) for _ in in_channels)
        self.extra_pool = extra_pool
        self.out_channels = out_channels
        for conv in convs_of(self):
            # Detectron's "c2_xavier_fill", which torchvision's FPN also uses.
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:  # a conv before a norm has none
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
            # In place: the conv's (or norm's) backward needs its input, not its output, so this saves a copy.
            top_down = lateral.add_(F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest"))
            levels.append(self.output_convs[i](top_down))
        levels.reverse()
        if self.extra_pool:
            levels.append(F.max_pool2d(levels[-1], kernel_size=1, stride=2, padding=0))
        return levels


def _conv(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Module:
    """A bare conv without norm (the names FPN checkpoints have always had), else ``Sequential(conv, norm)``."""
    layers = conv_norm(in_channels, out_channels, kernel_size, norm, relu=False)
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
