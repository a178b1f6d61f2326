"""detkit's Mask R-CNN given torchvision's maskrcnn_resnet50_fpn weights: same detections, same masks."""

from dataclasses import replace

import torch
import torchvision

from detkit.checkpoint import load_checkpoint
from detkit.config import TransformConfig
from detkit.modeling.torchvision_import import convert_torchvision_detector, torchvision_model_config
from detkit.pipelines import PIPELINES
from tests.modeling.test_torchvision_equivalence import MAX_SIZE, MIN_SIZE, assert_same_detections, calibrated, images


def torchvision_mask_rcnn():
    """Seeded random weights with heads calibrated to spread-out outputs (see the Faster R-CNN test)."""
    return calibrated(
        torchvision.models.detection.maskrcnn_resnet50_fpn, {"roi_heads.mask_predictor.mask_fcn_logits": 3.0}
    )


def binary_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    intersection = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def test_same_detections_and_masks_as_torchvision():
    reference = torchvision_mask_rcnn()
    cfg = torchvision_model_config("resnet50_fpn", num_classes=90, masks=True)
    cfg = replace(
        cfg,
        backbone=replace(cfg.backbone, norm="bn"),
        transform=TransformConfig(min_size=(MIN_SIZE,), max_size=MAX_SIZE),
    )
    model = PIPELINES["mask_rcnn"].build(cfg)
    model.load_state_dict(convert_torchvision_detector(reference.state_dict(), "resnet50_fpn"), strict=True)
    model.eval()
    inputs = images()
    with torch.no_grad():
        expected = reference(inputs)
        actual = model(inputs).detections
    for want, got in zip(expected, actual):
        assert_same_detections(got, want)
        ours, theirs = got.masks > 0.5, want["masks"][:, 0] > 0.5
        assert theirs.flatten(1).any(1).float().mean() > 0.5, "the test needs non-empty masks"
        assert binary_iou(ours, theirs).min() >= 0.99


def test_a_torchvision_mask_rcnn_file_loads_as_a_mask_rcnn_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    torch.save(reference.state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.pipeline == "mask_rcnn" and checkpoint.class_names[0] == "person"
