"""The R-CNN detector at test time (Girshick et al., CVPR 2014, section 2.2), and its fine-tuning loss.

    image ``[3, H, W]`` in [0, 1] -> selective search proposals ``[R, 4]`` (the shared cache)
    -> warped crops ``[R, 3, S, S]`` -> CNN features ``[R, D]`` (trunk + global average pooling)
    -> per-class linear SVM margins ``[R, K]`` -> per-class ridge box regression -> per-class NMS (0.3)
    -> ``Detections`` in the image's frame; scores are sigmoid(margin), which keeps the SVM ranking in [0, 1]

The SVMs and regressors are buffers filled by the training stages (``engine/rcnn/``), not trained by
backpropagation; only the CNN is, during the optional fine-tuning, through ``forward(images, targets)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from detkit.config import RCNNConfig
from detkit.modeling.backbones import Backbone
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.stages import stage
from detkit.ops.box_coder import BoxCoder
from detkit.ops.boxes import clip_boxes
from detkit.ops.normalizer import loss_normalizer
from detkit.ops.regions import warp_regions
from detkit.ops.selection import select_detections
from detkit.structures import Detections, DetectorOutput, Target

# Regions per CNN pass when the config leaves it to the device (RCNNConfig.feature_batch_size = 0).
CPU_FEATURE_BATCH, GPU_FEATURE_BATCH = 8, 128


@dataclass
class RCNNTally:
    """How many images ``detect`` has seen and how many regions they gave: with the stage times
    (``modeling/stages.py``) this is the paper's cost formula, proposals + regions x CNN time per
    region + SVM scoring and regression + NMS."""

    images: int = 0
    regions: int = 0


class RegionCNN(nn.Module):
    """Warped regions ``[R, 3, S, S]`` -> features ``[R, D]``; ``classifier`` gives K+1 logits for fine-tuning."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.feature_dim = backbone.out_channels
        self.classifier = nn.Linear(self.feature_dim, num_classes + 1)  # background is the last index, K

    def features(self, crops: Tensor) -> Tensor:
        maps: dict[str, Tensor] = self.backbone(crops)
        last = list(maps.values())[-1]
        return last.mean(dim=(2, 3))

    def forward(self, crops: Tensor) -> Tensor:
        logits: Tensor = self.classifier(self.features(crops))
        return logits


class RCNNDetector(nn.Module):
    """The parts (``build_rcnn`` makes them from a ``ModelConfig``): ``proposal_generator`` gives an image's
    selective-search boxes, ``cnn`` its regions' features (K = ``cnn.num_classes``), ``box_coder`` the
    regressors' deltas; ``cfg`` the warp, scoring and NMS settings; ``image_mean`` / ``image_std`` the
    per-channel normalization of the CNN's input. Checkpoints hold the CNN and the four buffers below."""

    mean: Tensor
    std: Tensor
    feature_scale: Tensor
    svm_weight: Tensor
    svm_bias: Tensor
    regressor_weight: Tensor

    def __init__(
        self,
        proposal_generator: PrecomputedProposals,
        cnn: RegionCNN,
        box_coder: BoxCoder,
        cfg: RCNNConfig,
        image_mean: Sequence[float],
        image_std: Sequence[float],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cnn.num_classes
        self.register_buffer("mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(3, 1, 1), persistent=False)
        self.proposal_generator = proposal_generator
        self.cnn = cnn
        dim = cnn.feature_dim
        # Filled by the SVM and regression stages. feature_scale brings features to the SVMs' mean norm.
        self.register_buffer("feature_scale", torch.ones(()))
        self.register_buffer("svm_weight", torch.zeros(self.num_classes, dim))
        self.register_buffer("svm_bias", torch.zeros(self.num_classes))
        self.register_buffer("regressor_weight", torch.zeros(self.num_classes, dim + 1, 4))  # last row: bias
        self.box_coder = box_coder
        self.tally = RCNNTally()

    def normalize(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std

    def feature_batch_size(self, device: torch.device) -> int:
        if self.cfg.feature_batch_size > 0:
            return self.cfg.feature_batch_size
        return CPU_FEATURE_BATCH if device.type == "cpu" else GPU_FEATURE_BATCH

    def region_features(self, image: Tensor, boxes: Tensor) -> Tensor:
        """``[R, D]`` CNN features of ``boxes`` (xyxy pixels of ``image`` ``[3, H, W]`` in [0, 1]), batched."""
        normalized = self.normalize(image)
        chunks = []
        for part in torch.split(boxes, self.feature_batch_size(image.device)):
            with stage("preprocess"):
                crops = warp_regions(normalized, part, self.cfg.crop_size, self.cfg.context_padding)
            with stage("backbone"):
                chunks.append(self.cnn.features(crops))
        return torch.cat(chunks) if chunks else image.new_zeros((0, self.cnn.feature_dim))

    def forward(self, images: list[Tensor], targets: list[Target] | None = None) -> DetectorOutput:
        losses: dict[str, Tensor] = {} if targets is None else {"loss_cls": self.finetune_loss(images, targets)}
        detections: list[Detections] | None = None
        if not self.training:
            detections = [self.detect(image) for image in images]
        return DetectorOutput(losses=losses, detections=detections)

    def finetune_loss(self, images: list[Tensor], targets: list[Target]) -> Tensor:
        """K+1-way cross-entropy on windows drawn from the batch's proposals and ground truths:
        up to ``finetune_fg_per_batch`` with IoU >= ``finetune_fg_iou`` (their box's class), the rest background."""
        crops, labels = [], []
        for image, target in zip(images, targets):
            target = target.without_crowd()
            proposals = target.proposals if target.proposals is not None else self.proposal_generator.compute(image)
            windows = torch.cat([target.boxes, proposals.to(target.boxes)])
            window_labels = torch.full((len(windows),), self.num_classes, dtype=torch.int64, device=windows.device)
            if len(target):
                best_iou, best_gt = box_iou(windows, target.boxes).max(dim=1)
                foreground = best_iou >= self.cfg.finetune_fg_iou
                window_labels[foreground] = target.labels[best_gt[foreground]]
            chosen = self._sample_windows(window_labels, len(images))
            crops.append(
                warp_regions(self.normalize(image), windows[chosen], self.cfg.crop_size, self.cfg.context_padding)
            )
            labels.append(window_labels[chosen])
        logits = self.cnn(torch.cat(crops))
        num_windows = loss_normalizer(len(logits), logits.device)
        return F.cross_entropy(logits, torch.cat(labels), reduction="sum") / num_windows

    def _sample_windows(self, labels: Tensor, num_images: int) -> Tensor:
        """Indices of this image's share of the batch's foreground and background windows, at random."""
        foreground = torch.where(labels < self.num_classes)[0]
        background = torch.where(labels == self.num_classes)[0]
        num_fg = min(len(foreground), max(1, self.cfg.finetune_fg_per_batch // num_images))
        num_bg = min(len(background), max(1, self.cfg.finetune_bg_per_batch // num_images))
        pick_fg = foreground[torch.randperm(len(foreground), device=labels.device)[:num_fg]]
        pick_bg = background[torch.randperm(len(background), device=labels.device)[:num_bg]]
        return torch.cat([pick_fg, pick_bg])

    def svm_margins(self, features: Tensor) -> Tensor:
        """``[R, D]`` raw features -> ``[R, K]`` SVM margins."""
        return (features * self.feature_scale) @ self.svm_weight.T + self.svm_bias

    def regress(self, features: Tensor, boxes: Tensor, labels: Tensor, rows: Tensor | None = None) -> Tensor:
        """Refine ``[R, 4]`` boxes with the ridge regressor of each one's class ``labels`` ``[R]``.

        ``features`` are the boxes' ``[R, D]`` raw CNN features, or with ``rows`` ``[R]`` the ``[P, D]``
        features of the proposals the boxes come from (box ``i`` is proposal ``rows[i]``): one proposal
        scored for many classes is then never copied per class.
        """
        rows = torch.arange(len(boxes), device=boxes.device) if rows is None else rows
        weight, bias = self.regressor_weight[:, :-1], self.regressor_weight[:, -1]  # [K, D, 4], [K, 4]
        # One matrix product per class present, on that class's boxes only. Gathering a [D + 1, 4]
        # regressor per box, or the features per (proposal, class) pair, would hold [R, D] floats at
        # once: 2.3 GB (and 0.6 GB) for the 119,760 boxes 1,497 proposals x 80 classes score.
        deltas = boxes.new_empty((len(boxes), 4))
        for label in torch.unique(labels).tolist():
            chosen = torch.where(labels == label)[0]
            deltas[chosen] = (features[rows[chosen]] * self.feature_scale) @ weight[label] + bias[label]
        return self.box_coder.decode(deltas, boxes)[:, 0]

    @torch.no_grad()
    def detect(self, image: Tensor) -> Detections:
        image_size = (int(image.shape[-2]), int(image.shape[-1]))
        with stage("proposals"):
            proposals = clip_boxes(self.proposal_generator.compute(image).to(image.device), image_size)
        self.tally.images += 1
        self.tally.regions += len(proposals)
        features = self.region_features(image, proposals)
        with stage("svms"):
            scores = torch.sigmoid(self.svm_margins(features))
            roi_index, labels = torch.where(scores > self.cfg.score_thresh)
            boxes = proposals[roi_index]
            if self.cfg.box_regression and len(boxes):
                boxes = clip_boxes(self.regress(features, boxes, labels, rows=roi_index), image_size)
        with stage("postprocess"):
            return select_detections(
                boxes,
                scores[roi_index, labels],
                labels,
                score_thresh=self.cfg.score_thresh,
                nms_thresh=self.cfg.nms_thresh,
                detections_per_image=self.cfg.detections_per_image,
            )
