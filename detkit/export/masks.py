"""Pasting RoI-frame mask probabilities into the image, inside a graph (Mask R-CNN, He et al. 2017, section 3).

    masks ``[D, S, S]`` probabilities, boxes ``[D, 4]`` xyxy pixels of an image of ``(H, W)``
    -> ``[D, H, W]``: each mask resized bilinearly onto its box and zeros elsewhere

The eager ``ops.masks.paste_masks`` resizes each mask to its own box with ``F.interpolate`` in a
Python loop over detections, a loop whose count a graph does not know. Bilinear resizing is
separable, so the same result is two batched matrix products: ``rows [D, H, S+2] @ mask [D, S+2, S+2]
@ columns [D, S+2, W]``, where each row of ``rows`` (column of ``columns``) holds the two
interpolation weights torch's CPU kernel gives that output pixel, and zeros outside the box. The
arithmetic is the eager one: a one-pixel zero border, the box grown by (S + 2) / S about its centre
and truncated to integers, inclusive of its far edge, source index ``max((j + 0.5) * in / out - 0.5, 0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def paste_masks(masks: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """``[D, S, S]`` masks of ``[D, 4]`` boxes -> ``[D, height, width]`` (see the module docstring)."""
    size = masks.shape[-1]
    padded = F.pad(masks, [1, 1, 1, 1])
    grown = _grown_boxes(boxes, (size + 2) / size).to(torch.int64)
    rows = _weights(grown[:, 1], grown[:, 3], height, size + 2, masks.dtype)  # [D, H, S+2]
    columns = _weights(grown[:, 0], grown[:, 2], width, size + 2, masks.dtype)  # [D, W, S+2]
    return rows @ padded @ columns.transpose(1, 2)


def _grown_boxes(boxes: Tensor, scale: float) -> Tensor:
    """``ops.masks._scale_boxes_about_centres``: ``[D, 4]`` boxes scaled by ``scale`` about their centres."""
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=1)


def _weights(start: Tensor, end: Tensor, length: int, source: int, dtype: torch.dtype) -> Tensor:
    """``[D, length, source]``: for each of D integer spans ``[start, end]`` (inclusive) of an axis of
    ``length`` pixels, the bilinear weights of the ``source`` mask pixels at every pixel of the axis,
    zero outside the span. ``F.interpolate(align_corners=False)`` from ``source`` to the span's
    ``out = max(end - start + 1, 1)`` pixels, as torch's CPU kernel: ratio ``source / out`` in float32,
    the two neighbours and their weights clamped at the far edge."""
    out = torch.clamp(end - start + 1, min=1).to(torch.float32)  # [D]
    pixel = torch.arange(length, device=start.device)  # [L]
    offset = pixel[None, :] - start[:, None]  # [D, L]: index into the resized span
    inside = (pixel[None, :] >= start[:, None]) & (pixel[None, :] <= end[:, None])
    ratio = source / out  # float32, as area_pixel_compute_scale
    real = torch.clamp((offset.to(torch.float32) + 0.5) * ratio[:, None] - 0.5, min=0.0)
    low = torch.clamp(torch.floor(real).to(torch.int64), max=source - 1)
    high = torch.clamp(low + 1, max=source - 1)
    upper_weight = torch.clamp(real - low.to(torch.float32), min=0.0, max=1.0)
    # A span as long as the mask copies it (the kernel's "same size" case): weight 1 on the pixel itself.
    same = (out == source)[:, None]
    upper_weight = torch.where(same, torch.zeros_like(upper_weight), upper_weight)
    low = torch.where(same, offset.clamp(min=0, max=source - 1), low)
    lower_weight = (1.0 - upper_weight) * inside.to(torch.float32)
    upper_weight = upper_weight * inside.to(torch.float32)
    positions = torch.arange(source, device=start.device)
    weights = (positions == low[..., None]).to(torch.float32) * lower_weight[..., None] + (
        positions == high[..., None]
    ).to(torch.float32) * upper_weight[..., None]
    return weights.to(dtype)
