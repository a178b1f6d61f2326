"""Image preparation before the backbone, and mapping detections back afterwards.

    images: list of ``[3, H_i, W_i]`` float tensors in [0, 1], any sizes
    -> ImageBatch.tensors ``[N, 3, H_pad, W_pad]``: normalized, each image resized so its shorter
       side is ``min_size`` (capped so its longer side stays <= ``max_size``), zero-padded to a
       multiple of ``size_divisible`` (the coarsest feature stride) at the bottom and right.

Training picks ``min_size`` at random from the configured tuple per image: multi-scale training
(Faster R-CNN section 3.3 used one scale; detectron-style multi-scale adds ~1 AP). The arithmetic
matches torchvision's GeneralizedRCNNTransform exactly, so imported weights give identical detections.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.config import TransformConfig
from detkit.ops.boxes import scale_boxes
from detkit.ops.masks import paste_masks
from detkit.structures import Detections, ImageBatch, Target


class ImageTransform(nn.Module):
    mean: Tensor
    std: Tensor

    def __init__(self, cfg: TransformConfig) -> None:
        super().__init__()
        self.min_size = tuple(cfg.min_size)
        self.max_size = cfg.max_size
        self.size_divisible = cfg.size_divisible
        self.register_buffer("mean", torch.tensor(cfg.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.image_std).view(3, 1, 1), persistent=False)

    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[ImageBatch, list[Target] | None]:
        """Normalize, resize and pad; targets are resized into the same frame as their image."""
        resized_images, resized_targets = [], []
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        for index, image in enumerate(images):
            image = (image - self.mean) / self.std
            image = self._resize(image, self._pick_min_size())
            resized_images.append(image)
            if targets is not None:
                resized_targets.append(resize_target(targets[index], original_sizes[index], _size_of(image)))
        batch = ImageBatch(
            tensors=pad_images(resized_images, self.size_divisible),
            image_sizes=[_size_of(img) for img in resized_images],
            original_sizes=original_sizes,
            images=list(images),
        )
        return batch, (resized_targets if targets is not None else None)

    def postprocess(self, detections: list[Detections], batch: ImageBatch) -> list[Detections]:
        """Map boxes from each resized image back to its original frame; RoI-frame masks ``[D, S, S]``
        (Mask R-CNN) are pasted into the original image at their boxes, ``[D, H, W]``."""
        mapped = []
        for dets, resized, original in zip(detections, batch.image_sizes, batch.original_sizes):
            boxes = scale_boxes(dets.boxes, resized, original)
            masks = None if dets.masks is None else paste_masks(dets.masks, boxes, original)
            mapped.append(replace(dets, boxes=boxes, masks=masks))
        return mapped

    def _pick_min_size(self) -> int:
        if self.training and len(self.min_size) > 1:
            return self.min_size[int(torch.randint(len(self.min_size), (1,)).item())]
        return self.min_size[-1]

    def _resize(self, image: Tensor, min_size: int) -> Tensor:
        height, width = image.shape[-2:]
        scale = min(min_size / min(height, width), self.max_size / max(height, width))
        return F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]


def pad_images(images: list[Tensor], size_divisible: int, min_size: tuple[int, int] = (0, 0)) -> Tensor:
    """``[3, H_i, W_i]`` images -> ``[N, 3, H_pad, W_pad]``, each at the top left, zeros elsewhere: the
    largest height and width (at least ``min_size``) rounded up to a multiple of ``size_divisible``."""
    max_h = max(min_size[0], *(int(img.shape[-2]) for img in images))
    max_w = max(min_size[1], *(int(img.shape[-1]) for img in images))
    padded_h = int(math.ceil(max_h / size_divisible) * size_divisible)
    padded_w = int(math.ceil(max_w / size_divisible) * size_divisible)
    batch = images[0].new_zeros((len(images), 3, padded_h, padded_w))
    for slot, image in zip(batch, images):
        slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
    return batch


def _size_of(image: Tensor) -> tuple[int, int]:
    return (int(image.shape[-2]), int(image.shape[-1]))


def resize_target(target: Target, from_size: tuple[int, int], to_size: tuple[int, int]) -> Target:
    """``target`` of an image of ``from_size (H, W)`` moved into the same image resized to ``to_size``."""
    masks = target.masks
    if masks is not None and masks.numel() > 0 and from_size != to_size:
        masks = F.interpolate(masks[:, None].float(), size=to_size, mode="nearest")[:, 0].to(masks.dtype)
    proposals = None if target.proposals is None else scale_boxes(target.proposals, from_size, to_size)
    return replace(target, boxes=scale_boxes(target.boxes, from_size, to_size), masks=masks, proposals=proposals)
