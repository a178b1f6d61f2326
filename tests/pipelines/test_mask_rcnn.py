from dataclasses import replace

import pytest
import torch

from detkit.config import MaskHeadConfig
from detkit.pipelines import PIPELINES
from detkit.structures import Target
from tests.pipelines.training import train_two_steps


@pytest.fixture
def mask_config(tiny_model_config):
    return replace(tiny_model_config, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=16, num_convs=2))


def with_masks(targets, images):
    """Box-shaped instance masks for the tiny batch's targets."""
    result = []
    for target, image in zip(targets, images):
        masks = torch.zeros((len(target), *image.shape[-2:]), dtype=torch.uint8)
        for index, (x1, y1, x2, y2) in enumerate(target.boxes.round().long().tolist()):
            masks[index, y1:y2, x1:x2] = 1
        result.append(replace(target, masks=masks))
    return result


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["mask_rcnn"].build(cfg)


def test_train_two_steps_then_detect_with_masks(mask_config, tiny_batch):
    images, targets = tiny_batch
    targets = with_masks(targets, images)
    model = build(mask_config)
    train_two_steps(model, images, targets, {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"})
    model.eval()
    with torch.no_grad():
        detections = model(images).detections
    for dets, image in zip(detections, images):
        assert dets.masks is not None and dets.masks.shape == (len(dets), *image.shape[-2:])
        assert dets.masks.dtype == torch.float32 and (dets.masks.min() >= 0 if len(dets) else True)


def test_image_without_objects_has_zero_mask_loss(mask_config, tiny_batch):
    images, _ = tiny_batch
    empty = with_masks([Target(image_id=1), Target(image_id=2)], images)
    output = build(mask_config).train()(images, empty)
    assert output.losses["loss_mask"].item() == 0.0 and torch.isfinite(sum(output.losses.values()))


def test_training_without_masks_is_a_clear_error(mask_config, tiny_batch):
    images, targets = tiny_batch
    with pytest.raises(ValueError, match="with_masks"):
        build(mask_config).train()(images, targets)
