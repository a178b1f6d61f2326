from dataclasses import replace

import pytest
import torch

from detkit.config import BackboneConfig, ProposalConfig
from detkit.data.images import image_to_tensor
from detkit.pipelines import PIPELINES
from detkit.structures import Detections, Target
from tests.pipelines.training import train_two_steps
from tests.proposals.images import object_boxes, rectangles_image


@pytest.fixture
def fast_config(tiny_model_config, tmp_path):
    """The tiny two-stage config as Fast R-CNN: one stride-16 map, RoIPool, selective search."""
    return replace(
        tiny_model_config,
        pipeline="fast_rcnn",
        backbone=BackboneConfig(name="resnet18", fpn=False),
        roi_heads=replace(tiny_model_config.roi_heads, pooler="roi_pool", bg_iou_thresh_lo=0.1),
        proposals=ProposalConfig(cache_dir=str(tmp_path)),
    )


@pytest.fixture
def shapes_batch():
    """Two images of flat rectangles (selective search finds them), one annotated, one without objects."""
    image = rectangles_image(96, 128)
    proposals = torch.tensor([[8.0, 10.0, 52.0, 42.0], [58.0, 48.0, 112.0, 100.0], [0.0, 0.0, 60.0, 60.0]])
    targets = [
        Target(boxes=torch.from_numpy(object_boxes()), labels=torch.tensor([0, 1, 2]), image_id=1, proposals=proposals),
        Target(image_id=2, proposals=proposals[:1]),
    ]
    return [image_to_tensor(image), image_to_tensor(image).flip(-1)], targets


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["fast_rcnn"].build(cfg)


def test_backbone_is_one_stride_16_map_pooled_by_roi_pool(fast_config):
    model = build(fast_config)
    assert model.backbone.strides == [16] and model.roi_heads.pooler.kind == "roi_pool"


def test_train_two_steps_then_detect(fast_config, shapes_batch):
    images, targets = shapes_batch
    model = build(fast_config)
    train_two_steps(model, images, targets, {"loss_cls", "loss_box"})
    model.eval()
    with torch.no_grad():
        output = model(images)  # no targets: selective search runs on the pixels
    assert output.losses == {} and len(output.detections) == 2
    for dets in output.detections:
        assert isinstance(dets, Detections) and len(dets.boxes) == len(dets.scores) == len(dets.labels)
        if len(dets):
            assert dets.boxes[:, 2].max() <= 128 + 1e-3 and dets.boxes[:, 3].max() <= 96 + 1e-3


def test_image_without_ground_truth_has_zero_box_loss(fast_config, shapes_batch):
    images, targets = shapes_batch
    empty = [Target(image_id=1, proposals=targets[0].proposals), targets[1]]
    output = build(fast_config).train()(images, empty)
    assert torch.isfinite(output.losses["loss_cls"]) and output.losses["loss_box"].item() == 0.0
    sum(output.losses.values()).backward()


def test_truncated_svd_head_gives_the_same_detections_when_nothing_is_dropped(fast_config, shapes_batch):
    images, _ = shapes_batch
    model = build(fast_config).eval()
    with torch.no_grad():  # make fc6 and fc7 rank 8, so a rank-8 factorization is exact
        for fc in (model.roi_heads.box_head.fc6, model.roi_heads.box_head.fc7):
            fc.weight.copy_(torch.randn(fc.out_features, 8) @ torch.randn(8, fc.in_features) / fc.in_features**0.5)
        before = model(images).detections
        model.roi_heads.box_head.truncate(8)
        after = model(images).detections
    assert isinstance(model.roi_heads.box_head.fc6, torch.nn.Sequential)
    for full, factored in zip(before, after):
        assert len(full) == len(factored)
        torch.testing.assert_close(factored.scores, full.scores, rtol=1e-3, atol=1e-4)
