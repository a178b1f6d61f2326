"""R-CNN's training regions: the CNN features of an image's ground-truth boxes and proposals, with
what the SVM and regression stages need to know of each (tensors in, tensors out; the engine's
feature cache, ``detkit/engine/rcnn/features.py``, stores them on disk):

    features ``[N, D]`` float16; image_index ``[N]``; boxes ``[N, 4]`` xyxy pixels of the stored image;
    is_gt ``[N]``; labels ``[N]`` (a ground truth's class; for a proposal the class of its best-overlapping
    ground truth, -1 when the image has none); max_iou ``[N]`` with that ground truth (1 for ground truths);
    gt_boxes ``[N, 4]`` that ground truth's box; class_iou ``[N, K]`` float16, best IoU with each class's boxes
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detkit.pipelines.rcnn.model import RCNNDetector

# Images per shard of the engine's feature cache: small enough that data-parallel processes share even a
# small dataset's extraction. (Defined here, below the engine, because tests/engine/test_distributed.py
# imports it from this module; the cache in engine/rcnn/features.py is its only user.)
SHARD_IMAGES = 16


@dataclass
class RegionSet:
    features: Tensor
    image_index: Tensor
    boxes: Tensor
    is_gt: Tensor
    labels: Tensor
    max_iou: Tensor
    gt_boxes: Tensor
    class_iou: Tensor

    def __len__(self) -> int:
        return len(self.features)

    @staticmethod
    def concat(parts: list[RegionSet]) -> RegionSet:
        return RegionSet(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(RegionSet)})


def image_regions(
    model: RCNNDetector,
    image: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    proposals: Tensor,
    image_index: int,
) -> RegionSet:
    """The regions of one image (ground truths first, then proposals) with their features and overlaps."""
    boxes = torch.cat([gt_boxes, proposals.to(gt_boxes)])
    num_gt, num_classes = len(gt_boxes), model.num_classes
    labels = torch.full((len(boxes),), -1, dtype=torch.int64)
    max_iou = torch.zeros(len(boxes))
    matched = torch.zeros((len(boxes), 4))
    class_iou = torch.zeros((len(boxes), num_classes))
    if num_gt:
        iou = box_iou(boxes, gt_boxes)  # [N, M]
        max_iou, best = iou.max(dim=1)
        labels, matched = gt_labels[best], gt_boxes[best]
        for k in range(num_classes):
            of_class = gt_labels == k
            if of_class.any():
                class_iou[:, k] = iou[:, of_class].amax(dim=1)
    features = model.region_features(image.to(model.svm_weight.device), boxes.to(model.svm_weight.device)).cpu()
    return RegionSet(
        features=features.half(),
        image_index=torch.full((len(boxes),), image_index, dtype=torch.int64),
        boxes=boxes,
        is_gt=torch.arange(len(boxes)) < num_gt,
        labels=labels,
        max_iou=max_iou,
        gt_boxes=matched,
        class_iou=class_iou.half(),
    )
