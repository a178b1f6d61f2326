"""Assign each proposal (or anchor) to a ground-truth box by IoU.

A proposal is foreground when its best IoU >= ``fg_iou_thresh``, background when its best IoU is
in ``[bg_iou_thresh_lo, bg_iou_thresh_hi)``, and ignored otherwise (it contributes no loss).
Faster R-CNN's RPN also makes every ground truth's best anchors foreground, however low their IoU
("low-quality matches", Ren et al. 2015 section 3.1.2), so that no object is left without an anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FOREGROUND = 1
BACKGROUND = 0
IGNORE = -1


@dataclass
class MatchResult:
    """gt_index: ``[R]`` int64 index of the best ground truth (0 when there is none).
    kind: ``[R]`` int8, FOREGROUND / BACKGROUND / IGNORE."""

    gt_index: Tensor
    kind: Tensor


def match_boxes(
    iou: Tensor,
    fg_iou_thresh: float,
    bg_iou_thresh_hi: float,
    bg_iou_thresh_lo: float = 0.0,
    allow_low_quality_matches: bool = False,
) -> MatchResult:
    """Match ``R`` proposals against ``M`` ground truths given their ``[M, R]`` IoU matrix."""
    num_gt, num_proposals = iou.shape
    device = iou.device
    if num_gt == 0:
        kind = torch.full(
            (num_proposals,), BACKGROUND if bg_iou_thresh_lo <= 0 else IGNORE, dtype=torch.int8, device=device
        )
        return MatchResult(torch.zeros(num_proposals, dtype=torch.int64, device=device), kind)

    best_iou, gt_index = iou.max(dim=0)
    kind = torch.full((num_proposals,), IGNORE, dtype=torch.int8, device=device)
    kind[(best_iou >= bg_iou_thresh_lo) & (best_iou < bg_iou_thresh_hi)] = BACKGROUND
    kind[best_iou >= fg_iou_thresh] = FOREGROUND

    if allow_low_quality_matches:
        best_iou_per_gt = iou.max(dim=1, keepdim=True).values
        # Ties included: every proposal that reaches a ground truth's best IoU becomes foreground for
        # the ground truth it overlaps most (which need not be that one; torchvision does the same).
        # A ground truth with IoU 0 everywhere gets no proposal.
        _, low_quality = torch.nonzero((iou == best_iou_per_gt) & (best_iou_per_gt > 0), as_tuple=True)
        kind[low_quality] = FOREGROUND
    return MatchResult(gt_index, kind)
