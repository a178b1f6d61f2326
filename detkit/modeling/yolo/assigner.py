"""SimOTA label assignment (YOLOX, Ge et al. 2021, section 2.3): which points learn which box.

    pred_boxes ``[P, 4]`` xyxy pixels, pred_scores ``[P, K]`` in (0, 1) (objectness x class),
    points ``[P, 2]``, strides ``[P]``, gt_boxes ``[M, 4]`` xyxy pixels, gt_labels ``[M]``
    -> Assignment: ``foreground [P]`` bool, and for foreground points ``matched_gt [F]`` (index
       into the boxes) and ``matched_iou [F]`` (IoU of the point's prediction with that box)

1. Centre prior: a point is a candidate for a box when it lies inside the box or within
   ``center_radius`` strides of its centre. Points that are both cost far less (the 1e5 term).
2. Cost of a (box, candidate) pair: the classification BCE of the candidate's score against the
   box's class plus ``iou_cost_weight`` * -log IoU of its predicted box with the box.
3. Dynamic k: each box takes as many points as the sum of its ``candidate_topk`` best IoUs
   (at least one): a box the model already localises well gets more positives.
4. A point claimed by several boxes goes to the one it is cheapest for.

Assignment is a decision, not a function to differentiate: it runs without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

# Added to the cost of candidates outside the box-and-centre intersection: they are only taken
# when a box has too few points inside both (small or thin objects).
OUTSIDE_CORE_COST = 1e5
_EPS = 1e-8


@dataclass
class Assignment:
    foreground: Tensor  # [P] bool
    matched_gt: Tensor  # [F] int64, F = foreground.sum()
    matched_iou: Tensor  # [F] float32

    @property
    def num_foreground(self) -> int:
        return int(self.matched_gt.numel())


@torch.no_grad()
def simota_assign(
    pred_boxes: Tensor,
    pred_scores: Tensor,
    points: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_cost_weight: float = 3.0,
) -> Assignment:
    num_points = len(points)
    if len(gt_boxes) == 0:
        return _no_foreground(num_points, points.device)
    in_box, in_centre = _centre_prior(points, strides, gt_boxes, center_radius)  # [M, P] each
    candidate = (in_box | in_centre).any(dim=0)  # [P]
    if not candidate.any():
        return _no_foreground(num_points, points.device)
    candidate_index = candidate.nonzero()[:, 0]
    ious = box_iou(gt_boxes, pred_boxes[candidate_index].float())  # [M, C]
    cost = (
        _classification_cost(pred_scores[candidate_index].float(), gt_labels)
        + iou_cost_weight * -torch.log(ious + _EPS)
        + OUTSIDE_CORE_COST * ~(in_box & in_centre)[:, candidate_index]
    )
    matching = _dynamic_k_matching(cost, ious, candidate_topk)  # [M, C] bool, one box per column at most
    matched_columns = matching.any(dim=0)
    foreground = torch.zeros(num_points, dtype=torch.bool, device=points.device)
    foreground[candidate_index[matched_columns]] = True
    matched_gt = matching[:, matched_columns].int().argmax(dim=0)
    matched_iou = ious[:, matched_columns].gather(0, matched_gt[None])[0]
    return Assignment(foreground, matched_gt.long(), matched_iou)


def _centre_prior(points: Tensor, strides: Tensor, gt_boxes: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """``[M, P]`` masks: point inside the box; point within ``radius * stride`` of the box centre (L-inf)."""
    x, y = points[None, :, 0], points[None, :, 1]
    x1, y1, x2, y2 = (gt_boxes[:, i, None] for i in range(4))
    in_box = points_in_boxes(points, gt_boxes)
    reach = radius * strides[None]
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    in_centre = ((x - centre_x).abs() < reach) & ((y - centre_y).abs() < reach)
    return in_box, in_centre


def points_in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """``[M, P]`` bool: point ``p`` (``points [P, 2]`` x, y) lies strictly inside box ``m`` (``boxes [M, 4]`` xyxy)."""
    x, y = points[None, :, 0], points[None, :, 1]
    return (x > boxes[:, 0, None]) & (x < boxes[:, 2, None]) & (y > boxes[:, 1, None]) & (y < boxes[:, 3, None])


def _classification_cost(scores: Tensor, gt_labels: Tensor) -> Tensor:
    """``[M, C]`` binary cross-entropy of each candidate's K scores against each box's one-hot class.

    Summed over classes without building ``[M, C, K]``: the all-negative sum, corrected at the box's class.
    """
    scores = scores.clamp(_EPS, 1 - _EPS)
    negative = -torch.log1p(-scores)  # [C, K]: cost of calling each class absent
    at_label = scores[:, gt_labels].T  # [M, C]
    return negative.sum(dim=1)[None] + torch.log1p(-at_label) - torch.log(at_label)


def _dynamic_k_matching(cost: Tensor, ious: Tensor, candidate_topk: int) -> Tensor:
    """``[M, C]`` bool: box m takes its k_m cheapest candidates; a candidate taken twice stays with its cheapest box."""
    topk = min(candidate_topk, ious.shape[1])
    dynamic_k = ious.topk(topk, dim=1).values.sum(dim=1).int().clamp(min=1)  # [M]
    rank = cost.argsort(dim=1).argsort(dim=1)  # rank of each candidate in its box's cost order
    matching = rank < dynamic_k[:, None]
    contested = matching.sum(dim=0) > 1
    if contested.any():
        cheapest = cost[:, contested].argmin(dim=0)
        matching[:, contested] = False
        matching[cheapest, contested.nonzero()[:, 0]] = True
    return matching


def _no_foreground(num_points: int, device: torch.device) -> Assignment:
    return Assignment(
        torch.zeros(num_points, dtype=torch.bool, device=device),
        torch.zeros(0, dtype=torch.int64, device=device),
        torch.zeros(0, dtype=torch.float32, device=device),
    )
