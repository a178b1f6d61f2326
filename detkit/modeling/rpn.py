"""Region Proposal Network (Ren et al., NeurIPS 2015, section 3.1).

    features: per level ``[N, C, H_l, W_l]``; A anchors per location; T = sum_l H_l * W_l * A
    head (shared 3x3 convs, then 1x1) -> objectness logits per level ``[N, A, H_l, W_l]``,
        deltas per level ``[N, A*4, H_l, W_l]``
    flattened -> objectness ``[N, T]``, deltas ``[N, T, 4]`` (row, column, anchor order, like the anchors)
    inference -> per image ``[R_i, 4]`` proposals, xyxy pixels of the resized image, R_i <= post-NMS top-k

Training samples 256 anchors per image, half foreground (IoU >= 0.7 or a ground truth's best
anchor), and optimises binary cross-entropy on objectness plus smooth-L1 on the foreground deltas
(equation 1 of the paper, normalized by the number of sampled anchors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from detkit.config import RPNConfig
from detkit.modeling.anchors import AnchorGenerator
from detkit.modeling.conv_blocks import conv_stack, convs_of
from detkit.ops.box_coder import BoxCoder
from detkit.ops.boxes import clip_boxes, nonempty_boxes
from detkit.ops.matcher import FOREGROUND, match_boxes
from detkit.ops.normalizer import loss_normalizer
from detkit.ops.sampler import sample_balanced
from detkit.structures import ImageBatch, Target

# Smooth-L1 transition point for box losses; 1/9 as in Detectron and torchvision.
BOX_LOSS_BETA = 1.0 / 9


class RPNHead(nn.Module):
    """``num_convs`` 3x3 convs (ReLU) shared by all levels, then 1x1 convs for A objectness logits and A*4 deltas.

    One conv is the paper's head; torchvision's ``*_v2`` detectors stack two (``RPNHead(conv_depth=2)``).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 1) -> None:
        super().__init__()
        self.conv = conv_stack(in_channels, in_channels, num_convs, norm="none")
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in convs_of(self):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:  # always, but Conv2d types its bias as optional
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        objectness, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            objectness.append(self.cls_logits(hidden))
            deltas.append(self.bbox_pred(hidden))
        return objectness, deltas


@dataclass
class RPNPredictions:
    """objectness: ``[N, T]`` logits. deltas: ``[N, T, 4]``. num_anchors_per_level: T split by level."""

    objectness: Tensor
    deltas: Tensor
    num_anchors_per_level: list[int]


class RegionProposalNetwork(nn.Module):
    stage_name = "rpn"

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, cfg: RPNConfig) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.cfg = cfg
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def propose(
        self, batch: ImageBatch, features: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per image (resized frame) and, when targets are given, the RPN losses."""
        predictions = self(features)
        anchors = self.anchor_generator(batch.padded_size, [tuple(f.shape[-2:]) for f in features], features[0].device)
        proposals = self.inference(predictions, anchors, batch.image_sizes)
        losses = self.losses(predictions, torch.cat(anchors), targets) if targets is not None else {}
        return proposals, losses

    def forward(self, features: list[Tensor]) -> RPNPredictions:
        objectness, deltas = self.head(features)
        num_images = features[0].shape[0]
        return RPNPredictions(
            objectness=torch.cat([o.permute(0, 2, 3, 1).reshape(num_images, -1) for o in objectness], dim=1),
            deltas=torch.cat([_flatten_deltas(d) for d in deltas], dim=1),
            num_anchors_per_level=[o.shape[1] * o.shape[2] * o.shape[3] for o in objectness],
        )

    @torch.no_grad()
    def inference(
        self, predictions: RPNPredictions, anchors: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[Tensor]:
        """Top-k per level by objectness, decode, clip, drop tiny boxes, NMS per level, top-k per image."""
        pre_nms_topk = self.cfg.pre_nms_topk_train if self.training else self.cfg.pre_nms_topk_test
        post_nms_topk = self.cfg.post_nms_topk_train if self.training else self.cfg.post_nms_topk_test
        index, levels = _top_k_per_level(predictions.objectness, predictions.num_anchors_per_level, pre_nms_topk)
        all_anchors = torch.cat(anchors)
        rows = torch.arange(len(image_sizes), device=index.device)[:, None]
        objectness = torch.sigmoid(predictions.objectness[rows, index])
        # Decoding only the top-k anchors gives the same boxes as decoding all of them, far cheaper.
        deltas = predictions.deltas[rows, index]
        proposals = []
        for image_index, image_size in enumerate(image_sizes):
            boxes = self.box_coder.decode(deltas[image_index], all_anchors[index[image_index]])[:, 0]
            proposals.append(self._filter(boxes, objectness[image_index], levels, image_size, post_nms_topk))
        return proposals

    def _filter(self, boxes: Tensor, scores: Tensor, levels: Tensor, image_size: tuple[int, int], topk: int) -> Tensor:
        boxes = clip_boxes(boxes, image_size)
        keep = nonempty_boxes(boxes, self.cfg.min_size) & (scores >= self.cfg.score_thresh)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, self.cfg.nms_thresh)[:topk]
        return boxes[keep]

    def losses(self, predictions: RPNPredictions, anchors: Tensor, targets: list[Target]) -> dict[str, Tensor]:
        """Objectness BCE and foreground smooth-L1 over a balanced sample of ``[T, 4]`` anchors per image."""
        sampled, labels, deltas_pred, deltas_target = [], [], [], []
        for image_index, target in enumerate(targets):
            target = target.without_crowd()
            match = match_boxes(
                box_iou(target.boxes, anchors),
                self.cfg.fg_iou_thresh,
                self.cfg.bg_iou_thresh,
                allow_low_quality_matches=True,
            )
            fg, bg = sample_balanced(match.kind, self.cfg.batch_size_per_image, self.cfg.positive_fraction)
            image_sampled = torch.cat([fg, bg])
            sampled.append(predictions.objectness[image_index, image_sampled])
            labels.append((match.kind[image_sampled] == FOREGROUND).to(predictions.objectness.dtype))
            deltas_pred.append(predictions.deltas[image_index, fg])
            deltas_target.append(self.box_coder.encode(anchors[fg], target.boxes[match.gt_index[fg]]))
        objectness, objectness_targets = torch.cat(sampled), torch.cat(labels)
        num_sampled = loss_normalizer(objectness.numel(), objectness.device)
        box_loss = F.smooth_l1_loss(
            torch.cat(deltas_pred), torch.cat(deltas_target), beta=BOX_LOSS_BETA, reduction="sum"
        )
        return {
            "loss_rpn_cls": F.binary_cross_entropy_with_logits(objectness, objectness_targets, reduction="sum")
            / num_sampled,
            "loss_rpn_box": box_loss / num_sampled,
        }


def _flatten_deltas(deltas: Tensor) -> Tensor:
    """``[N, A*4, H, W]`` -> ``[N, H*W*A, 4]`` in the anchors' (row, column, anchor) order."""
    num_images, channels, height, width = deltas.shape
    return deltas.view(num_images, channels // 4, 4, height, width).permute(0, 3, 4, 1, 2).reshape(num_images, -1, 4)


def _top_k_per_level(objectness: Tensor, num_per_level: list[int], k: int) -> tuple[Tensor, Tensor]:
    """Indices ``[N, sum_l min(k, T_l)]`` of each level's top-k logits, and each kept index's level."""
    indices, levels, offset = [], [], 0
    for level, count in enumerate(num_per_level):
        level_k = min(k, count)
        _, top = objectness[:, offset : offset + count].detach().topk(level_k, dim=1)
        indices.append(top + offset)
        levels.append(torch.full((level_k,), level, dtype=torch.int64, device=objectness.device))
        offset += count
    return torch.cat(indices, dim=1), torch.cat(levels)
