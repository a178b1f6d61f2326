"""What a benchmark feeds the models: synthetic scenes of any size, or the images of a COCO dataset.

Uniform noise would do for the convolutions, whose cost ignores the content, but not for selective
search or NMS, whose cost follows it: the synthetic scenes (shapes on textured, cluttered
backgrounds, ``data/synthetic.py``) segment and overlap like photographs do, and they come with
boxes and masks, so ``--train`` has targets without a dataset.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import masks_to_boxes

from detkit.data.coco import CocoDetection
from detkit.data.images import image_to_tensor
from detkit.data.synthetic import render_image
from detkit.structures import Target


def four_by_three(long_side: int) -> tuple[int, int]:
    """``(H, W)`` of a landscape 4:3 image, the shape of most COCO photographs."""
    return 3 * long_side // 4, long_side


def scene_inputs(
    image_size: tuple[int, int], count: int, num_classes: int, seed: int = 0
) -> tuple[list[Tensor], list[Target]]:
    """``count`` synthetic ``[3, H, W]`` images in [0, 1] and their targets (labels folded into [0, num_classes))."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(count):
        pixels, instances = render_image(rng, *image_size)
        images.append(image_to_tensor(pixels))
        targets.append(_scene_target(instances, num_classes))
    return images, targets


def dataset_inputs(dataset: CocoDetection, count: int | None) -> tuple[list[Tensor], list[Target]]:
    """The first ``count`` images of ``dataset`` (all when None) and their targets."""
    items = [dataset[index] for index in range(len(dataset) if count is None else min(count, len(dataset)))]
    return [image for image, _ in items], [target for _, target in items]


def _scene_target(instances: list[tuple[int, np.ndarray]], num_classes: int) -> Target:
    if not instances:
        return Target(masks=torch.zeros((0, 1, 1), dtype=torch.uint8))
    masks = torch.from_numpy(np.stack([mask for _, mask in instances])).to(torch.uint8)
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # pixel extents, as the COCO json has them
    labels = torch.tensor([(category_id - 1) % num_classes for category_id, _ in instances], dtype=torch.int64)
    return Target(boxes=boxes, labels=labels, masks=masks, iscrowd=torch.zeros(len(labels), dtype=torch.bool))
