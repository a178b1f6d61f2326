"""The data-dependent steps of detection, written for a graph: top-k, box decoding, clipping, NMS.

Each is the eager step's arithmetic (``modeling/rpn.py``, ``modeling/roi_heads.py``, ``ops/``,
``modeling/yolo/decode.py``) without the Python branches on tensor contents or sizes that a graph
cannot hold: a top-k of ``k`` over fewer than ``k`` values, NMS of no boxes, a clip to an image size
that is only known when the graph runs. Boxes are ``[N, 4]`` xyxy pixels throughout.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms


def top_k_padded(values: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` largest of ``values`` ``[n]`` for any ``n``, best first: (values ``[k]``, indices ``[k]``,
    valid ``[k]`` bool). With ``n < k`` the last ``k - n`` are padding (``-inf``, index 0, not valid), so
    the valid part is exactly ``values.topk(min(k, n))`` and ``k`` stays one number for every input size."""
    padded = torch.cat([values, torch.full((k,), float("-inf"), dtype=values.dtype, device=values.device)])
    top, index = padded.topk(k)
    valid = index < values.shape[0]
    return top, torch.where(valid, index, torch.zeros_like(index)), valid


def decode_deltas(deltas: Tensor, boxes: Tensor, weights: list[float], scale_clamp: float) -> Tensor:
    """``[R, 4]`` deltas of ``[R, 4]`` source boxes -> ``[R, 4]`` boxes: ``ops.box_coder.BoxCoder.decode``
    for one box per source, operation for operation (a plain function, which TorchScript can compile)."""
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    dx = deltas[:, 0] / weights[0]
    dy = deltas[:, 1] / weights[1]
    dw = torch.clamp(deltas[:, 2] / weights[2], max=scale_clamp)
    dh = torch.clamp(deltas[:, 3] / weights[3], max=scale_clamp)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=1)


def clip_to(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clamp ``[N, 4]`` boxes into an image of ``height x width`` (``ops.boxes.clip_boxes``); the bounds are
    tensors so that a size known only when the graph runs can be one."""
    w = torch.scalar_tensor(width, dtype=boxes.dtype, device=boxes.device)
    h = torch.scalar_tensor(height, dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0), torch.stack([w, h, w, h]))


def scale_to(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """``[N, 4]`` boxes of an image of ``from_size (H, W)`` in one of ``to_size``: ``ops.boxes.scale_boxes``'
    float32 ratios of the integer sizes."""
    ratio_h = _float32(to_size[0], boxes) / _float32(from_size[0], boxes)
    ratio_w = _float32(to_size[1], boxes) / _float32(from_size[1], boxes)
    return boxes * torch.stack([ratio_w, ratio_h, ratio_w, ratio_h])


def nonempty(boxes: Tensor, min_size: float) -> Tensor:
    """Boolean ``[N]``: width and height at least ``min_size`` (``ops.boxes.nonempty_boxes``)."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """Indices of the boxes NMS keeps within each group, by descending score: torchvision's
    coordinate-offset ``batched_nms`` (each group moved past the last), whose empty-input branch a graph
    cannot hold; the maximum is taken over the boxes and a zero, so it exists for no boxes too."""
    max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
    offsets = groups.to(boxes.dtype) * (max_coordinate + 1)
    kept: Tensor = nms(boxes + offsets[:, None], scores, iou_thresh)
    return kept


def _float32(size: int, like: Tensor) -> Tensor:
    """A size as a float32 scalar tensor; ``scalar_tensor`` keeps ``torch.export`` from fixing the size."""
    return torch.scalar_tensor(size, dtype=torch.float32, device=like.device)
