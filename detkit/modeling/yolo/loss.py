"""YOLO training losses (YOLOX section 2.1-2.3) given SimOTA's assignment.

    DensePredictions over P points of N images, decoded boxes ``[N, P, 4]`` xyxy pixels of the
    letterboxed input, targets in that frame -> {"loss_cls", "loss_box", "loss_obj"}

- loss_obj: BCE of every point's objectness against "assigned to a box", except points whose
  centre lies in a crowd region (neither object nor background: they are not scored).
- loss_cls: BCE of foreground points' class logits against one-hot * IoU of their prediction: the
  class score learns to predict localisation quality too (YOLOX's IoU-aware target).
- loss_box: 1 - GIoU (or CIoU) of foreground predictions with their boxes (YOLOX weighs it 5x in the
  total: ``solver.loss_weights.loss_box``, applied by the engine).

All three are summed and divided by the number of foreground points in the batch (at least 1), so an
image without objects adds objectness negatives only and its box loss is exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import complete_box_iou_loss, generalized_box_iou_loss

from detkit.config import YOLOConfig
from detkit.errors import ConfigError
from detkit.modeling.yolo.assigner import points_in_boxes, simota_assign
from detkit.modeling.yolo.head import DensePredictions
from detkit.ops.normalizer import loss_normalizer
from detkit.structures import Target

# (pred_boxes, gt_boxes, reduction=...) -> loss; both take ``[F, 4]`` xyxy boxes.
BOX_LOSSES: dict[str, Callable[..., Tensor]] = {"giou": generalized_box_iou_loss, "ciou": complete_box_iou_loss}


class YOLOLoss:
    def __init__(self, cfg: YOLOConfig) -> None:
        if cfg.box_loss not in BOX_LOSSES:
            raise ConfigError(f"model.yolo.box_loss={cfg.box_loss!r} is unknown; valid: {', '.join(BOX_LOSSES)}")
        self.cfg = cfg
        self.box_loss = BOX_LOSSES[cfg.box_loss]

    def __call__(
        self, predictions: DensePredictions, boxes: Tensor, points: Tensor, strides: Tensor, targets: list[Target]
    ) -> dict[str, Tensor]:
        cls_logits, obj_logits = predictions.cls_logits, predictions.obj_logits
        scores = cls_logits.detach().sigmoid() * obj_logits.detach().sigmoid()[..., None]  # what the assigner costs
        obj_target = torch.zeros_like(obj_logits)
        obj_weight = torch.ones_like(obj_logits)
        fg_cls_logits, fg_boxes, cls_targets, box_targets = [], [], [], []
        for image, target in enumerate(targets):
            obj_weight[image] = (~points_in_boxes(points, target.boxes[target.iscrowd]).any(dim=0)).float()
            target = target.without_crowd()
            assignment = simota_assign(
                boxes[image].detach(),
                scores[image],
                points,
                strides,
                target.boxes,
                target.labels,
                center_radius=self.cfg.center_radius,
                candidate_topk=self.cfg.candidate_topk,
                iou_cost_weight=self.cfg.iou_cost_weight,
            )
            foreground = assignment.foreground
            obj_target[image, foreground] = 1.0
            obj_weight[image, foreground] = 1.0
            fg_cls_logits.append(cls_logits[image, foreground])
            fg_boxes.append(boxes[image, foreground])
            labels = target.labels[assignment.matched_gt]
            cls_targets.append(
                F.one_hot(labels, cls_logits.shape[-1]).to(cls_logits.dtype) * assignment.matched_iou[:, None]
            )
            box_targets.append(target.boxes[assignment.matched_gt])
        num_foreground = loss_normalizer(sum(len(b) for b in box_targets), obj_logits.device)
        pred_fg_logits, pred_fg_boxes = torch.cat(fg_cls_logits), torch.cat(fg_boxes)
        loss_obj = F.binary_cross_entropy_with_logits(obj_logits, obj_target, weight=obj_weight, reduction="sum")
        loss_cls = F.binary_cross_entropy_with_logits(pred_fg_logits, torch.cat(cls_targets), reduction="sum")
        # float32: GIoU of half-precision boxes loses the small differences that matter near convergence.
        loss_box = self.box_loss(pred_fg_boxes.float(), torch.cat(box_targets).float(), reduction="sum")
        return {
            "loss_cls": loss_cls / num_foreground,
            "loss_box": loss_box / num_foreground,
            "loss_obj": loss_obj / num_foreground,
        }
