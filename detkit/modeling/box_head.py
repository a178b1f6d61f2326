"""The Fast R-CNN box head (Girshick 2015, section 2) on pooled RoI features.

pooled ``[R, C, S, S]`` -> fc6, fc7 (ReLU) ``[R, D]`` -> class logits ``[R, K+1]`` (background
is the LAST column, index K) and class-specific deltas ``[R, K*4]`` (class k at columns 4k..4k+3).
"""

from __future__ import annotations

from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.svd import truncated_svd_linear


class MLPBoxHead(nn.Module):
    def __init__(self, in_features: int, representation_size: int) -> None:
        super().__init__()
        # Linear layers, or the pairs of them ``truncate`` factorizes them into.
        self.fc6: nn.Linear | nn.Sequential = nn.Linear(in_features, representation_size)
        self.fc7: nn.Linear | nn.Sequential = nn.Linear(representation_size, representation_size)
        self.out_features = representation_size

    def forward(self, pooled: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(1)))))

    def truncate(self, rank: int) -> None:
        """Replace fc6 and fc7 by their rank-``rank`` SVD factorizations (inference only; see ``svd``).

        Call it once: a factorized layer has no ``weight`` to factorize again.
        """
        self.fc6 = truncated_svd_linear(cast(nn.Linear, self.fc6), rank)
        self.fc7 = truncated_svd_linear(cast(nn.Linear, self.fc7), rank)


class BoxPredictor(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)
        # Small initial deltas keep early proposals near their RoIs (Fast R-CNN initialization).
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.constant_(self.bbox_pred.bias, 0)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(features), self.bbox_pred(features)
