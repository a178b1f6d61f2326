"""Do an exported file's detections agree with the eager model's? Match them, measure, judge.

    eager, exported: one ``Detections`` per image (boxes ``[D, 4]`` xyxy pixels of the image, scores,
    labels, masks ``[D, H, W]`` or None) -> ``Agreement``: the largest box and score difference over
    matched pairs, the lowest mask IoU, whether labels agree, and what found no counterpart

Matching is greedy by descending eager score: each detection takes the unmatched detection of the
same label nearest to it, measured in tolerances (``max(box / box_tol, score / score_tol)``), if it is
within ``GATE`` tolerances; a pair further apart than one tolerance fails. A detection left without a
counterpart is allowed only at the edge of what is kept: a score within ``EDGE`` score tolerances of
the score threshold, or of the lowest kept score when the image has its full ``detections_per_image``
(float differences may keep it on one side and drop it on the other). Anything else is a disagreement.
Masks are compared as the IoU of the two probability maps thresholded at 0.5 (COCO's binarisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from detkit.structures import Detections

GATE = 10.0  # a pair this many tolerances apart is still a pair (reported, and failed), not two misses
# A detection missing on one side is float noise at the edge when its score is this close to it (in score
# tolerances): a tenth, so a list of near-equal scores (an untrained head) is not all "edge".
EDGE = 0.1


@dataclass(frozen=True)
class Tolerance:
    """How far apart two matched detections may be: box corners in pixels, scores, mask IoU."""

    box: float
    score: float
    mask_iou: float

    def describe(self) -> str:
        return f"boxes {self.box:g} px, scores {self.score:g}, mask IoU >= {self.mask_iou:g}"


# fp32 graphs compute what eager does up to float reassociation; fp16 ones round every activation.
FP32_TOLERANCE = Tolerance(box=0.5, score=0.005, mask_iou=0.9)
FP16_TOLERANCE = Tolerance(box=4.0, score=0.05, mask_iou=0.75)


@dataclass
class Agreement:
    """Eager against exported over a set of images."""

    images: int = 0
    eager_detections: int = 0
    exported_detections: int = 0
    matched: int = 0
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    min_mask_iou: float | None = None
    labels_agree: bool = True
    unmatched: int = 0  # detections without a counterpart, past the edge of what is kept
    borderline: int = 0  # detections without a counterpart at the edge (allowed)
    problems: list[str] = field(default_factory=list)

    def passes(self, tolerance: Tolerance) -> bool:
        return not self.failures(tolerance)

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What exceeds ``tolerance``, one phrase each (empty when the file agrees)."""
        found = []
        if self.max_box_diff > tolerance.box:
            found.append(f"a box differs by {self.max_box_diff:.3g} px (tolerance {tolerance.box:g})")
        if self.max_score_diff > tolerance.score:
            found.append(f"a score differs by {self.max_score_diff:.3g} (tolerance {tolerance.score:g})")
        if self.min_mask_iou is not None and self.min_mask_iou < tolerance.mask_iou:
            found.append(f"a mask's IoU is {self.min_mask_iou:.3f} (tolerance {tolerance.mask_iou:g})")
        if not self.labels_agree:
            found.append("labels differ")
        if self.unmatched:
            found.append(f"{self.unmatched} detections have no counterpart ({self.problems[0]})")
        return found

    def summary(self) -> str:
        masks = "" if self.min_mask_iou is None else f", lowest mask IoU {self.min_mask_iou:.3f}"
        edge = f", {self.borderline} at the score edge unmatched" if self.borderline else ""
        return (
            f"{self.images} images, {self.eager_detections} eager / {self.exported_detections} exported detections, "
            f"{self.matched} matched: largest box difference {self.max_box_diff:.2e} px, score difference "
            f"{self.max_score_diff:.2e}{masks}, labels {'agree' if self.labels_agree else 'DIFFER'}{edge}"
        )


def compare_detections(
    eager: Detections,
    exported: Detections,
    tolerance: Tolerance,
    *,
    score_thresh: float,
    detections_per_image: int,
    into: Agreement,
) -> Agreement:
    """Add one image's comparison to ``into`` (and return it)."""
    into.images += 1
    into.eager_detections += len(eager)
    into.exported_detections += len(exported)
    pairs = _match(eager, exported, tolerance)
    for i, j in pairs:
        into.matched += 1
        into.max_box_diff = max(into.max_box_diff, float((eager.boxes[i] - exported.boxes[j]).abs().max()))
        into.max_score_diff = max(into.max_score_diff, float((eager.scores[i] - exported.scores[j]).abs()))
        if eager.masks is not None and exported.masks is not None:
            iou = _mask_iou(eager.masks[i], exported.masks[j])
            into.min_mask_iou = iou if into.min_mask_iou is None else min(into.min_mask_iou, iou)
    for side, dets, used in (("eager", eager, {i for i, _ in pairs}), ("exported", exported, {j for _, j in pairs})):
        floor = _kept_floor(dets, score_thresh, detections_per_image)
        for index in (k for k in range(len(dets)) if k not in used):
            score = float(dets.scores[index])
            if score - floor <= EDGE * tolerance.score:
                into.borderline += 1
                continue
            into.unmatched += 1
            into.problems.append(
                f"{side} label {int(dets.labels[index])} score {score:.3f} at {_box(dets.boxes[index])}"
            )
            if _has_other_label_twin(dets, index, eager if side == "exported" else exported, tolerance):
                into.labels_agree = False
    return into


def _match(eager: Detections, exported: Detections, tolerance: Tolerance) -> list[tuple[int, int]]:
    """Greedy pairs (eager index, exported index), eager in descending score order."""
    if len(eager) == 0 or len(exported) == 0:
        return []
    cost = _cost(eager.boxes, eager.scores, exported.boxes, exported.scores, tolerance)
    cost[eager.labels[:, None] != exported.labels[None, :]] = float("inf")
    pairs = []
    for i in torch.argsort(eager.scores, descending=True).tolist():
        j = int(torch.argmin(cost[i]))
        if cost[i, j] <= GATE:
            pairs.append((i, j))
            cost[:, j] = float("inf")
    return pairs


def _cost(boxes_a: Tensor, scores_a: Tensor, boxes_b: Tensor, scores_b: Tensor, tolerance: Tolerance) -> Tensor:
    """``[A, B]``: how many tolerances apart each pair is (the larger of box and score)."""
    box = (boxes_a[:, None, :] - boxes_b[None, :, :]).abs().amax(dim=2) / tolerance.box
    score = (scores_a[:, None] - scores_b[None, :]).abs() / tolerance.score
    return torch.maximum(box, score)


def _kept_floor(dets: Detections, score_thresh: float, detections_per_image: int) -> float:
    """The lowest score a kept detection can have: the threshold, or the last score of a full list."""
    if len(dets) >= detections_per_image:
        return max(score_thresh, float(dets.scores.min()))
    return score_thresh


def _has_other_label_twin(dets: Detections, index: int, others: Detections, tolerance: Tolerance) -> bool:
    """Whether ``others`` holds this detection's box and score under another label."""
    if len(others) == 0:
        return False
    cost = _cost(dets.boxes[index : index + 1], dets.scores[index : index + 1], others.boxes, others.scores, tolerance)
    return bool(((cost[0] <= 1.0) & (others.labels != dets.labels[index])).any())


def _mask_iou(a: Tensor, b: Tensor) -> float:
    """IoU of two ``[H, W]`` probability maps at 0.5; 1.0 when both are empty."""
    a, b = a > 0.5, b > 0.5
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _box(box: Tensor) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box.tolist()) + ")"
