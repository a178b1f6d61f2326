"""Per-class linear SVMs with hard-negative mining (R-CNN section 2.3), solved in torch.

For class k: positives are the ground-truth boxes of class k; negatives are proposals whose IoU with
every box of class k is below ``svm_neg_iou`` (0.3: the paper found 0.5 lost 5 mAP, 0 lost 4).
Training starts from a random draw of negatives and alternates: fit on the working set, then score
every negative and add those inside the margin (score > -1), the "hard" ones, for a few rounds.

    objective per class: 0.5 * l2 * |w|^2 + sum_i c_i * max(0, 1 - y_i (w . x_i + b)) / sum_i c_i,
    c_i = svm_pos_weight for positives, 1 for negatives; full-batch Adam on whatever device the features are on
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from detkit.config import RCNNConfig

HARD_MARGIN = -1.0  # negatives scoring above this are inside the margin: they still cost hinge loss
MAX_NEW_NEGATIVES = 20000  # per class and round: bounds the working set on huge datasets


@dataclass
class SVMRound:
    label: int
    round: int
    positives: int
    negatives: int
    new_hard_negatives: int
    loss: float


def train_svms(
    features: Tensor,
    is_gt: Tensor,
    labels: Tensor,
    class_iou: Tensor,
    cfg: RCNNConfig,
    num_classes: int,
    on_round: Callable[[SVMRound], None] = lambda r: None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``[K, D]`` weights and ``[K]`` biases for ``features`` ``[N, D]`` (already scaled), one SVM per class."""
    weight = features.new_zeros((num_classes, features.shape[1]), dtype=torch.float32)
    bias = features.new_zeros((num_classes,), dtype=torch.float32)
    for k in range(num_classes):
        positives = torch.where(is_gt & (labels == k))[0]
        negative_pool = torch.where(~is_gt & (class_iou[:, k].float() < cfg.svm_neg_iou))[0]
        if len(positives) == 0 or len(negative_pool) == 0:
            continue  # a class absent from training keeps w = 0, b = 0: sigmoid 0.5 everywhere, ranked by nothing
        weight[k], bias[k] = _train_one(features, positives, negative_pool, cfg, k, on_round, generator)
    return weight, bias


def _train_one(
    features: Tensor,
    positives: Tensor,
    negative_pool: Tensor,
    cfg: RCNNConfig,
    label: int,
    on_round: Callable[[SVMRound], None],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Class ``label``'s ``[D]`` weight and scalar bias: positives and negatives are indices into ``features``."""
    draw = torch.randperm(len(negative_pool), generator=generator)[: cfg.svm_initial_negatives]
    negatives = negative_pool[draw.to(negative_pool.device)]
    w = features.new_zeros(features.shape[1], dtype=torch.float32)
    b = features.new_zeros((), dtype=torch.float32)
    for round_index in range(max(cfg.svm_hard_negative_rounds, 1)):
        w, b, loss = _fit(features, positives, negatives, w, b, cfg)
        hard = _hard_negatives(features, negative_pool, negatives, w, b)
        on_round(SVMRound(label, round_index + 1, len(positives), len(negatives), len(hard), loss))
        if len(hard) == 0:
            break
        negatives = torch.cat([negatives, hard])
    return w, b


def _fit(
    features: Tensor, positives: Tensor, negatives: Tensor, w: Tensor, b: Tensor, cfg: RCNNConfig
) -> tuple[Tensor, Tensor, float]:
    x = torch.cat([features[positives], features[negatives]]).float()
    y = torch.cat([x.new_ones(len(positives)), -x.new_ones(len(negatives))])
    cost = torch.cat([x.new_full((len(positives),), cfg.svm_pos_weight), x.new_ones(len(negatives))])
    cost = cost / cost.sum()
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w, b], lr=0.01)
    for _ in range(cfg.svm_steps):
        loss = 0.5 * cfg.svm_l2 * w.dot(w) + (cost * torch.relu(1 - y * (x @ w + b))).sum()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        optimizer.step()
    return w.detach(), b.detach(), float(loss.detach())


@torch.no_grad()
def _hard_negatives(features: Tensor, negative_pool: Tensor, negatives: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Negatives from the pool, not yet in the working set, that score inside the margin."""
    in_working_set = torch.zeros(len(features), dtype=torch.bool, device=features.device)
    in_working_set[negatives] = True
    candidates = negative_pool[~in_working_set[negative_pool]]
    scores = (
        torch.cat([features[part].float() @ w + b for part in torch.split(candidates, 65536)])
        if len(candidates)
        else w.new_zeros(0)
    )
    hard = candidates[scores > HARD_MARGIN]
    return hard[torch.argsort(scores[scores > HARD_MARGIN], descending=True)][:MAX_NEW_NEGATIVES]
