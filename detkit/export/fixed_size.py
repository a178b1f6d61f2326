"""Running a fixed-size file on an image of another size: letterboxed in, detections mapped back.

    image ``uint8 [3, h, w]`` -> ``[3, H, W]`` (the file's size): resized by ``s = min(H / h, W / w)``
    (aspect kept, bilinear), at the top left, the rest the mean colour (zero once normalized, as the
    eager padding) -> detections: boxes divided by ``s`` and clipped to ``(h, w)``, masks cropped to
    the image's part and resized to ``(h, w)``

A dynamic file (``--dynamic``) needs none of this: it runs each image at its own size, as eager does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.ops.boxes import clip_boxes
from detkit.structures import Detections


@dataclass(frozen=True)
class Fitted:
    """An image letterboxed into a fixed size, and how to map detections back."""

    pixels: Tensor  # uint8 [3, H, W]
    scale: float
    content: tuple[int, int]  # (h', w'): the image's part of the canvas
    original: tuple[int, int]  # (h, w)


def fit(pixels: Tensor, size: tuple[int, int], fill: Tensor) -> Fitted:
    """``uint8 [3, h, w]`` letterboxed into ``size (H, W)``; ``fill`` is ``uint8 [3]``, the padding colour."""
    height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
    scale = min(size[0] / height, size[1] / width)
    content = (max(1, min(size[0], round(height * scale))), max(1, min(size[1], round(width * scale))))
    resized = F.interpolate(pixels[None].float(), size=content, mode="bilinear", align_corners=False, antialias=True)
    canvas = fill.to(pixels.device).view(3, 1, 1).expand(3, *size).clone()
    canvas[:, : content[0], : content[1]] = resized[0].round().clamp(0, 255).to(torch.uint8)
    return Fitted(canvas, scale, content, (height, width))


def restore(detections: Detections, fitted: Fitted) -> Detections:
    """Detections on the canvas -> detections in the original image."""
    boxes = clip_boxes(detections.boxes / fitted.scale, fitted.original)
    masks = detections.masks
    if masks is not None:
        part = masks[:, : fitted.content[0], : fitted.content[1]]
        masks = (
            F.interpolate(part[:, None], size=fitted.original, mode="bilinear", align_corners=False)[:, 0]
            if len(part)
            else part.new_zeros((0, *fitted.original))
        )
    return replace(detections, boxes=boxes, masks=masks)
