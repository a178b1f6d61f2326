"""Letterbox resizing for the single-shot detector (YOLOv3's "letterbox", Redmon & Farhadi 2018).

    images: list of ``[3, H_i, W_i]`` float tensors in [0, 1]; targets in the same frames
    -> ImageBatch.tensors ``[N, 3, H_pad, W_pad]``: normalized; each image scaled so its longer side
       is ``side`` with its aspect ratio kept (``letterbox``) or stretched to ``side x side``
       (``letterbox=False``), placed at the top left; image_sizes are the scaled sizes, the frame
       of every box inside the model

Training pads every batch to ``side x side`` and picks ``side`` per batch from ``train_sizes``
(multi-scale training, YOLOv2 section 2); inference pads only to the batch's largest image rounded
up to the coarsest stride, so a 4:3 image costs 3/4 of a square one ("rectangular inference").
Padding is zero after normalization: the dataset mean colour.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.modeling.transform import pad_images, resize_target
from detkit.ops.boxes import clip_boxes, scale_boxes
from detkit.structures import Detections, ImageBatch, Target


class LetterboxTransform(nn.Module):
    mean: Tensor
    std: Tensor

    def __init__(
        self,
        side: int,
        train_sizes: tuple[int, ...],
        letterbox: bool,
        image_mean: tuple[float, ...],
        image_std: tuple[float, ...],
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.side = side
        self.train_sizes = tuple(train_sizes) or (side,)
        self.letterbox = letterbox
        self.size_divisible = size_divisible
        self.register_buffer("mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(3, 1, 1), persistent=False)

    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[ImageBatch, list[Target] | None]:
        side = self._pick_side()
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        scaled_sizes = [self._scaled_size(size, side) for size in original_sizes]
        resized = [
            F.interpolate(((img - self.mean) / self.std)[None], size=size, mode="bilinear", align_corners=False)[0]
            for img, size in zip(images, scaled_sizes)
        ]
        min_size = (side, side) if self.training else (0, 0)
        batch = ImageBatch(
            pad_images(resized, self.size_divisible, min_size), scaled_sizes, original_sizes, list(images)
        )
        if targets is None:
            return batch, None
        return batch, [
            resize_target(t, original, scaled) for t, original, scaled in zip(targets, original_sizes, scaled_sizes)
        ]

    def postprocess(self, detections: list[Detections], batch: ImageBatch) -> list[Detections]:
        """Boxes from each scaled image back to its original frame, clipped to it."""
        return [
            replace(dets, boxes=clip_boxes(scale_boxes(dets.boxes, scaled, original), original))
            for dets, scaled, original in zip(detections, batch.image_sizes, batch.original_sizes)
        ]

    def _pick_side(self) -> int:
        if self.training and len(self.train_sizes) > 1:
            return self.train_sizes[int(torch.randint(len(self.train_sizes), (1,)).item())]
        return self.train_sizes[0] if self.training else self.side

    def _scaled_size(self, size: tuple[int, int], side: int) -> tuple[int, int]:
        if not self.letterbox:
            return (side, side)
        height, width = size
        scale = side / max(height, width)
        return (max(1, round(height * scale)), max(1, round(width * scale)))
