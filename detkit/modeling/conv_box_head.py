"""The convolutional box head: 3x3 convs on the pooled RoI map before a single FC layer.

    pooled ``[R, C, S, S]`` -> ``num_convs`` x (3x3 conv, norm?, ReLU) ``[R, D_c, S, S]``
    -> flatten ``[R, D_c * S * S]`` -> fc6 (ReLU) ``[R, D]``

The alternative to Fast R-CNN's two FC layers (``box_head.MLPBoxHead``): Detectron's "4conv1fc" head,
used with normalization by Wu & He ("Group Normalization", ECCV 2018) and, with BatchNorm, by
torchvision's ``fasterrcnn_resnet50_fpn_v2`` / ``maskrcnn_resnet50_fpn_v2`` (Li et al., "Benchmarking
Detection Transfer Learning with Vision Transformers", 2021): convs keep the RoI's spatial layout a
little longer, and with BN the head trains well from scratch. Its output feeds the same ``BoxPredictor``.
"""

from __future__ import annotations

from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.conv_blocks import conv_stack, convs_of
from detkit.modeling.svd import truncated_svd_linear


class ConvFCBoxHead(nn.Module):
    def __init__(
        self,
        in_channels: int,
        resolution: int,
        num_convs: int,
        conv_channels: int,
        representation_size: int,
        norm: str = "none",
    ) -> None:
        """``in_channels`` x ``resolution``^2 pooled maps -> ``representation_size`` features per RoI."""
        super().__init__()
        self.convs = conv_stack(in_channels, conv_channels, num_convs, norm)
        flat = (conv_channels if num_convs else in_channels) * resolution**2
        # A Linear layer, or the pair of them ``truncate`` factorizes it into.
        self.fc6: nn.Linear | nn.Sequential = nn.Linear(flat, representation_size)
        self.out_features = representation_size
        for conv in convs_of(self.convs):
            # He initialization for ReLU convs, as torchvision's FastRCNNConvFCHead; FC keeps torch's default.
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, pooled: Tensor) -> Tensor:
        """``[R, C, S, S]`` -> ``[R, representation_size]``."""
        return F.relu(self.fc6(self.convs(pooled).flatten(1)))

    def truncate(self, rank: int) -> None:
        """Replace fc6 by its rank-``rank`` SVD factorization (inference only; see ``svd``); the convs stay.

        Call it once: a factorized layer has no ``weight`` to factorize again.
        """
        self.fc6 = truncated_svd_linear(cast(nn.Linear, self.fc6), rank)
