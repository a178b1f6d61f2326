"""Proposal recall: the fraction of ground-truth objects some proposal covers at IoU >= t.

Recall at a fixed proposal budget is how proposal methods are compared (Hosang et al., TPAMI 2016):
a detector can only find what its proposals cover. Crowd regions are not objects to recall.

    proposals: ``[P, 4]`` xyxy pixels; gt boxes ``[M, 4]`` in the same frame; gt labels ``[M]`` in [0, K)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

IOU_THRESHOLDS = (0.5, 0.7)


@dataclass
class ProposalRecall:
    """Recall per IoU threshold, overall and per class, over ``num_images`` images."""

    recall: dict[float, float]
    per_class: dict[str, dict[float, float]]
    num_objects: int
    objects_per_class: dict[str, int]
    num_images: int
    proposals_per_image: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "proposals_per_image": self.proposals_per_image,
            "num_objects": self.num_objects,
            "recall": {str(t): r for t, r in self.recall.items()},
            "per_class": {
                name: {"objects": self.objects_per_class[name], **{f"recall@{t}": r for t, r in values.items()}}
                for name, values in self.per_class.items()
            },
        }


@dataclass
class RecallCounter:
    """Accumulates covered objects image by image, so proposals never need to be held all at once."""

    class_names: list[str]
    thresholds: tuple[float, ...] = IOU_THRESHOLDS
    _covered: Tensor = field(init=False)  # [len(thresholds), K]
    _objects: Tensor = field(init=False)  # [K]
    _images: int = field(init=False, default=0)
    _proposals: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._covered = torch.zeros((len(self.thresholds), len(self.class_names)), dtype=torch.int64)
        self._objects = torch.zeros(len(self.class_names), dtype=torch.int64)

    def add(self, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> None:
        self._images += 1
        self._proposals += len(proposals)
        if len(gt_boxes) == 0:
            return
        self._objects += torch.bincount(gt_labels, minlength=len(self.class_names))
        best_iou = box_iou(gt_boxes, proposals).amax(dim=1) if len(proposals) else gt_boxes.new_zeros(len(gt_boxes))
        for row, threshold in enumerate(self.thresholds):
            covered = gt_labels[best_iou >= threshold]
            self._covered[row] += torch.bincount(covered, minlength=len(self.class_names))

    def result(self) -> ProposalRecall:
        total = int(self._objects.sum())
        recall = {t: float(self._covered[row].sum()) / max(total, 1) for row, t in enumerate(self.thresholds)}
        per_class = {
            name: {
                t: float(self._covered[row, k]) / max(int(self._objects[k]), 1) for row, t in enumerate(self.thresholds)
            }
            for k, name in enumerate(self.class_names)
        }
        return ProposalRecall(
            recall=recall,
            per_class=per_class,
            num_objects=total,
            objects_per_class={name: int(self._objects[k]) for k, name in enumerate(self.class_names)},
            num_images=self._images,
            proposals_per_image=self._proposals / max(self._images, 1),
        )
