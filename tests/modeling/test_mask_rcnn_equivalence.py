"""detkit's Mask R-CNN given torchvision's maskrcnn_resnet50_fpn(_v2) weights: same detections, same masks.

The models, their calibration and the file path they take are those of test_torchvision_equivalence.py.
"""

import pytest
import torch
import torchvision

from detkit.checkpoint import load_checkpoint
from tests.modeling.test_torchvision_equivalence import (
    Differences,
    assert_same_detections,
    calibrated,
    compare,
    detkit_from_file,
)

MASK_RCNNS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
MASK_PASS = ("roi_heads.mask_predictor", {"roi_heads.mask_predictor.mask_fcn_logits": 3.0})


def binary_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    intersection = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@pytest.mark.parametrize("name", MASK_RCNNS)
def test_same_detections_and_masks_as_torchvision(name, tmp_path):
    reference = calibrated(name, MASK_PASS)
    model = detkit_from_file(reference, name, tmp_path)
    expected, actual = compare(reference, model)
    differences = Differences(min_mask_iou=1.0)
    for want, got in zip(expected, actual):
        assert_same_detections(got, want, differences)
        ours, theirs = got.masks > 0.5, want["masks"][:, 0] > 0.5
        assert theirs.flatten(1).any(1).float().mean() > 0.5, "the test needs non-empty masks"
        iou = binary_iou(ours, theirs).min().item()
        assert iou >= 0.99
        differences.min_mask_iou = min(differences.min_mask_iou, iou)
    print(differences.report(name))


def test_a_torchvision_mask_rcnn_file_loads_as_a_mask_rcnn_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    torch.save(reference.state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.pipeline == "mask_rcnn" and checkpoint.class_names[0] == "person"
