"""Per-class ridge box regressors (R-CNN appendix C).

For class k the training pairs are proposals whose best-overlapping ground truth is of class k with
IoU > ``bbox_reg_iou`` (0.6): far-off pairs would teach a hopeless task. Targets are the core box
coder's deltas ``(dx, dy, dw, dh)`` from proposal to ground truth with unit weights, the paper's
parameterization; the regressor is ``[x, 1] @ W`` with ``W`` ``[D + 1, 4]`` solved in closed form:

    W = (X^T X + lambda * I') ^-1 X^T T, with I' the identity except 0 for the bias (never shrunk)
"""

from __future__ import annotations

import torch
from torch import Tensor

from detkit.ops.box_coder import BoxCoder


def ridge(inputs: Tensor, targets: Tensor, ridge_lambda: float) -> Tensor:
    """``[n, D]`` inputs, ``[n, T]`` targets -> ``[D + 1, T]`` weights (last row: the unpenalized bias)."""
    augmented = torch.cat([inputs, inputs.new_ones((len(inputs), 1))], dim=1).double()
    penalty = torch.eye(augmented.shape[1], dtype=torch.float64, device=inputs.device) * ridge_lambda
    penalty[-1, -1] = 0.0
    gram = augmented.T @ augmented + penalty
    weights: Tensor = torch.linalg.solve(gram, augmented.T @ targets.double())
    return weights.to(inputs.dtype)


def fit_box_regressors(
    features: Tensor,
    boxes: Tensor,
    gt_boxes: Tensor,
    labels: Tensor,
    max_iou: Tensor,
    is_gt: Tensor,
    num_classes: int,
    min_iou: float,
    ridge_lambda: float,
    box_coder: BoxCoder,
) -> tuple[Tensor, list[int]]:
    """``[K, D + 1, 4]`` regressors (zeros for a class without training pairs) and the pair count per class."""
    weight = features.new_zeros((num_classes, features.shape[1] + 1, 4), dtype=torch.float32)
    counts = []
    for k in range(num_classes):
        pairs = torch.where(~is_gt & (labels == k) & (max_iou > min_iou))[0]
        counts.append(len(pairs))
        if len(pairs) == 0:
            continue
        deltas = box_coder.encode(boxes[pairs], gt_boxes[pairs])
        weight[k] = ridge(features[pairs].float(), deltas.float(), ridge_lambda)
    return weight, counts
