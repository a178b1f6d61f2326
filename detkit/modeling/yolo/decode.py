"""From dense head outputs to boxes and detections: the only place YOLO boxes are not xyxy pixels.

    grid_points:  feature sizes and strides -> points ``[P, 2]`` (x, y cell centres, input pixels), strides ``[P]``
    decode_boxes: box_deltas ``[N, P, 4]`` ``(dx, dy, log w, log h)`` in stride units -> boxes ``[N, P, 4]``
                  xyxy pixels of the letterboxed input: centre = point + (dx, dy) * stride,
                  size = exp(log w, log h) * stride (YOLOX's parameterisation)
    select_detections: boxes + logits of a batch -> one ``Detections`` per image: score threshold,
                  top-k, class-aware NMS, at most ``detections_per_image``

Scores are sigmoid(objectness) * sigmoid(class logit) (YOLOX eq. in section 2.1); every (point,
class) pair above the threshold is a candidate, so one point may report two classes, which helps AP
on ambiguous objects at no cost to the NMS that follows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from detkit.structures import Detections

# exp() of a larger log-size gives boxes >10^4 strides wide: nothing real, and an overflow risk under AMP.
MAX_LOG_SIZE = math.log(1000.0)


def grid_points(
    feature_sizes: list[tuple[int, int]], strides: list[int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, levels finest first and cells row-major: ``[P, 2]`` (x, y), ``[P]``."""
    points, point_strides = [], []
    for (height, width), stride in zip(feature_sizes, strides):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        point_strides.append(torch.full((height * width,), float(stride), device=device))
    return torch.cat(points), torch.cat(point_strides)


def decode_boxes(box_deltas: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """``[N, P, 4]`` deltas at ``points [P, 2]`` with ``strides [P]`` -> ``[N, P, 4]`` xyxy pixels."""
    scale = strides[:, None]
    centres = points + box_deltas[..., :2] * scale
    sizes = box_deltas[..., 2:].clamp(max=MAX_LOG_SIZE).exp() * scale
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)


def select_detections(
    boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    image_sizes: list[tuple[int, int]],
    *,
    score_thresh: float,
    nms_thresh: float,
    pre_nms_topk: int,
    detections_per_image: int,
) -> list[Detections]:
    """``boxes [N, P, 4]``, ``cls_logits [N, P, K]``, ``obj_logits [N, P]`` -> N ``Detections`` in the
    frames ``image_sizes`` (boxes clipped to them), sorted by score.

    The top-k runs on the whole batch at once, and one NMS call handles every image and class (their
    boxes are kept apart by a per-(image, class) group id), so the cost does not grow with Python loops.
    """
    num_images, _, num_classes = cls_logits.shape
    scores = (cls_logits.sigmoid() * obj_logits.sigmoid()[..., None]).flatten(1)  # [N, P * K]
    topk = min(pre_nms_topk, scores.shape[1])
    top_scores, top_index = scores.topk(topk, dim=1)  # [N, T]
    point_index, labels = top_index // num_classes, top_index % num_classes
    image_index = torch.arange(num_images, device=boxes.device)[:, None].expand_as(labels)
    keep = top_scores > score_thresh
    image_index, point_index, labels, top_scores = image_index[keep], point_index[keep], labels[keep], top_scores[keep]
    candidates = boxes[image_index, point_index]
    limits = boxes.new_tensor([[w, h, w, h] for h, w in image_sizes])[image_index]
    candidates = torch.minimum(candidates.clamp(min=0), limits)
    kept = batched_nms(candidates, top_scores, image_index * num_classes + labels, nms_thresh)  # sorted by score
    kept_images = image_index[kept]
    detections = []
    for image in range(num_images):
        selected = kept[kept_images == image][:detections_per_image]
        detections.append(Detections(boxes=candidates[selected], scores=top_scores[selected], labels=labels[selected]))
    return detections
