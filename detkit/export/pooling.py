"""RoI pooling of one image's boxes from a feature pyramid, inside a graph (``modeling/poolers.py``).

    features: pooled levels ``[1, C, H_l, W_l]`` (float32); boxes ``[R, 4]`` xyxy pixels of the resized image
    -> ``[R, C, S, S]``

The eager pooler skips a level no RoI is assigned to, a branch on tensor contents; here every level
pools its (possibly empty) share, which gives the same tensor. Level assignment is FPN's equation 1,
as in the eager pooler; the kernels are torchvision's ``roi_align`` / ``roi_pool``, which the ONNX
exporter writes as ONNX ``RoiAlign`` / ``MaxRoiPool``.
"""

# No ``from __future__ import annotations``: TorchScript reads the class-level annotations below as types.
import torch
from torch import Tensor, nn
from torchvision.ops import box_area, roi_align, roi_pool

from detkit.modeling.poolers import CANONICAL_LEVEL, RoIPooler


class RoIPoolGraph(nn.Module):
    """The settings of an eager ``RoIPooler`` and its forward for a single image."""

    scales: list[float]

    def __init__(self, pooler: RoIPooler) -> None:
        super().__init__()
        self.kind = pooler.kind
        self.output_size = pooler.output_size[0]
        self.scales = list(pooler.scales)
        self.sampling_ratio = pooler.sampling_ratio
        self.aligned = pooler.aligned
        self.canonical_scale = float(pooler.canonical_scale)
        self.min_level = pooler.min_level
        self.max_level = pooler.max_level
        self.canonical_level = float(CANONICAL_LEVEL)  # an attribute: TorchScript reads no module globals

    def forward(self, features: list[Tensor], boxes: Tensor) -> Tensor:
        rois = torch.cat([boxes.new_zeros((boxes.shape[0], 1)), boxes], dim=1)
        if len(features) == 1:
            return self._pool(features[0], rois, self.scales[0])
        levels = self._levels(boxes)
        pooled = features[0].new_zeros((boxes.shape[0], features[0].shape[1], self.output_size, self.output_size))
        for level, feature in enumerate(features):
            in_level = torch.where(levels == level)[0]
            pooled[in_level] = self._pool(feature, rois[in_level], self.scales[level])
        return pooled

    def _levels(self, boxes: Tensor) -> Tensor:
        """``RoIPooler.assign_levels``: ``[R]`` index into the pooled levels."""
        size = torch.sqrt(box_area(boxes))
        level = torch.floor(
            self.canonical_level + torch.log2(size / self.canonical_scale) + torch.tensor(1e-6, dtype=size.dtype)
        )
        return (torch.clamp(level, min=self.min_level, max=self.max_level) - self.min_level).to(torch.int64)

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        size = [self.output_size, self.output_size]
        if self.kind == "roi_pool":
            maxima: Tensor = roi_pool(feature, rois, size, scale)
            return maxima
        averages: Tensor = roi_align(feature, rois, size, scale, self.sampling_ratio, self.aligned)
        return averages
