"""R-CNN's feature cache: the CNN features of every ground-truth box and proposal of a dataset, once.

Written as float16 shards of ``SHARD_IMAGES`` images (``shard-00000.pt`` ...) in a folder named by
the cache key, so an interrupted extraction resumes at its first missing shard and features of
another CNN, dataset or proposal setting are never read. Everything the SVM and regression stages
need per region is stored beside its feature:

    features ``[N, D]`` float16; image_index ``[N]``; boxes ``[N, 4]`` xyxy pixels of the stored image;
    is_gt ``[N]``; labels ``[N]`` (a ground truth's class; for a proposal the class of its best-overlapping
    ground truth, -1 when the image has none); max_iou ``[N]`` with that ground truth (1 for ground truths);
    gt_boxes ``[N, 4]`` that ground truth's box; class_iou ``[N, K]`` float16, best IoU with each class's boxes
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detkit.data.coco import CocoDetection
from detkit.io import atomic_write
from detkit.pipelines.rcnn.model import RCNNDetector

SHARD_IMAGES = 16  # small enough that data-parallel processes share even a small dataset's extraction


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
    def concat(parts: list["RegionSet"]) -> "RegionSet":
        return RegionSet(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(RegionSet)})


def image_regions(model: RCNNDetector, image: Tensor, gt_boxes: Tensor, gt_labels: Tensor, proposals: Tensor, image_index: int) -> RegionSet:
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
        features=features.half(), image_index=torch.full((len(boxes),), image_index, dtype=torch.int64), boxes=boxes,
        is_gt=torch.arange(len(boxes)) < num_gt, labels=labels, max_iou=max_iou, gt_boxes=matched, class_iou=class_iou.half(),
    )


@torch.no_grad()
def write_feature_shards(
    model: RCNNDetector, dataset: CocoDetection, folder: Path, on_progress: Callable[[int], None] = lambda done: None,
    rank: int = 0, world_size: int = 1,
) -> None:
    """Compute and write the features of every region of ``dataset`` (non-crowd ground truths + the
    proposals its targets carry) in the missing shards that are this process's: shard ``s`` belongs to
    rank ``s % world_size``; existing shards are kept (an interrupted extraction resumes)."""
    model.eval()
    for shard_index, start in enumerate(range(0, len(dataset), SHARD_IMAGES)):
        stop = min(start + SHARD_IMAGES, len(dataset))
        shard = _shard_path(folder, shard_index)
        if shard_index % world_size == rank and not shard.is_file():
            merged = RegionSet.concat([_regions_of(model, dataset, index) for index in range(start, stop)])
            atomic_write(shard, lambda handle: torch.save(dict(merged.__dict__), handle))
        on_progress(stop)


def read_feature_shards(folder: Path, num_images: int) -> RegionSet:
    """Every shard of a dataset of ``num_images`` images, concatenated in image order."""
    shards = [_shard_path(folder, index) for index in range(-(-num_images // SHARD_IMAGES))]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: feature shards {missing[:3]} missing; extract features first")
    return RegionSet.concat([RegionSet(**torch.load(shard, weights_only=True)) for shard in shards])


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:05d}.pt"


def shard_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("shard-*.pt"))


def _regions_of(model: RCNNDetector, dataset: CocoDetection, index: int) -> RegionSet:
    image, target = dataset[index]
    if target.proposals is None:
        raise ValueError("write_feature_shards needs a dataset that attaches proposals (CocoDetection(proposals=...))")
    target = target.without_crowd()
    return image_regions(model, image, target.boxes, target.labels, target.proposals, index)
