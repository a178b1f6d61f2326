"""The last step of every per-class detector head: which scored boxes become an image's detections.

    boxes ``[N, 4]`` xyxy pixels, scores ``[N]``, labels ``[N]`` in ``[0, K)``: one candidate per
      (region, class) pair, each box already decoded (and clipped) for its class
    -> score > ``score_thresh`` -> width and height >= ``min_size`` -> NMS within each class
    -> the ``detections_per_image`` best, by descending score -> ``Detections`` ``[D, ...]``

Fast/Faster/Mask R-CNN (``modeling/roi_heads.py``, Fast R-CNN section 2.4) and R-CNN
(``pipelines/rcnn/model.py``, section 2.2: per-class greedy NMS of the SVM-scored regions) share it.
NMS runs per class, not across classes: a box of a cat and one of a dog may overlap.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import batched_nms

from detkit.ops.boxes import nonempty_boxes
from detkit.structures import Detections

# Boxes narrower or lower than this (pixels) after decoding are dropped, as torchvision does.
MIN_DETECTION_SIZE = 1e-2


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    *,
    score_thresh: float,
    nms_thresh: float,
    detections_per_image: int,
    min_size: float = MIN_DETECTION_SIZE,
) -> Detections:
    """An image's detections among its candidates ``boxes`` ``[N, 4]``, ``scores`` ``[N]``, ``labels``
    ``[N]`` (see the module docstring), best first; empty tensors when none survives.

    A caller that already kept only ``scores > score_thresh`` (to decode only those boxes) gets the
    same result: the threshold is applied again, and a second application changes nothing.
    """
    keep = (scores > score_thresh) & nonempty_boxes(boxes, min_size)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_image]  # sorted by decreasing score
    return Detections(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])
