"""Box format conversion and clean-up. All boxes are ``[N, 4]`` xyxy absolute pixels unless a name says otherwise.

IoU, area and NMS kernels come from ``torchvision.ops``; these are the edges and policies around them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO ``(x, y, w, h)`` -> ``(x1, y1, x2, y2)``; used only when reading COCO json."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``(x1, y1, x2, y2)`` -> COCO ``(x, y, w, h)``; used only when writing COCO results."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clamp ``[..., 4]`` boxes into an image of ``(H, W)`` pixels."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Boolean ``[N]``: width and height both at least ``min_size`` pixels."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size)


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Map ``[N, 4]`` boxes from an image of ``from_size (H, W)`` to one of ``to_size (H, W)``.

    The ratios are float32 divisions of the integer sizes, the same arithmetic torchvision's
    transform uses, so detections match it to the last bit.
    """
    ratio_h = torch.tensor(to_size[0], dtype=torch.float32, device=boxes.device) / torch.tensor(
        from_size[0], dtype=torch.float32, device=boxes.device
    )
    ratio_w = torch.tensor(to_size[1], dtype=torch.float32, device=boxes.device) / torch.tensor(
        from_size[1], dtype=torch.float32, device=boxes.device
    )
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


def boxes_to_rois(boxes_per_image: list[Tensor]) -> Tensor:
    """Per-image ``[R_i, 4]`` boxes -> ``[sum R_i, 5]`` rois ``(batch_index, x1, y1, x2, y2)`` for
    roi_align/roi_pool."""
    if not boxes_per_image:
        return torch.zeros((0, 5))
    reference = boxes_per_image[0]
    batch_index = torch.cat(
        [
            torch.full((len(b), 1), i, dtype=reference.dtype, device=reference.device)
            for i, b in enumerate(boxes_per_image)
        ]
    )
    return torch.cat([batch_index, torch.cat(boxes_per_image)], dim=1)
