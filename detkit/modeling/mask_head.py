"""The Mask R-CNN mask branch (He et al., ICCV 2017, section 3 and figure 4, right: the FPN head).

RoIs (per image ``[R_i, 4]`` xyxy of the resized image) -> pooled ``[R, C, 14, 14]`` (RoIAlign)
-> four 3x3 convs (ReLU; BatchNorm after each with ``norm="bn"``) -> 2x2 stride-2 deconv (ReLU)
-> 1x1 conv: mask logits ``[R, K, 28, 28]``
training: positive RoIs only; target = the matched ground-truth mask resampled onto the RoI's
  28 x 28 grid; per-pixel binary cross-entropy on the ground-truth class's channel only, so
  classes do not compete (the paper's decoupling of masks and classes, Table 2b)
inference: the channel of each detection's predicted class, sigmoid -> ``[D, 28, 28]`` probabilities
  in the RoI frame; the model's transform pastes them into the original image
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.conv_blocks import conv_stack
from detkit.modeling.poolers import RoIPooler
from detkit.ops.masks import mask_targets
from detkit.ops.normalizer import loss_normalizer


class MaskHead(nn.Module):
    """Four 3x3 convs and a 2x deconv: ``[R, C, S, S]`` -> ``[R, D, 2S, 2S]`` features.

    ``norm="bn"`` puts a BatchNorm after every conv (``conv_blocks``): the head of torchvision's
    ``maskrcnn_resnet50_fpn_v2`` (Li et al., "Benchmarking Detection Transfer Learning with Vision
    Transformers", 2021), where normalized heads let the whole detector train from scratch.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_convs: int = 4, norm: str = "none") -> None:
        super().__init__()
        self.convs = conv_stack(in_channels, channels, num_convs, norm)
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, pooled: Tensor) -> Tensor:
        return F.relu(self.deconv(self.convs(pooled)))


class MaskBranch(nn.Module):
    def __init__(self, pooler: RoIPooler, head: MaskHead, num_classes: int, channels: int) -> None:
        super().__init__()
        self.pooler = pooler
        self.head = head
        self.predictor = nn.Conv2d(channels, num_classes, 1)  # one mask per foreground class, no background
        nn.init.kaiming_normal_(self.predictor.weight, mode="fan_out", nonlinearity="relu")
        if self.predictor.bias is not None:  # always, but Conv2d types its bias as optional
            nn.init.zeros_(self.predictor.bias)

    @property
    def resolution(self) -> int:
        return 2 * self.pooler.output_size[0]

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """Mask logits ``[R, K, 2S, 2S]`` for per-image RoI boxes."""
        logits: Tensor = self.predictor(self.head(self.pooler(features, boxes)))
        return logits

    def losses(self, logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        """Mean per-pixel BCE of the ``labels`` ``[R]`` channels of ``logits`` against ``targets`` ``[R, 2S, 2S]``."""
        num_rois = loss_normalizer(len(labels), logits.device)  # before the early return: a collective in DDP
        if len(labels) == 0:
            return logits.sum() * 0
        class_logits = logits[torch.arange(len(labels), device=labels.device), labels]
        loss = F.binary_cross_entropy_with_logits(class_logits, targets, reduction="sum")
        return loss / (num_rois * targets[0].numel())

    def targets(self, gt_masks: Tensor, boxes: Tensor, matched: Tensor) -> Tensor:
        return mask_targets(gt_masks, boxes, matched, self.resolution)

    @staticmethod
    def inference(logits: Tensor, labels: Tensor) -> Tensor:
        """``[D, 2S, 2S]`` probabilities of each detection's own class."""
        return logits[torch.arange(len(labels), device=labels.device), labels].sigmoid()
