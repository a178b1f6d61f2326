"""Fixed-size features for each RoI from a multi-level feature pyramid.

    features: pooled levels ``[N, C, H_l, W_l]`` with strides s_l; boxes: per image ``[R_i, 4]`` xyxy
    -> ``[R, C, S, S]`` with R = sum_i R_i, S = output_size

RoIPool (Fast R-CNN section 2.1) quantizes the RoI to the feature grid; RoIAlign (Mask R-CNN
section 3) samples bilinearly without quantization. With several levels, an RoI of area ``w*h`` is
pooled from level ``k = floor(4 + log2(sqrt(w*h) / canonical_scale))`` clamped to the pyramid (FPN paper,
eq. 1, with canonical_scale = 224).
Both kernels come from torchvision.ops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import box_area, roi_align, roi_pool

from detkit.ops.boxes import boxes_to_rois

CANONICAL_LEVEL = 4
POOLERS = ("roi_align", "roi_pool")


class RoIPooler(nn.Module):
    def __init__(
        self,
        kind: str,
        output_size: int,
        strides: list[int],
        sampling_ratio: int = 2,
        aligned: bool = False,
        canonical_scale: int = 224,
    ) -> None:
        super().__init__()
        if kind not in POOLERS:
            raise ValueError(f"pooler {kind!r} is not one of {POOLERS}")
        self.kind = kind
        self.output_size = (output_size, output_size)
        self.scales = [1.0 / s for s in strides]
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_scale = canonical_scale  # ImageNet's 224: an RoI this big pools from level 4
        self.min_level = int(math.log2(strides[0]))
        self.max_level = int(math.log2(strides[-1]))

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        rois = boxes_to_rois(boxes)
        if len(features) == 1:
            return self._pool(features[0], rois, self.scales[0])
        levels = self.assign_levels(torch.cat(boxes))
        num_channels = features[0].shape[1]
        pooled = features[0].new_zeros((len(rois), num_channels, *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            in_level = torch.where(levels == level)[0]
            if in_level.numel():
                pooled[in_level] = self._pool(feature, rois[in_level], scale).to(pooled.dtype)
        return pooled

    def assign_levels(self, boxes: Tensor) -> Tensor:
        """``[R]`` index into the pooled levels for ``[R, 4]`` boxes (FPN eq. 1; eps guards exact powers of 2)."""
        size = torch.sqrt(box_area(boxes))
        level = torch.floor(
            CANONICAL_LEVEL + torch.log2(size / self.canonical_scale) + torch.tensor(1e-6, dtype=size.dtype)
        )
        return (torch.clamp(level, min=self.min_level, max=self.max_level) - self.min_level).to(torch.int64)

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        pooled: Tensor
        if self.kind == "roi_pool":
            pooled = roi_pool(feature, rois, self.output_size, scale)
        else:
            pooled = roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned)
        return pooled
