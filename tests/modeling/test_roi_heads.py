"""The RoI heads stage (detkit/modeling/roi_heads.py): sampling, losses and inference on hand-made RoIs.

Covers: ground truths joining the proposals; RoI labels from the fg / bg IoU thresholds (background
index K, foreground labels the ground truths' 0..K-1) with their regression targets; the balanced
sample (batch_size_per_image, positive_fraction); crowd instances; the losses on hand-made
predictions (background column K, the ground-truth class's deltas only, averaging over all sampled
RoIs); an image without ground truth; and inference on chosen class probabilities: score_thresh,
per-class NMS, descending scores, detections_per_image, class-specific decoding, clipping, and the
background column never becoming a label. End-to-end training lives in tests/pipelines.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from detkit.config import RoIHeadsConfig
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import RoIHeads, SampledRoIs
from detkit.modeling.rpn import BOX_LOSS_BETA
from detkit.structures import Detections, Target

K = 2  # foreground classes; background is column K inside the head
CHANNELS = 4


def make_heads(num_classes: int = K, **cfg: float) -> RoIHeads:
    """RoI heads on one stride-4 level with a 2 x 2 RoIAlign and an 8-wide box head."""
    base = RoIHeadsConfig(
        pooler_resolution=2,
        representation_size=8,
        batch_size_per_image=1000,
        positive_fraction=0.5,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_image=100,
    )
    pooler = RoIPooler("roi_align", 2, strides=[4])
    head = MLPBoxHead(CHANNELS * 2 * 2, 8)
    return RoIHeads(pooler, head, BoxPredictor(8, num_classes), replace(base, **cfg))


def box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [float(x1), float(y1), float(x2), float(y2)]


def as_rows(boxes: Tensor) -> list[list[float]]:
    return sorted(boxes.tolist())


GT = box(0, 0, 10, 10)  # area 100


def one_object(label: int = 1) -> Target:
    return Target(boxes=torch.tensor([GT]), labels=torch.tensor([label]))


def test_ground_truths_join_the_proposals() -> None:
    target = Target(boxes=torch.tensor([GT, box(20, 20, 40, 30)]), labels=torch.tensor([1, 0]))
    sampled = make_heads().sample([torch.zeros((0, 4))], [target])
    # with no proposals at all, each ground truth is a perfect foreground RoI of its own class
    assert sampled.boxes[0].tolist() == target.boxes.tolist()
    assert sampled.labels[0].tolist() == [1, 0]
    assert sampled.matched_gt[0].tolist() == [0, 1]
    assert torch.equal(sampled.regression_targets[0], torch.zeros(2, 4))


@pytest.mark.parametrize("bg_lo", [0.0, 0.125])
def test_roi_labels_on_a_hand_made_iou_case(bg_lo: float) -> None:
    proposals = torch.tensor(
        [
            box(0, 0, 10, 8),  # IoU 0.8: foreground
            box(0, 0, 10, 5),  # IoU 0.5 = fg_iou_thresh: foreground (>=)
            box(0, 0, 10, 2.5),  # IoU 0.25: background
            box(0, 0, 10, 1.25),  # IoU 0.125: background when bg_iou_thresh_lo is 0.125 (inclusive) or 0
            box(0, 0, 10, 1),  # IoU 0.1: ignored when lo = 0.125
            box(50, 50, 60, 60),  # IoU 0: ignored when lo = 0.125, background when lo = 0
        ]
    )
    heads = make_heads(fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5, bg_iou_thresh_lo=bg_lo)
    sampled = heads.sample([proposals], [one_object(label=1)])
    boxes, labels = sampled.boxes[0], sampled.labels[0]
    foreground = labels < K
    assert as_rows(boxes[foreground]) == sorted([proposals[0].tolist(), proposals[1].tolist(), GT])
    background = [proposals[2].tolist(), proposals[3].tolist()]
    if bg_lo == 0.0:
        background += [proposals[4].tolist(), proposals[5].tolist()]
    assert as_rows(boxes[~foreground]) == sorted(background)
    assert set(labels.tolist()) == {1, K}  # foreground RoIs take the ground truth's label, background K
    assert foreground[: int(foreground.sum())].all()  # foreground first
    assert (sampled.matched_gt[0][foreground] == 0).all() and (sampled.matched_gt[0][~foreground] == -1).all()
    assert torch.equal(sampled.regression_targets[0][~foreground], torch.zeros(len(background), 4))
    # [0, 0, 10, 8] -> [0, 0, 10, 10] with weights (10, 10, 5, 5): dy = 10 * (5 - 4) / 8, dh = 5 log(10 / 8)
    first = boxes.tolist().index(proposals[0].tolist())
    expected = torch.tensor([0.0, 1.25, 0.0, 5 * math.log(1.25)])
    torch.testing.assert_close(sampled.regression_targets[0][first], expected)


@pytest.mark.parametrize(
    ("num_fg", "batch_size", "fraction", "want_fg", "want_bg"),
    [
        (39, 16, 0.25, 4, 12),  # 39 proposals + the ground truth: the fraction caps foreground
        (39, 20, 0.5, 10, 10),
        (2, 16, 0.25, 3, 13),  # 2 proposals + the ground truth: background fills the rest
    ],
)
def test_sample_respects_batch_size_and_positive_fraction(
    num_fg: int, batch_size: int, fraction: float, want_fg: int, want_bg: int
) -> None:
    far = [box(100 + 20 * i, 0, 110 + 20 * i, 10) for i in range(100)]
    proposals = torch.tensor([GT] * num_fg + [box(0, 0, 10, 4.5)] * 7 + far)  # IoU 0.45: background too
    torch.manual_seed(0)
    heads = make_heads(batch_size_per_image=batch_size, positive_fraction=fraction)
    # two images: each samples its own batch_size_per_image RoIs
    sampled = heads.sample([proposals, proposals[num_fg:]], [one_object(), one_object()])
    labels = sampled.labels[0]
    assert (labels < K).sum().item() == want_fg and (labels == K).sum().item() == want_bg
    assert len(sampled.boxes[1]) == batch_size and (sampled.labels[1] < K).sum().item() == 1  # just the gt


def test_crowd_instances_neither_join_nor_match() -> None:
    crowd = box(40, 40, 60, 60)
    target = Target(boxes=torch.tensor([crowd, GT]), labels=torch.tensor([0, 1]), iscrowd=torch.tensor([True, False]))
    sampled = make_heads().sample([torch.tensor([crowd])], [target])
    # the proposal on the crowd region is background; the crowd box is not added as a proposal
    assert sampled.boxes[0].tolist() == [GT, crowd]
    assert sampled.labels[0].tolist() == [1, K]
    # matched_gt indexes the non-crowd instances (what the mask loss reads from without_crowd())
    assert sampled.matched_gt[0].tolist() == [0, -1]


def test_losses_by_hand() -> None:
    heads = make_heads()
    sampled = SampledRoIs(
        boxes=[torch.zeros(3, 4)],
        labels=[torch.tensor([1, 0, K])],
        regression_targets=[torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4])],
        matched_gt=[torch.tensor([0, 1, -1])],
    )
    class_logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 30.0]])
    deltas = torch.zeros(3, 4 * K)
    deltas[0, 0:4] = 100.0  # RoI 0 is class 1: its class-0 deltas carry no loss
    deltas[1, 4:8] = 100.0  # RoI 1 is class 0: its class-1 deltas carry no loss
    deltas[2] = 100.0  # RoI 2 is background: no box loss at all
    losses = heads.losses(class_logits, deltas, sampled)
    # cross-entropy log 3 for the two uniform rows, ~0 for the background row confident in column K
    assert losses["loss_cls"].item() == pytest.approx(2 * math.log(3) / 3, rel=1e-5)
    # only RoI 0's class-1 deltas (0 against target 0.5): smooth-L1 0.5 - beta / 2, over all 3 sampled RoIs
    assert losses["loss_box"].item() == pytest.approx((0.5 - BOX_LOSS_BETA / 2) / 3, rel=1e-5)


def features(height: int = 16, width: int = 16, num_images: int = 1) -> list[Tensor]:
    """One stride-4 level of smooth, non-constant features (so pooled RoIs differ)."""
    ys, xs = torch.meshgrid(torch.arange(height) / height, torch.arange(width) / width, indexing="ij")
    level = torch.stack([xs, ys, xs * ys, 1 - xs])[None].repeat(num_images, 1, 1, 1)
    return [level]


@pytest.mark.parametrize("bg_lo", [0.0, 0.1])
def test_image_without_ground_truth_gives_finite_losses_and_zero_box_loss(bg_lo: float) -> None:
    torch.manual_seed(0)
    heads = make_heads(bg_iou_thresh_lo=bg_lo).train()
    proposals = [torch.tensor([box(0, 0, 20, 20), box(30, 30, 60, 50)])]
    detections, losses = heads.detect(features(), proposals, [(64, 64)], [Target()])
    assert detections is None
    assert set(losses) == {"loss_cls", "loss_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"].item() == 0.0
    if bg_lo == 0.0:  # both proposals are background: cross-entropy of the near-uniform logits, ~log(K + 1)
        assert losses["loss_cls"].item() == pytest.approx(math.log(K + 1), rel=0.05)
    sum(losses.values()).backward()


def test_detect_gives_losses_with_targets_and_detections_in_eval() -> None:
    torch.manual_seed(0)
    heads = make_heads(score_thresh=0.0)
    proposals = [torch.tensor([box(0, 0, 20, 20), box(30, 30, 60, 50)]), torch.tensor([box(4, 4, 40, 40)])]
    image_sizes = [(64, 64), (64, 64)]
    targets = [one_object(), Target()]
    detections, losses = heads.train().detect(features(num_images=2), proposals, image_sizes, targets)
    assert detections is None and set(losses) == {"loss_cls", "loss_box"}
    detections, losses = heads.eval().detect(features(num_images=2), proposals, image_sizes)
    assert losses == {} and len(detections) == 2
    # score_thresh 0 keeps every class of every (well-separated) proposal: K detections per proposal
    assert [len(d) for d in detections] == [2 * K, K]
    detections, losses = heads.eval().detect(features(num_images=2), proposals, image_sizes, targets)
    assert set(losses) == {"loss_cls", "loss_box"} and detections is not None


def detect_one(
    heads: RoIHeads,
    probabilities: list[list[float]],
    proposals: list[list[float]],
    deltas: Tensor | None = None,
    image_size: tuple[int, int] = (64, 64),
) -> Detections:
    """Inference on one image whose RoIs get exactly ``probabilities`` (K + 1 per RoI, summing to 1)."""
    class_logits = torch.tensor(probabilities).log()  # softmax(log p) = p
    if deltas is None:
        deltas = torch.zeros(len(proposals), 4 * heads.num_classes)
    (detections,) = heads.inference(class_logits, deltas, [torch.tensor(proposals)], [image_size])
    return detections


P0, P1, P2 = box(0, 0, 10, 10), box(1, 0, 11, 10), box(50, 50, 60, 60)  # IoU(P0, P1) = 90 / 110 = 0.82
PROBABILITIES = [[0.7, 0.1, 0.2], [0.6, 0.3, 0.1], [0.02, 0.9, 0.08]]  # (class 0, class 1, background)


def test_per_class_nms_collapses_one_class_and_keeps_two() -> None:
    detections = detect_one(make_heads(), PROBABILITIES, [P0, P1, P2])
    # class 0: P0 (0.7) suppresses P1 (0.6); class 1: P1 (0.3) suppresses P0 (0.1); P2 (0.02) is under
    # score_thresh for class 0. P0 as class 0 and P1 as class 1 overlap but are different classes: both stay.
    assert detections.boxes.tolist() == [P2, P0, P1]
    assert detections.labels.tolist() == [1, 0, 1]
    torch.testing.assert_close(detections.scores, torch.tensor([0.9, 0.7, 0.3]))
    assert detections.boxes.dtype == torch.float32 and detections.labels.dtype == torch.int64


def test_detections_per_image_keeps_the_best_in_descending_order() -> None:
    probabilities = [[p, 1 - p] for p in (0.3, 0.9, 0.5, 0.7, 0.6)]
    proposals = [box(12 * i, 0, 12 * i + 10, 10) for i in range(5)]  # no two overlap
    detections = detect_one(make_heads(num_classes=1, detections_per_image=3), probabilities, proposals)
    torch.testing.assert_close(detections.scores, torch.tensor([0.9, 0.7, 0.6]))
    assert detections.boxes.tolist() == [proposals[1], proposals[3], proposals[4]]
    everything = detect_one(make_heads(num_classes=1), probabilities, proposals)
    assert len(everything) == 5 and torch.all(everything.scores[:-1] >= everything.scores[1:])


def test_score_thresh_drops_low_scores() -> None:
    probabilities = [[p, 1 - p] for p in (0.9, 0.4, 0.6, 0.04)]
    proposals = [box(12 * i, 0, 12 * i + 10, 10) for i in range(4)]
    detections = detect_one(make_heads(num_classes=1, score_thresh=0.5), probabilities, proposals)
    torch.testing.assert_close(detections.scores, torch.tensor([0.9, 0.6]))
    assert len(detect_one(make_heads(num_classes=1, score_thresh=0.05), probabilities, proposals)) == 3


def test_background_is_never_a_label() -> None:
    detections = detect_one(make_heads(score_thresh=0.0), [[0.02, 0.03, 0.95]], [P2])
    # both foreground classes come out at their own (low) scores; the background's 0.95 does not
    assert sorted(detections.labels.tolist()) == [0, 1]
    torch.testing.assert_close(detections.scores, torch.tensor([0.03, 0.02]))


def test_boxes_decode_with_their_own_class_deltas_and_are_clipped() -> None:
    proposal = box(20, 20, 40, 40)  # 20 x 20, RoI-head weights (10, 10, 5, 5)
    deltas = torch.tensor([[-1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]])  # class 0: x - 2 px; class 1: y + 4 px
    detections = detect_one(make_heads(), [[0.45, 0.45, 0.1]], [proposal], deltas, image_size=(42, 64))
    by_label = dict(zip(detections.labels.tolist(), detections.boxes.tolist()))
    assert by_label[0] == pytest.approx(box(18, 20, 38, 40))
    assert by_label[1] == pytest.approx(box(20, 24, 40, 42))  # y2 = 44 clipped to the image height 42


def test_boxes_outside_the_image_are_dropped_and_images_stay_apart() -> None:
    heads = make_heads(num_classes=1)
    outside = box(70, 0, 80, 10)  # clipped to the 64 px wide image: zero width
    proposals = [torch.tensor([P0, outside]), torch.tensor([P2])]
    class_logits = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]).log()
    first, second = heads.inference(class_logits, torch.zeros(3, 4), proposals, [(64, 64), (64, 64)])
    assert first.boxes.tolist() == [P0] and second.boxes.tolist() == [P2]
    torch.testing.assert_close(second.scores, torch.tensor([0.7]))


def test_an_image_without_proposals_gets_empty_detections() -> None:
    # Reachable in Fast R-CNN (an image whose cached selective-search proposals are empty) and in
    # Faster R-CNN (an RPN whose score_thresh or min_size leaves nothing).
    proposals = [torch.zeros((0, 4)), torch.tensor([P2])]
    class_logits = torch.tensor([[0.7, 0.2, 0.1]]).log()
    empty, one = make_heads().inference(class_logits, torch.zeros(1, 4 * K), proposals, [(64, 64), (64, 64)])
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,) and empty.labels.shape == (0,)
    assert one.boxes.tolist() == [P2, P2] and one.labels.tolist() == [0, 1]
