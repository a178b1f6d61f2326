"""The decoupled anchor-free head (YOLOX, Ge et al. 2021, section 2.1 and figure 2).

    neck maps ``[N, C_l, H_l, W_l]`` for levels l at strides 8, 16, 32
    -> DensePredictions over the P = sum_l H_l * W_l points (row-major per level, finest level first):
       cls_logits ``[N, P, K]``, box_deltas ``[N, P, 4]`` (decode.py turns them into xyxy pixels),
       obj_logits ``[N, P]``

Every level has its own 1x1 stem, then two branches of 3x3 convs: one for the K class logits, one
for the box and the objectness logit. Separating classification from regression (YOLOX table 2:
+1.1 AP over YOLOv3's coupled head) lets each branch learn features suited to its task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detkit.modeling.yolo.blocks import ConvBNAct

# Initial foreground probability of every class and objectness logit (RetinaNet section 4.1): without
# it the many background points swamp the first steps with a huge loss.
PRIOR_PROBABILITY = 0.01


@dataclass
class DensePredictions:
    """Raw head outputs, levels concatenated finest first; ``feature_sizes`` is each level's (H, W)."""

    cls_logits: Tensor
    box_deltas: Tensor
    obj_logits: Tensor
    feature_sizes: list[tuple[int, int]]


class DecoupledHead(nn.Module):
    def __init__(self, in_channels: list[int], num_classes: int, channels: int, num_convs: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stems = nn.ModuleList(ConvBNAct(c, channels, 1) for c in in_channels)
        self.cls_branches = nn.ModuleList(_branch(channels, num_convs) for _ in in_channels)
        self.reg_branches = nn.ModuleList(_branch(channels, num_convs) for _ in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(channels, num_classes, 1) for _ in in_channels)
        self.box_preds = nn.ModuleList(nn.Conv2d(channels, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in in_channels)
        prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        for conv in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(conv.bias, prior_bias)

    def forward(self, features: list[Tensor]) -> DensePredictions:
        cls_logits, box_deltas, obj_logits = self.predict(features)
        return DensePredictions(
            cls_logits=cls_logits,
            box_deltas=box_deltas,
            obj_logits=obj_logits,
            feature_sizes=[(int(x.shape[-2]), int(x.shape[-1])) for x in features],
        )

    def predict(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The dense outputs alone: cls_logits ``[N, P, K]``, box_deltas ``[N, P, 4]``, obj_logits
        ``[N, P]``. The exported graph calls this: ``forward``'s ``int()`` of the map sizes is a size that
        ``torch.export`` only knows when the graph runs."""
        cls_logits, box_deltas, obj_logits = [], [], []
        for level, x in enumerate(features):
            x = self.stems[level](x)
            cls_features = self.cls_branches[level](x)
            reg_features = self.reg_branches[level](x)
            cls_logits.append(_flatten(self.cls_preds[level](cls_features)))
            box_deltas.append(_flatten(self.box_preds[level](reg_features)))
            obj_logits.append(_flatten(self.obj_preds[level](reg_features)))
        return torch.cat(cls_logits, dim=1), torch.cat(box_deltas, dim=1), torch.cat(obj_logits, dim=1)[..., 0]


def _branch(channels: int, num_convs: int) -> nn.Sequential:
    return nn.Sequential(*(ConvBNAct(channels, channels, 3) for _ in range(num_convs)))


def _flatten(x: Tensor) -> Tensor:
    """``[N, C, H, W]`` -> ``[N, H * W, C]``, points in row-major order."""
    return x.flatten(2).transpose(1, 2)
