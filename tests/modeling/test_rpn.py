"""The Region Proposal Network stage (detkit/modeling/rpn.py) on hand-made anchors and predictions.

Covers: the flattening of the head's maps into the anchors' (row, column, anchor) order; anchor
labels (foreground at IoU >= fg_iou_thresh, each ground truth's best anchor foreground however low
its IoU, background below bg_iou_thresh, ignored in between) and the balanced sample
(batch_size_per_image, positive_fraction), both read from the gradient of ``loss_rpn_cls``; the box
loss on a hand-computed case and its normalisation; an image without ground truth; and inference:
pre-NMS top-k per level, NMS per level, post-NMS top-k per image, score_thresh, min_size and
clipping to each image's own size. The matcher and sampler themselves are tested in tests/ops.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from detkit.config import RPNConfig
from detkit.modeling.anchors import AnchorGenerator
from detkit.modeling.rpn import BOX_LOSS_BETA, RegionProposalNetwork, RPNHead, RPNPredictions
from detkit.structures import ImageBatch, Target

# Thresholds that are exact binary fractions, so IoUs of 0.75 and 0.25 sit exactly on them.
FG, BG = 0.75, 0.25


def make_rpn(anchor_size: int = 8, num_channels: int = 4, **cfg: float) -> RegionProposalNetwork:
    """An RPN with one anchor (``anchor_size`` square) per location on one level."""
    base = RPNConfig(fg_iou_thresh=FG, bg_iou_thresh=BG, batch_size_per_image=1000, positive_fraction=0.5)
    generator = AnchorGenerator(((anchor_size,),), ((1.0,),))
    return RegionProposalNetwork(generator, RPNHead(num_channels, 1), replace(base, **cfg))


def predictions_for(
    objectness: Tensor, deltas: Tensor | None = None, per_level: list[int] | None = None
) -> RPNPredictions:
    """``[N, T]`` logits (and ``[N, T, 4]`` deltas, zero by default) as the RPN's flattened predictions."""
    if deltas is None:
        deltas = torch.zeros((*objectness.shape, 4))
    return RPNPredictions(objectness, deltas, per_level or [objectness.shape[1]])


def sampled_labels(rpn: RegionProposalNetwork, anchors: Tensor, target: Target) -> tuple[Tensor, Tensor]:
    """Per anchor: 1 sampled as foreground, 0 sampled as background, -1 not sampled; and the loss normaliser.

    Read from the gradient of ``loss_rpn_cls`` at zero logits: d BCE(x, y) / dx = sigmoid(x) - y = 0.5 - y,
    divided by the number of sampled anchors, and exactly 0 for an anchor outside the sample.
    """
    objectness = torch.zeros((1, len(anchors)), requires_grad=True)
    losses = rpn.losses(predictions_for(objectness), anchors, [target])
    losses["loss_rpn_cls"].backward()
    grad = objectness.grad[0]
    labels = torch.full((len(anchors),), -1, dtype=torch.int64)
    labels[grad < 0] = 1
    labels[grad > 0] = 0
    normaliser = 0.5 / grad.abs().max()
    return labels, normaliser


def box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [float(x1), float(y1), float(x2), float(y2)]


def test_anchor_labels_on_a_hand_made_iou_case() -> None:
    gt = torch.tensor([box(0, 0, 10, 10), box(30, 30, 50, 50)])  # areas 100 and 400
    anchors = torch.tensor(
        [
            box(0, 0, 10, 10),  # IoU 1 with gt 0: foreground
            box(0, 0, 10, 7.5),  # IoU 0.75 = fg_iou_thresh: foreground (>=)
            box(0, 0, 10, 5),  # IoU 0.5: between the thresholds, ignored
            box(0, 0, 10, 2.5),  # IoU 0.25 = bg_iou_thresh: ignored (background is strictly below)
            box(0, 0, 10, 2),  # IoU 0.2: background
            box(70, 70, 80, 80),  # IoU 0: background
            box(30, 30, 38, 40),  # IoU 80/400 = 0.2 with gt 1, but gt 1's best anchor: foreground
            box(30, 30, 35, 40),  # IoU 50/400 = 0.125: background
        ]
    )
    target = Target(boxes=gt, labels=torch.tensor([0, 1]))
    labels, normaliser = sampled_labels(make_rpn(), anchors, target)
    assert labels.tolist() == [1, 1, -1, -1, 0, 0, 1, 0]
    assert normaliser.item() == pytest.approx(6)  # the loss averages over every sampled anchor


def test_best_anchor_of_a_ground_truth_regresses_towards_it() -> None:
    # The only anchor touching the ground truth has IoU 80 / 120 = 2/3 < 0.75: foreground by the
    # low-quality rule, with deltas (dx = 2 / 10, 0, 0, 0) towards it.
    anchors = torch.tensor([box(0, 0, 10, 10), box(60, 60, 70, 70)])
    target = Target(boxes=torch.tensor([box(2, 0, 12, 10)]), labels=torch.tensor([0]))
    rpn = make_rpn()
    zero = rpn.losses(predictions_for(torch.zeros(1, 2)), anchors, [target])
    # smooth-L1(0.2) = 0.2 - beta / 2, summed over the one foreground anchor, over 2 sampled anchors
    assert zero["loss_rpn_box"].item() == pytest.approx((0.2 - BOX_LOSS_BETA / 2) / 2)
    assert zero["loss_rpn_cls"].item() == pytest.approx(math.log(2))  # BCE at logit 0, whatever the label
    exact = torch.zeros(1, 2, 4)
    exact[0, 0] = torch.tensor([0.2, 0.0, 0.0, 0.0])
    # the background anchor's deltas carry no box loss, however wrong
    exact[0, 1] = torch.tensor([50.0, -50.0, 9.0, 9.0])
    perfect = rpn.losses(predictions_for(torch.zeros(1, 2), exact), anchors, [target])
    assert perfect["loss_rpn_box"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("num_fg", "num_bg", "batch_size", "fraction", "want_fg", "want_bg"),
    [
        (20, 30, 8, 0.25, 2, 6),  # plenty of both: the fraction caps foreground
        (20, 30, 16, 0.5, 8, 8),
        (3, 30, 16, 0.5, 3, 13),  # few foreground: background fills the batch
        (20, 4, 16, 0.5, 8, 4),  # few background: the batch is not filled with extra foreground
    ],
)
def test_sample_respects_batch_size_and_positive_fraction(
    num_fg: int, num_bg: int, batch_size: int, fraction: float, want_fg: int, want_bg: int
) -> None:
    gt = box(0, 0, 10, 10)
    ignored = box(0, 0, 10, 5)  # IoU 0.5
    far = [box(100 + 20 * i, 0, 110 + 20 * i, 10) for i in range(num_bg)]
    anchors = torch.tensor([gt] * num_fg + [ignored] * 5 + far)
    target = Target(boxes=torch.tensor([gt]), labels=torch.tensor([0]))
    torch.manual_seed(0)
    rpn = make_rpn(batch_size_per_image=batch_size, positive_fraction=fraction)
    labels, normaliser = sampled_labels(rpn, anchors, target)
    assert (labels == 1).sum().item() == want_fg and (labels == 0).sum().item() == want_bg
    assert (labels[:num_fg] != 0).all()  # only foreground anchors are sampled as foreground
    assert (labels[num_fg : num_fg + 5] == -1).all() and (labels[num_fg + 5 :] != 1).all()
    assert normaliser.item() == pytest.approx(want_fg + want_bg)


def test_image_without_ground_truth_has_finite_objectness_and_zero_box_loss() -> None:
    anchors = torch.tensor([box(0, 0, 10, 10), box(5, 5, 20, 20), box(30, 0, 40, 12)])
    objectness = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    deltas = torch.full((1, 3, 4), 3.0, requires_grad=True)
    losses = make_rpn().losses(predictions_for(objectness, deltas), anchors, [Target()])
    assert torch.isfinite(losses["loss_rpn_cls"])
    # every anchor is background: BCE(x, 0) = softplus(x), averaged
    expected = torch.nn.functional.softplus(torch.tensor([2.0, -1.0, 0.5])).mean()
    assert losses["loss_rpn_cls"].item() == pytest.approx(expected.item())
    assert losses["loss_rpn_box"].item() == 0.0
    sum(losses.values()).backward()
    assert torch.equal(deltas.grad, torch.zeros_like(deltas))


def test_batch_losses_normalise_over_both_images() -> None:
    anchors = torch.tensor([box(0, 0, 10, 10), box(60, 60, 70, 70)])
    with_object = Target(boxes=torch.tensor([box(2, 0, 12, 10)]), labels=torch.tensor([0]))
    losses = make_rpn().losses(predictions_for(torch.zeros(2, 2)), anchors, [with_object, Target()])
    # one foreground anchor (smooth-L1 0.2 - beta/2) among 2 + 2 sampled anchors
    assert losses["loss_rpn_box"].item() == pytest.approx((0.2 - BOX_LOSS_BETA / 2) / 4)


class FixedHead(nn.Module):
    """Stands in for RPNHead: returns preset per-level objectness and delta maps whatever the features."""

    def __init__(self, objectness: list[Tensor], deltas: list[Tensor]) -> None:
        super().__init__()
        self.objectness, self.deltas = objectness, deltas

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return self.objectness, self.deltas


def test_forward_flattens_maps_in_the_anchors_order() -> None:
    shapes = [(3, 4), (2, 2)]  # (H, W) of two levels, A = 2 anchors per location
    # distinct values everywhere, so any permutation of anchors, cells or coordinates shows
    objectness = [torch.arange(4.0 * h * w).view(2, 2, h, w) + 1000 * i for i, (h, w) in enumerate(shapes)]
    deltas = [torch.arange(16.0 * h * w).view(2, 8, h, w) - 1000 * i for i, (h, w) in enumerate(shapes)]
    rpn = RegionProposalNetwork(AnchorGenerator(((8, 16),), ((1.0,),)), FixedHead(objectness, deltas), RPNConfig())
    features = [torch.zeros(2, 1, h, w) for h, w in shapes]
    predictions = rpn(features)
    assert predictions.num_anchors_per_level == [24, 8]
    assert predictions.objectness.shape == (2, 32) and predictions.deltas.shape == (2, 32, 4)
    offset = 0
    for level, (h, w) in enumerate(shapes):
        for n in range(2):
            for row in range(h):
                for col in range(w):
                    for a in range(2):
                        index = offset + (row * w + col) * 2 + a
                        assert predictions.objectness[n, index] == objectness[level][n, a, row, col]
                        want = deltas[level][n, 4 * a : 4 * a + 4, row, col]
                        assert predictions.deltas[n, index].tolist() == want.tolist()
        offset += h * w * 2


def test_propose_decodes_the_peak_cell_and_clips_to_each_image() -> None:
    # One level of 4 x 6 cells on a batch padded to 32 x 48: stride 8, anchor (row r, col c) =
    # [8c - 4, 8r - 4, 8c + 4, 8r + 4]. Image 0 peaks at (2, 3) with dx = 0.5 (half an 8 px anchor to
    # the right); image 1 peaks at (3, 5), whose anchor [36, 20, 44, 28] overhangs its 26 x 40 image.
    objectness = torch.full((2, 1, 4, 6), -5.0)
    objectness[0, 0, 2, 3] = 5.0
    objectness[1, 0, 3, 5] = 5.0
    deltas = torch.zeros(2, 4, 4, 6)
    deltas[0, 0, 2, 3] = 0.5
    rpn = RegionProposalNetwork(
        AnchorGenerator(((8,),), ((1.0,),)),
        FixedHead([objectness], [deltas]),
        RPNConfig(post_nms_topk_test=1, post_nms_topk_train=1),
    ).eval()
    sizes = [(32, 48), (26, 40)]
    batch = ImageBatch(tensors=torch.zeros(2, 3, 32, 48), image_sizes=sizes, original_sizes=sizes)
    proposals, losses = rpn.propose(batch, [torch.zeros(2, 1, 4, 6)])
    assert losses == {}
    assert proposals[0].tolist() == [[24.0, 12.0, 32.0, 20.0]]
    assert proposals[1].tolist() == [[36.0, 20.0, 40.0, 26.0]]
    targets = [Target(boxes=torch.tensor([box(20, 12, 28, 20)]), labels=torch.tensor([0])), Target()]
    _, losses = rpn.propose(batch, [torch.zeros(2, 1, 4, 6)], targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box"} and all(torch.isfinite(v) for v in losses.values())


# Inference on two levels of well-separated anchors (no NMS interaction), zero deltas:
# level 0: five 10 x 10 boxes, logits [1, 5, 2, 4, 3]; level 1: three 20 x 20 boxes, logits [0.5, 6, 2.5].
LEVEL0 = [box(20 * i, 0, 20 * i + 10, 10) for i in range(5)]
LEVEL1 = [box(30 * i, 30, 30 * i + 20, 50) for i in range(3)]
LOGITS = [1.0, 5.0, 2.0, 4.0, 3.0, 0.5, 6.0, 2.5]


def infer(
    rpn: RegionProposalNetwork,
    levels: list[list[list[float]]],
    logits: list[float],
    image_sizes: list[tuple[int, int]] | None = None,
) -> list[list[list[float]]]:
    """Proposals (as lists) for one image (or several sharing ``logits``) from per-level anchors."""
    image_sizes = image_sizes or [(100, 100)]
    objectness = torch.tensor([logits] * len(image_sizes))
    anchors = [torch.tensor(level) for level in levels]
    predictions = predictions_for(objectness, per_level=[len(level) for level in levels])
    return [p.tolist() for p in rpn.inference(predictions, anchors, image_sizes)]


def test_pre_nms_topk_is_per_level_and_output_is_best_first() -> None:
    rpn = make_rpn(pre_nms_topk_test=2, post_nms_topk_test=100).eval()
    (proposals,) = infer(rpn, [LEVEL0, LEVEL1], LOGITS)
    # level 0 keeps logits 5 and 4, level 1 keeps 6 and 2.5: level 1's 2.5 beats level 0's dropped 3
    assert proposals == [LEVEL1[1], LEVEL0[1], LEVEL0[3], LEVEL1[2]]


def test_post_nms_topk_caps_each_image() -> None:
    rpn = make_rpn(pre_nms_topk_test=100, post_nms_topk_test=3).eval()
    (proposals,) = infer(rpn, [LEVEL0, LEVEL1], LOGITS)
    assert proposals == [LEVEL1[1], LEVEL0[1], LEVEL0[3]]


def test_training_uses_the_train_topks() -> None:
    rpn = make_rpn(pre_nms_topk_train=1, post_nms_topk_train=100, pre_nms_topk_test=100, post_nms_topk_test=1)
    assert infer(rpn.train(), [LEVEL0, LEVEL1], LOGITS) == [[LEVEL1[1], LEVEL0[1]]]
    assert infer(rpn.eval(), [LEVEL0, LEVEL1], LOGITS) == [[LEVEL1[1]]]


def test_nms_is_applied_within_each_level_only() -> None:
    a, b = box(0, 0, 10, 10), box(1, 0, 11, 10)  # IoU 90 / 110 = 0.82 > nms_thresh 0.7
    (proposals,) = infer(make_rpn().eval(), [[a, b], [a]], [3.0, 2.0, 1.0])
    # b is suppressed by a on level 0; the same box as a on level 1 survives
    assert proposals == [a, a]


def test_score_thresh_is_on_the_sigmoid() -> None:
    boxes = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]
    (proposals,) = infer(make_rpn(score_thresh=0.5).eval(), [boxes], [-1.0, 1.0, 2.0])
    assert proposals == [boxes[2], boxes[1]]  # sigmoid(-1) = 0.27 < 0.5


def test_proposals_are_clipped_to_their_image_and_small_ones_dropped() -> None:
    anchors = [
        box(-5, -5, 10, 10),  # overhangs the top left
        box(25, 5, 40, 15),  # overhangs the right of the first image (W = 30)
        box(29.5, 0, 40, 10),  # 0.5 px wide once clipped to W = 30: under min_size 1
        box(0, 30, 10, 40),  # below the first image: zero height once clipped
    ]
    rpn = make_rpn(min_size=1.0).eval()
    first, second = infer(rpn, [anchors], [4.0, 3.0, 2.0, 1.0], image_sizes=[(20, 30), (40, 12)])
    assert first == [box(0, 0, 10, 10), box(25, 5, 30, 15)]
    # the second image (H = 40, W = 12) clips the same anchors to its own size
    assert first != second
    assert second == [box(0, 0, 10, 10), box(0, 30, 10, 40)]
