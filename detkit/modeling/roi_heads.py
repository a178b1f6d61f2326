"""RoI heads: classify each proposal and refine its box (Fast R-CNN, Girshick 2015).

proposals: per image ``[R_i, 4]`` xyxy pixels of the resized image
pooled ``[R, C, S, S]`` -> box head ``[R, D]`` (two FCs, or convs and one FC) -> class logits ``[R, K+1]``
  (background index K), deltas ``[R, K*4]``
training: ground truths join the proposals, each image samples ``batch_size_per_image`` RoIs
  with ``positive_fraction`` foreground (IoU >= fg_iou_thresh) and background in [lo, hi)
losses: softmax cross-entropy over K+1 classes, smooth-L1 on the ground-truth class's deltas of
  foreground RoIs, both averaged over all sampled RoIs (paper eq. 1, lambda = 1)
inference: softmax, per-class decode and clip, score threshold, per-class NMS, top detections
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from detkit.config import RoIHeadsConfig
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.conv_box_head import ConvFCBoxHead
from detkit.modeling.mask_head import MaskBranch
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.rpn import BOX_LOSS_BETA
from detkit.modeling.stages import stage
from detkit.ops.box_coder import BoxCoder
from detkit.ops.boxes import clip_boxes
from detkit.ops.matcher import match_boxes
from detkit.ops.normalizer import loss_normalizer
from detkit.ops.sampler import sample_balanced
from detkit.ops.selection import select_detections
from detkit.structures import Detections, Target

# Either box head maps pooled ``[R, C, S, S]`` to ``[R, D]`` features for the predictor.
BoxHead = MLPBoxHead | ConvFCBoxHead

# Boxes narrower than this (pixels) after decoding are dropped, as torchvision does.
MIN_DETECTION_SIZE = 1e-2


@dataclass
class SampledRoIs:
    """Training RoIs per image: boxes ``[S_i, 4]``, labels ``[S_i]`` in [0, K] (K = background),
    regression targets ``[S_i, 4]`` (zeros for background), matched_gt ``[S_i]``: the index of each
    foreground RoI's ground truth among the image's non-crowd instances (-1 for background)."""

    boxes: list[Tensor]
    labels: list[Tensor]
    regression_targets: list[Tensor]
    matched_gt: list[Tensor]


class RoIHeads(nn.Module):
    def __init__(
        self,
        pooler: RoIPooler,
        box_head: BoxHead,
        box_predictor: BoxPredictor,
        cfg: RoIHeadsConfig,
        mask_branch: MaskBranch | None = None,
    ) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.cfg = cfg
        self.box_coder = BoxCoder(cfg.box_coder_weights)
        self.mask_branch = mask_branch  # Mask R-CNN: masks for positive RoIs in training, for detections after

    @property
    def num_classes(self) -> int:
        return self.box_predictor.num_classes

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Raw predictions for per-image RoI boxes: logits ``[R, K+1]`` and deltas ``[R, K*4]``."""
        predictions: tuple[Tensor, Tensor] = self.box_predictor(self.box_head(self.pooler(features, boxes)))
        return predictions

    def detect(
        self,
        features: list[Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[Target] | None = None,
    ) -> tuple[list[Detections] | None, dict[str, Tensor]]:
        """Losses on sampled RoIs when targets are given; detections on all proposals unless training."""
        losses: dict[str, Tensor] = {}
        if targets is not None:
            sampled = self.sample(proposals, targets)
            class_logits, deltas = self(features, sampled.boxes)
            losses = self.losses(class_logits, deltas, sampled)
            if self.mask_branch is not None:
                losses["loss_mask"] = self._mask_loss(self.mask_branch, features, sampled, targets)
        detections = None
        if not self.training:
            class_logits, deltas = self(features, proposals)
            with stage("postprocess"):
                detections = self.inference(class_logits, deltas, proposals, image_sizes)
            if self.mask_branch is not None:
                with stage("mask_head"):
                    detections = self._attach_masks(self.mask_branch, features, detections)
        return detections, losses

    def _mask_loss(
        self, mask_branch: MaskBranch, features: list[Tensor], sampled: SampledRoIs, targets: list[Target]
    ) -> Tensor:
        """Mask loss on the foreground RoIs of the box head's own sample (Mask R-CNN section 3.1)."""
        boxes, labels, mask_targets = [], [], []
        for image_boxes, image_labels, matched, target in zip(
            sampled.boxes, sampled.labels, sampled.matched_gt, targets
        ):
            foreground = torch.where(image_labels < self.num_classes)[0]
            boxes.append(image_boxes[foreground])
            labels.append(image_labels[foreground])
            gt_masks = target.without_crowd().masks  # None exactly when target.masks is
            if gt_masks is None:
                raise ValueError("Mask R-CNN training needs instance masks: build the dataset with with_masks=True")
            mask_targets.append(mask_branch.targets(gt_masks, image_boxes[foreground], matched[foreground]))
        logits = mask_branch(features, boxes)
        return mask_branch.losses(logits, torch.cat(labels), torch.cat(mask_targets))

    def _attach_masks(
        self, mask_branch: MaskBranch, features: list[Tensor], detections: list[Detections]
    ) -> list[Detections]:
        """``[D, 28, 28]`` RoI-frame mask probabilities on each image's final detections only."""
        logits = mask_branch(features, [d.boxes for d in detections])
        probabilities = mask_branch.inference(logits, torch.cat([d.labels for d in detections]))
        per_image = torch.split(probabilities, [len(d) for d in detections])
        return [replace(d, masks=m) for d, m in zip(detections, per_image)]

    @torch.no_grad()
    def sample(self, proposals: list[Tensor], targets: list[Target]) -> SampledRoIs:
        boxes, labels, regression_targets, matched_gt = [], [], [], []
        for image_proposals, target in zip(proposals, targets):
            target = target.without_crowd()
            # Ground truths join the proposals so every object has at least one perfect RoI early on.
            candidates = torch.cat([image_proposals, target.boxes.to(image_proposals.dtype)])
            match = match_boxes(
                box_iou(target.boxes, candidates),
                self.cfg.fg_iou_thresh,
                self.cfg.bg_iou_thresh_hi,
                self.cfg.bg_iou_thresh_lo,
            )
            fg, bg = sample_balanced(match.kind, self.cfg.batch_size_per_image, self.cfg.positive_fraction)
            chosen = torch.cat([fg, bg])
            image_labels = torch.full((len(chosen),), self.num_classes, dtype=torch.int64, device=candidates.device)
            image_targets = torch.zeros((len(chosen), 4), dtype=candidates.dtype, device=candidates.device)
            image_matched = torch.full((len(chosen),), -1, dtype=torch.int64, device=candidates.device)
            if len(fg):
                matched = match.gt_index[fg]
                image_labels[: len(fg)] = target.labels[matched]
                image_targets[: len(fg)] = self.box_coder.encode(candidates[fg], target.boxes[matched])
                image_matched[: len(fg)] = matched
            boxes.append(candidates[chosen])
            labels.append(image_labels)
            regression_targets.append(image_targets)
            matched_gt.append(image_matched)
        return SampledRoIs(boxes, labels, regression_targets, matched_gt)

    def losses(self, class_logits: Tensor, deltas: Tensor, sampled: SampledRoIs) -> dict[str, Tensor]:
        labels = torch.cat(sampled.labels)
        regression_targets = torch.cat(sampled.regression_targets)
        foreground = torch.where(labels < self.num_classes)[0]
        fg_labels = labels[foreground]
        fg_deltas = deltas.view(len(deltas), self.num_classes, 4)[foreground, fg_labels]
        box_loss = F.smooth_l1_loss(fg_deltas, regression_targets[foreground], beta=BOX_LOSS_BETA, reduction="sum")
        num_sampled = loss_normalizer(labels.numel(), labels.device)
        return {
            "loss_cls": F.cross_entropy(class_logits, labels, reduction="sum") / num_sampled,
            "loss_box": box_loss / num_sampled,
        }

    @torch.no_grad()
    def inference(
        self, class_logits: Tensor, deltas: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[Detections]:
        scores = F.softmax(class_logits, dim=-1)[:, : self.num_classes]
        detections = []
        for image_scores, image_deltas, image_proposals, image_size in zip(
            torch.split(scores, [len(p) for p in proposals]),
            torch.split(deltas, [len(p) for p in proposals]),
            proposals,
            image_sizes,
        ):
            detections.append(self._detect_image(image_scores, image_deltas, image_proposals, image_size))
        return detections

    def _detect_image(
        self, scores: Tensor, deltas: Tensor, proposals: Tensor, image_size: tuple[int, int]
    ) -> Detections:
        """``[R, K]`` foreground scores, ``[R, K*4]`` deltas -> per-class NMS'd detections, best first."""
        # Thresholding before decoding decodes only the candidates: identical boxes, far less work.
        roi_index, labels = torch.where(scores > self.cfg.score_thresh)
        # num_classes, not -1: an image without proposals has [0, 4K] deltas, whose -1 torch cannot infer.
        candidate_deltas = deltas.view(len(deltas), self.num_classes, 4)[roi_index, labels]
        boxes = clip_boxes(self.box_coder.decode(candidate_deltas, proposals[roi_index])[:, 0], image_size)
        return select_detections(
            boxes,
            scores[roi_index, labels],
            labels,
            score_thresh=self.cfg.score_thresh,
            nms_thresh=self.cfg.nms_thresh,
            detections_per_image=self.cfg.detections_per_image,
            min_size=MIN_DETECTION_SIZE,
        )
