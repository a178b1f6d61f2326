"""Mask targets and pasting against torchvision's own Mask R-CNN helpers, the arithmetic detkit must match."""

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

from detkit.ops.masks import mask_targets, paste_masks


def test_mask_targets_match_torchvision():
    generator = torch.Generator().manual_seed(0)
    gt_masks = (torch.rand(3, 40, 50, generator=generator) > 0.5).to(torch.uint8)
    boxes = torch.tensor(
        [[2.0, 3.0, 30.0, 35.0], [10.5, 0.0, 49.0, 20.2], [0.0, 0.0, 50.0, 40.0], [5.0, 5.0, 6.0, 7.0]]
    )
    matched = torch.tensor([0, 2, 1, 0])
    ours = mask_targets(gt_masks, boxes, matched, 28)
    theirs = project_masks_on_boxes(gt_masks, boxes, matched, 28)
    torch.testing.assert_close(ours, theirs)
    assert mask_targets(gt_masks, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), 28).shape == (0, 28, 28)


def test_pasted_masks_match_torchvision_including_boxes_over_the_edge():
    generator = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 28, 28, generator=generator)
    boxes = torch.tensor(
        [[5.3, 7.8, 40.1, 33.9], [-4.0, -2.0, 20.0, 15.0], [30.0, 20.0, 70.0, 55.0], [12.0, 12.0, 12.4, 12.2]]
    )
    ours = paste_masks(masks, boxes, (48, 64))
    theirs = paste_masks_in_image(masks[:, None], boxes, (48, 64))[:, 0]
    torch.testing.assert_close(ours, theirs)
    assert paste_masks(masks[:0], boxes[:0], (48, 64)).shape == (0, 48, 64)


def test_a_full_box_mask_pastes_inside_its_box_only():
    pasted = paste_masks(torch.ones(1, 28, 28), torch.tensor([[10.0, 20.0, 30.0, 40.0]]), (64, 64))[0] > 0.5
    rows, cols = torch.where(pasted)
    assert rows.min() >= 19 and rows.max() <= 41 and cols.min() >= 9 and cols.max() <= 31
    assert pasted[30, 20] and not pasted[5, 5]
