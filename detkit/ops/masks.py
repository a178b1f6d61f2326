"""Instance-mask helpers for Mask R-CNN (He et al., ICCV 2017, section 3): training targets and pasting.

    mask_targets: gt masks ``[M, H, W]`` (the image frame), RoIs ``[R, 4]`` xyxy, matched gt index ``[R]``
      -> ``[R, S, S]`` float targets in [0, 1]: each RoI's ground-truth mask resampled onto its S x S grid
    paste_masks: ``[D, S, S]`` mask probabilities of boxes ``[D, 4]`` -> ``[D, H, W]`` in the image

Both follow torchvision's arithmetic exactly (RoIAlign without the half-pixel offset for targets;
a one-pixel zero border, integer boxes and bilinear resizing for pasting), so detkit given
torchvision's weights pastes the same masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int) -> Tensor:
    """The mask each RoI should predict: its matched ground truth's mask cropped to the RoI and resized."""
    if len(boxes) == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    resampled: Tensor = roi_align(gt_masks[:, None].to(boxes), rois, (size, size), spatial_scale=1.0)
    return resampled[:, 0]


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Resize each ``S x S`` mask to its box (grown by one mask pixel each side) and place it in an image."""
    height, width = image_size
    pasted = masks.new_zeros((len(masks), height, width))
    if len(masks) == 0:
        return pasted
    size = masks.shape[-1]
    # A zero border keeps bilinear resizing from smearing the mask's edge values up to the box edge.
    padded = F.pad(masks, (1, 1, 1, 1))
    grown = _scale_boxes_about_centres(boxes, (size + 2) / size).to(torch.int64)
    for index, (mask, box) in enumerate(zip(padded, grown.tolist())):
        _paste_one(pasted[index], mask, box)
    return pasted


def _scale_boxes_about_centres(boxes: Tensor, scale: float) -> Tensor:
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=1)


def _paste_one(canvas: Tensor, mask: Tensor, box: list[int]) -> None:
    x1, y1, x2, y2 = box
    # Integer boxes are inclusive of their far edge here, hence the + 1 (torchvision's convention).
    box_w, box_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
    height, width = canvas.shape
    left, right = max(x1, 0), min(x2 + 1, width)
    top, bottom = max(y1, 0), min(y2 + 1, height)
    if right > left and bottom > top:
        canvas[top:bottom, left:right] = resized[top - y1 : bottom - y1, left - x1 : right - x1]
