"""The Mask R-CNN mask branch (detkit/modeling/mask_head.py) and its wiring in the RoI heads.

Covers: logits of one (2 x pooler_resolution)^2 map per class (28 x 28 for the 14 x 14 pooler), each
RoI pooled from its own image; the mask target of a hand-made box and mask pair and the choice of
the matched ground truth's mask (crowd instances excluded); the loss reading the ground-truth
class's channel only; inference taking each detection's own class; and probabilities pasted into
the image frame (detkit.ops.masks.paste_masks) landing on their boxes, the right way round.
Agreement of targets and pasting with torchvision's arithmetic is tested in tests/ops/test_masks.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torchvision.ops import masks_to_boxes

from detkit.config import RoIHeadsConfig
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.mask_head import MaskBranch, MaskHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import RoIHeads
from detkit.ops.masks import paste_masks
from detkit.structures import Target

K = 3
CHANNELS = 4


def make_branch(pooler_resolution: int = 14, num_classes: int = K) -> MaskBranch:
    """A mask branch on one stride-4 level: RoIAlign, two 8-channel convs, the deconv, K masks."""
    torch.manual_seed(0)
    pooler = RoIPooler("roi_align", pooler_resolution, strides=[4], sampling_ratio=2)
    return MaskBranch(pooler, MaskHead(CHANNELS, channels=8, num_convs=2), num_classes, channels=8)


def test_logits_are_one_28x28_map_per_class() -> None:
    branch = make_branch()
    assert branch.resolution == 28
    features = [torch.rand(2, CHANNELS, 16, 16)]
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [8.0, 4.0, 40.0, 60.0]]), torch.tensor([[10.0, 10.0, 30.0, 50.0]])]
    assert branch(features, boxes).shape == (3, K, 28, 28)
    assert branch(features, [torch.zeros((0, 4)), torch.zeros((0, 4))]).shape == (0, K, 28, 28)
    small = make_branch(pooler_resolution=7)
    assert small.resolution == 14 and small(features, boxes).shape == (3, K, 14, 14)


def test_each_roi_is_pooled_from_its_own_image() -> None:
    # All biases start at zero and every layer is linear + ReLU: zero features give exactly zero logits.
    features = [torch.cat([torch.zeros(1, CHANNELS, 16, 16), torch.rand(1, CHANNELS, 16, 16) + 0.5])]
    same_box = torch.tensor([[4.0, 4.0, 40.0, 40.0]])
    logits = make_branch()(features, [same_box, same_box])
    assert torch.equal(logits[0], torch.zeros_like(logits[0]))
    assert logits[1].abs().max() > 0


def test_mask_target_of_a_hand_made_box_and_mask() -> None:
    # Mask 0 covers columns 10..23 (every row); the 28 x 28 box [10, 10, 38, 38] is one pixel per bin.
    # RoIAlign without the half-pixel offset samples bin j at x = 10 + j + 0.5: between pixels 23 and
    # 24 for j = 13, so the target is 1 left of column 13, 0.5 on it, 0 right of it.
    gt_masks = torch.zeros(2, 48, 64, dtype=torch.uint8)
    gt_masks[0, :, 10:24] = 1
    gt_masks[1] = 1
    boxes = torch.tensor([[10.0, 10.0, 38.0, 38.0], [10.0, 10.0, 38.0, 38.0]])
    targets = make_branch().targets(gt_masks, boxes, torch.tensor([0, 1]))
    assert targets.shape == (2, 28, 28) and targets.dtype == torch.float32
    expected = torch.zeros(28, 28)
    expected[:, :13] = 1.0
    expected[:, 13] = 0.5
    assert torch.equal(targets[0], expected)
    assert torch.equal(targets[1], torch.ones(28, 28))  # the second RoI reads its own matched mask


def test_loss_reads_the_ground_truth_class_channel_only() -> None:
    targets = torch.zeros(2, 28, 28)
    targets[:, :, :14] = 1.0
    logits = torch.full((2, K, 28, 28), 50.0)
    logits[:, :, :, :14] = -50.0  # confidently wrong everywhere ...
    logits[0, 2] = 0.0  # ... except RoI 0's class 2 (BCE log 2 per pixel)
    logits[1, 0] = 40.0 * (2 * targets[1] - 1)  # and RoI 1's class 0 (confidently right, BCE ~0)
    logits.requires_grad_(True)
    loss = make_branch().losses(logits, torch.tensor([2, 0]), targets)
    # the mean over both RoIs' pixels
    assert loss.item() == pytest.approx(math.log(2) / 2, rel=1e-5)
    loss.backward()
    others = torch.ones(2, K, dtype=torch.bool)
    others[0, 2] = others[1, 0] = False
    assert torch.equal(logits.grad[others], torch.zeros_like(logits.grad[others]))
    assert logits.grad[0, 2].abs().min() > 0


def test_loss_without_positive_rois_is_zero_and_differentiable() -> None:
    logits = torch.zeros((0, K, 28, 28), requires_grad=True)
    loss = make_branch().losses(logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28))
    assert loss.item() == 0.0
    loss.backward()


def test_inference_takes_each_detections_own_class() -> None:
    logits = torch.stack([torch.full((28, 28), float(k - 1)) for k in range(K)])[None].repeat(2, 1, 1, 1)
    probabilities = MaskBranch.inference(logits, torch.tensor([2, 0]))
    assert probabilities.shape == (2, 28, 28)
    torch.testing.assert_close(probabilities[0], torch.full((28, 28), torch.sigmoid(torch.tensor(1.0)).item()))
    torch.testing.assert_close(probabilities[1], torch.full((28, 28), torch.sigmoid(torch.tensor(-1.0)).item()))


def test_pasted_masks_land_on_their_boxes() -> None:
    full = torch.ones(28, 28)
    left_half = torch.zeros(28, 28)
    left_half[:, :14] = 1.0
    # wider than tall, and taller than wide, so a transposed paste shows
    boxes = torch.tensor([[20.0, 10.0, 44.0, 30.0], [4.0, 30.0, 20.0, 46.0]])
    pasted = paste_masks(torch.stack([full, left_half]), boxes, (48, 64))
    assert pasted.shape == (2, 48, 64)
    extents = masks_to_boxes(pasted > 0.5)
    torch.testing.assert_close(extents[0], boxes[0], atol=1.0, rtol=0)
    # the left half of box 1: x from 4 to its centre 12, its full height
    torch.testing.assert_close(extents[1], torch.tensor([4.0, 30.0, 12.0, 46.0]), atol=1.0, rtol=0)


def make_heads_with_masks(score_thresh: float = 0.0) -> RoIHeads:
    """Box heads on the same stride-4 level, with the mask branch passed in (Mask R-CNN)."""
    torch.manual_seed(0)
    cfg = RoIHeadsConfig(pooler_resolution=2, representation_size=8, batch_size_per_image=64, score_thresh=score_thresh)
    return RoIHeads(
        RoIPooler("roi_align", 2, strides=[4]), MLPBoxHead(CHANNELS * 4, 8), BoxPredictor(8, K), cfg, make_branch()
    )


def test_mask_loss_targets_come_from_each_rois_own_non_crowd_instance() -> None:
    heads = make_heads_with_masks().train()
    seen: dict[str, Tensor] = {}
    losses = heads.mask_branch.losses

    def spy(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        seen["labels"], seen["targets"] = labels, targets
        return losses(logits, labels, targets)

    heads.mask_branch.losses = spy
    # instance 1 is a crowd region whose mask is full; instance 2 (the second non-crowd one) has an
    # empty mask, so a target read from the crowd-inclusive masks would show as ones
    masks = torch.ones(3, 48, 64, dtype=torch.uint8)
    masks[2] = 0
    target = Target(
        boxes=torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 4.0, 50.0, 20.0], [30.0, 24.0, 50.0, 44.0]]),
        labels=torch.tensor([0, 1, 2]),
        masks=masks,
        iscrowd=torch.tensor([False, True, False]),
    )
    features = [torch.rand(1, CHANNELS, 12, 16)]
    _, result = heads.detect(features, [torch.zeros((0, 4))], [(48, 64)], [target])
    assert torch.isfinite(result["loss_mask"])
    labels, targets = seen["labels"], seen["targets"]
    assert sorted(labels.tolist()) == [0, 2]  # the two non-crowd ground truths, joined as proposals
    torch.testing.assert_close(targets[labels == 0], torch.ones(1, 28, 28))
    assert torch.equal(targets[labels == 2], torch.zeros(1, 28, 28))


def test_detections_get_their_own_class_mask_in_the_roi_frame() -> None:
    heads = make_heads_with_masks().eval()
    features = [torch.rand(2, CHANNELS, 12, 16)]
    proposals = [
        torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 24.0, 50.0, 44.0]]),
        torch.tensor([[8.0, 8.0, 40.0, 30.0]]),
    ]
    with torch.no_grad():
        detections, _ = heads.detect(features, proposals, [(48, 64), (48, 64)])
        for image_detections in detections:
            assert image_detections.masks is not None
            assert image_detections.masks.shape == (len(image_detections), 28, 28)
        first = detections[0]
        logits = heads.mask_branch([features[0][:1]], [first.boxes])
        own = logits[torch.arange(len(first)), first.labels].sigmoid()
    torch.testing.assert_close(first.masks, own)


def test_no_detections_get_an_empty_mask_tensor() -> None:
    heads = make_heads_with_masks(score_thresh=1.0).eval()  # softmax scores never exceed 1: nothing passes
    proposals = [torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 2
    with torch.no_grad():
        detections, _ = heads.detect([torch.rand(2, CHANNELS, 12, 16)], proposals, [(48, 64), (48, 64)])
    assert [d.masks.shape for d in detections] == [(0, 28, 28), (0, 28, 28)]
