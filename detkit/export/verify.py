"""Do an exported file's detections agree with the eager model's? Match them, measure, judge.

    eager, exported: one ``Detections`` per image (boxes ``[D, 4]`` xyxy pixels of the image, scores,
    labels, masks ``[D, H, W]`` or None) -> ``Agreement``: the largest box and score difference over
    matched pairs, the lowest mask IoU, whether labels agree, and what found no counterpart

Matching runs in three passes:

1. Pairs within ``TIGHT`` of a tolerance: greedy by descending eager score, each detection takes the
   unmatched detection of the same label nearest to it, measured in tolerances (``max(box / box_tol,
   score / score_tol)``).
2. What is left is explained, or not. Float differences decide two yes/no questions differently on
   the two sides, and each flips a detection in or out of the list without any number being wrong:
   - the score edge: a score within ``EDGE`` score tolerances of the score threshold, or of the lowest
     kept score when the image has its full ``detections_per_image``;
   - the NMS edge: the other side holds a same-label detection scoring at least as high (within the
     score tolerance) whose IoU with this one is within ``Tolerance.nms_iou`` of the NMS threshold, so
     one side suppressed it and the other did not; or one that overlaps it past the threshold and is
     itself such a flip (NMS then cascades: the detection a flipped box would have suppressed survives);
     or, for at most ``ORDER_FLIPS`` of an image's detections, an order flip: the other side kept a
     same-label neighbour of near-equal score (within ``EDGE`` score tolerances) overlapping it past the
     threshold, where this side kept this one.
3. The unexplained rest is paired within one tolerance (agreeing), then within ``GATE`` tolerances
   (reported with its difference, and failed); what is still alone is missing (failed).

Masks are compared as the IoU of the two probability maps thresholded at 0.5 (COCO's binarisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detkit.structures import Detections

# A pair this close (in tolerances) is the same detection on both sides: float noise is ~0.02 tolerances
# in fp16 and less in fp32. Looser pairs are made only after the edges are explained, since two different
# low-score boxes of neighbouring grid points, each kept on one side only, can be within one tolerance.
TIGHT = 0.25
GATE = 10.0  # a pair this many tolerances apart is still a pair (reported, and failed), not two misses
# A detection missing on one side is float noise at the edge when its score is this close to it (in score
# tolerances): a tenth, so a list of near-equal scores (an untrained head) is not all "edge".
EDGE = 0.1
# Two neighbouring candidates scoring alike overlap past NMS's threshold: the one scored higher suppresses
# the other, and float noise may choose differently on the two sides. As often as this in an image (a
# share of its detections) it is noise; an export whose boxes all moved would make every detection one.
ORDER_FLIPS = 0.01


@dataclass(frozen=True)
class Tolerance:
    """How far apart two matched detections may be: box corners in pixels, scores, mask IoU."""

    box: float
    score: float
    mask_iou: float
    nms_iou: float  # how near the NMS threshold an IoU is for float noise to put it on either side
    # Share of the detections that may lack a counterpart unexplained: fp16 moves a two-stage model's
    # proposals (its RPN's NMS over thousands of anchors), which can drop or add a final detection that
    # the outputs alone cannot trace to an edge.
    missing_share: float = 0.0

    def describe(self) -> str:
        missing = f", up to {self.missing_share:.0%} of detections unpaired" if self.missing_share else ""
        return f"boxes {self.box:g} px, scores {self.score:g}, mask IoU >= {self.mask_iou:g}{missing}"


# fp32 graphs compute what eager does up to float reassociation; fp16 ones round every activation (boxes
# then move by a few hundredths of a pixel at 160 px, which moves the IoU of two small boxes by ~0.01).
FP32_TOLERANCE = Tolerance(box=0.5, score=0.005, mask_iou=0.9, nms_iou=0.01)
FP16_TOLERANCE = Tolerance(box=4.0, score=0.05, mask_iou=0.75, nms_iou=0.05, missing_share=0.01)


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
    unmatched: int = 0  # detections without a counterpart and no explanation
    borderline: int = 0  # detections without a counterpart at the score edge (allowed)
    nms_flips: int = 0  # detections without a counterpart at the NMS edge (allowed)
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
        if self.unmatched > self.missing_allowed(tolerance):
            found.append(f"{self.unmatched} detections have no counterpart ({self.problems[0]})")
        return found

    def missing_allowed(self, tolerance: Tolerance) -> int:
        return int(tolerance.missing_share * max(self.eager_detections, self.exported_detections))

    def summary(self) -> str:
        masks = "" if self.min_mask_iou is None else f", lowest mask IoU {self.min_mask_iou:.3f}"
        edges = [f"{n} at the {what} edge" for n, what in ((self.borderline, "score"), (self.nms_flips, "NMS")) if n]
        if self.unmatched:
            edges.append(f"{self.unmatched} unexplained")
        edge = f", {' and '.join(edges)} unmatched" if edges else ""
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
    nms_thresh: float,
    into: Agreement,
) -> Agreement:
    """Add one image's comparison to ``into`` (and return it); the three passes of the module docstring."""
    into.images += 1
    into.eager_detections += len(eager)
    into.exported_detections += len(exported)
    sides = (eager, exported)
    pairs = _match(eager, exported, tolerance, range(len(eager)), range(len(exported)), gate=TIGHT)
    left = [_unpaired(len(dets), pairs, side) for side, dets in enumerate(sides)]
    explained = _explain(sides, left, tolerance, score_thresh, detections_per_image, nms_thresh, into)
    rest = [[k for k in left[side] if (side, k) not in explained] for side in (0, 1)]
    pairs += _match(eager, exported, tolerance, rest[0], rest[1], gate=1.0)
    rest = [[k for k in rest[side] if k in _unpaired(len(dets), pairs, side)] for side, dets in enumerate(sides)]
    near = _match(eager, exported, tolerance, rest[0], rest[1], gate=GATE)
    for i, j in pairs + near:
        _record_pair(eager, exported, i, j, into)
    for side, dets in enumerate(sides):
        for index in (k for k in rest[side] if k in _unpaired(len(dets), near, side)):
            _record_missing(side, index, sides, tolerance, into)
    return into


def _unpaired(count: int, pairs: list[tuple[int, int]], side: int) -> list[int]:
    """The indices in ``range(count)`` of one side (0 eager, 1 exported) that no pair holds."""
    paired = {pair[side] for pair in pairs}
    return [k for k in range(count) if k not in paired]


def _explain(
    sides: tuple[Detections, Detections],
    left: list[list[int]],
    tolerance: Tolerance,
    score_thresh: float,
    detections_per_image: int,
    nms_thresh: float,
    into: Agreement,
) -> set[tuple[int, int]]:
    """The ``(side, index)`` of every unpaired detection at the score or NMS edge (counted in ``into``).

    Best score first, so a flipped box is known before the lower ones it would have suppressed; repeated
    until nothing changes, since scores equal within the tolerance may come in either order."""
    explained: set[tuple[int, int]] = set()
    for side, dets in enumerate(sides):
        floor = _kept_floor(dets, score_thresh, detections_per_image)
        for index in left[side]:
            if float(dets.scores[index]) - floor <= EDGE * tolerance.score:
                explained.add((side, index))
                into.borderline += 1
    order = sorted(
        ((side, k) for side in (0, 1) for k in left[side] if (side, k) not in explained),
        key=lambda item: -float(sides[item[0]].scores[item[1]]),
    )
    changed, order_flips = True, 0
    while changed:
        changed = False
        for side, index in order:
            if (side, index) in explained:
                continue
            other = 1 - side
            flipped = {k for s, k in explained if s == other}
            if _at_nms_edge(sides[side], index, sides[other], flipped, nms_thresh, tolerance):
                explained.add((side, index))
                into.nms_flips += 1
                changed = True
                continue
            if order_flips < _order_flip_cap(sides):
                waiting = [k for s, k in order if s == other and (s, k) not in explained]
                twin = _order_twin(sides[side], index, sides[other], waiting, nms_thresh, tolerance)
                if twin is not None:
                    explained |= {(side, index), (other, twin)}
                    into.nms_flips += 2
                    order_flips += 1
                    changed = True
    return explained


def _order_flip_cap(sides: tuple[Detections, Detections]) -> int:
    """How many NMS order flips an image may have: ``ORDER_FLIPS`` of its detections, at least one."""
    return max(1, int(ORDER_FLIPS * max(len(sides[0]), len(sides[1]))))


def _order_twin(
    dets: Detections, index: int, others: Detections, waiting: list[int], nms_thresh: float, tolerance: Tolerance
) -> int | None:
    """An unexplained detection of ``others`` (among ``waiting``) that overlaps detection ``index`` past
    the NMS threshold with the same label and a score within ``EDGE`` score tolerances: the two are
    neighbouring candidates of near-equal score, and each side kept the one it scored higher."""
    if not waiting:
        return None
    candidates = torch.tensor(waiting, dtype=torch.long)
    iou = box_iou(dets.boxes[index : index + 1], others.boxes[candidates])[0]
    near = (others.scores[candidates] - dets.scores[index]).abs() <= EDGE * tolerance.score
    twins = (others.labels[candidates] == dets.labels[index]) & near & (iou > nms_thresh)
    found = torch.nonzero(twins).flatten()
    return None if len(found) == 0 else int(candidates[found[torch.argmax(iou[found])]])


def _at_nms_edge(
    dets: Detections, index: int, others: Detections, flipped: set[int], nms_thresh: float, tolerance: Tolerance
) -> bool:
    """Whether ``others`` may have suppressed detection ``index`` of ``dets`` by float noise: a same-label
    detection there scores at least as high (within the score tolerance) and overlaps it at the NMS
    threshold, or past it when that detection is itself a flip (``flipped``: indices into ``others``)."""
    if len(others) == 0:
        return False
    iou = box_iou(dets.boxes[index : index + 1], others.boxes)[0]
    rival = (others.labels == dets.labels[index]) & (others.scores >= dets.scores[index] - tolerance.score)
    at_threshold = (iou - nms_thresh).abs() <= tolerance.nms_iou
    past_a_flip = (iou > nms_thresh - tolerance.nms_iou) & _mask_of(flipped, len(others))
    return bool((rival & (at_threshold | past_a_flip)).any())


def _mask_of(indices: set[int], length: int) -> Tensor:
    mask = torch.zeros(length, dtype=torch.bool)
    mask[list(indices)] = True
    return mask


def _record_pair(eager: Detections, exported: Detections, i: int, j: int, into: Agreement) -> None:
    into.matched += 1
    into.max_box_diff = max(into.max_box_diff, float((eager.boxes[i] - exported.boxes[j]).abs().max()))
    into.max_score_diff = max(into.max_score_diff, float((eager.scores[i] - exported.scores[j]).abs()))
    if eager.masks is not None and exported.masks is not None:
        iou = _mask_iou(eager.masks[i], exported.masks[j])
        into.min_mask_iou = iou if into.min_mask_iou is None else min(into.min_mask_iou, iou)


def _record_missing(
    side: int, index: int, sides: tuple[Detections, Detections], tolerance: Tolerance, into: Agreement
) -> None:
    dets, others = sides[side], sides[1 - side]
    into.unmatched += 1
    into.problems.append(
        f"{('eager', 'exported')[side]} label {int(dets.labels[index])} score {float(dets.scores[index]):.3f} "
        f"at {_box(dets.boxes[index])}"
    )
    if _has_other_label_twin(dets, index, others, tolerance):
        into.labels_agree = False


def _match(
    eager: Detections,
    exported: Detections,
    tolerance: Tolerance,
    eager_indices: Sequence[int],
    exported_indices: Sequence[int],
    *,
    gate: float,
) -> list[tuple[int, int]]:
    """Greedy pairs (eager index, exported index) among the given indices, eager in descending score
    order, each at most ``gate`` tolerances apart."""
    rows, columns = (
        torch.tensor(list(eager_indices), dtype=torch.long),
        torch.tensor(list(exported_indices), dtype=torch.long),
    )
    if len(rows) == 0 or len(columns) == 0:
        return []
    scores = eager.scores[rows]
    cost = _cost(eager.boxes[rows], scores, exported.boxes[columns], exported.scores[columns], tolerance)
    cost[eager.labels[rows][:, None] != exported.labels[columns][None, :]] = float("inf")
    pairs = []
    for i in torch.argsort(scores, descending=True).tolist():
        j = int(torch.argmin(cost[i]))
        if cost[i, j] <= gate:
            pairs.append((int(rows[i]), int(columns[j])))
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
