import pytest
import torch

from detkit.config import BackboneConfig, ModelConfig, YOLOConfig
from detkit.errors import ConfigError
from detkit.pipelines import PIPELINES
from detkit.structures import Detections, Target
from tests.pipelines.training import train_two_steps

LOSSES = {"loss_cls", "loss_box", "loss_obj"}


@pytest.fixture
def yolo_config() -> ModelConfig:
    return ModelConfig(
        pipeline="yolo",
        num_classes=3,
        backbone=BackboneConfig(name="resnet18", fpn=False),
        yolo=YOLOConfig(image_size=96, train_sizes=(64, 96), width_multiple=0.125, score_thresh=0.0),
    )


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["yolo"].build(cfg)


def test_train_two_steps_then_detect(yolo_config, tiny_batch):
    images, targets = tiny_batch
    model = build(yolo_config)
    train_two_steps(model, images, targets, LOSSES)
    model.eval()
    output = model(images)
    assert output.losses == {} and len(output.detections) == 2
    for dets, image in zip(output.detections, images):
        assert isinstance(dets, Detections) and 0 < len(dets) <= 300
        assert dets.boxes.dtype == torch.float32 and dets.labels.dtype == torch.int64
        assert dets.boxes[:, 2].max() <= image.shape[-1] and dets.boxes[:, 3].max() <= image.shape[-2]
        assert dets.labels.min() >= 0 and dets.labels.max() < 3
        assert torch.all(dets.scores[:-1] >= dets.scores[1:])


def test_image_without_ground_truth_has_zero_box_loss(yolo_config, tiny_batch):
    images, _ = tiny_batch
    output = build(yolo_config).train()(images, [Target(image_id=1), Target(image_id=2)])
    assert all(torch.isfinite(v) for v in output.losses.values())
    assert output.losses["loss_box"].item() == 0.0 and output.losses["loss_cls"].item() == 0.0
    sum(output.losses.values()).backward()


def test_eval_mode_with_targets_gives_losses_and_detections(yolo_config, tiny_batch):
    images, targets = tiny_batch
    with torch.no_grad():
        output = build(yolo_config).eval()(images, targets)
    assert set(output.losses) == LOSSES and len(output.detections) == 2


def test_width_and_depth_multipliers_scale_the_model(yolo_config):
    small = build(yolo_config)
    wide = build(
        ModelConfig(
            **{**yolo_config.__dict__, "yolo": YOLOConfig(image_size=96, width_multiple=0.25, depth_multiple=0.67)}
        )
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(wide.neck) > 3 * count(small.neck)
    assert len(wide.neck.fuse3.bottlenecks) == 2 and len(small.neck.fuse3.bottlenecks) == 1


@pytest.mark.parametrize("override", [{"image_size": 100}, {"train_sizes": (64, 90)}, {"width_multiple": 0.0}])
def test_bad_sizes_and_multipliers_are_config_errors(yolo_config, override):
    cfg = ModelConfig(**{**yolo_config.__dict__, "yolo": YOLOConfig(**override)})
    with pytest.raises(ConfigError, match="model.yolo"):
        build(cfg)
