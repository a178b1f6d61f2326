from dataclasses import replace

import pytest
import torch

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from detkit.config import BackboneConfig, ModelConfig, YOLOConfig
from detkit.errors import ConfigError
from detkit.modeling.yolo import C2fPANNeck, PANNeck
from detkit.pipelines import PIPELINES, PRESETS
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


def test_the_yolo_preset_is_the_csp_trunk_with_the_c2f_neck_and_trains(tiny_batch):
    model_cfg = PRESETS["yolo"]().model
    assert model_cfg.backbone.name == "csp_n" and model_cfg.yolo.neck == "c2f_pan" and not model_cfg.backbone.pretrained
    small = replace(model_cfg.yolo, image_size=64, train_sizes=(64,))
    model = build(replace(model_cfg, num_classes=3, yolo=small))
    assert isinstance(model.neck, C2fPANNeck) and [stem[0].out_channels for stem in model.head.stems] == [64] * 3
    images, targets = tiny_batch
    train_two_steps(model, images, targets, LOSSES)


def test_a_checkpoint_of_the_mobilenet_yolo_from_before_the_neck_choice_loads(tmp_path):
    cfg = PRESETS["yolo_mobilenet"]()
    yolo = replace(cfg.model.yolo, image_size=64, train_sizes=(64,), width_multiple=0.125)
    cfg = replace(
        cfg, model=replace(cfg.model, num_classes=3, backbone=BackboneConfig(name="mobilenet_v2", fpn=False), yolo=yolo)
    )
    model = build(cfg.model)
    path = tmp_path / "old.pt"
    save_checkpoint(path, Checkpoint(cfg, model.state_dict(), ["a", "b", "c"], [1, 2, 3]))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["yolo"]["neck"]  # what checkpoints written before the neck choice hold
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.model.yolo.neck == "csp_pan" and loaded.config.model.backbone.name == "mobilenet_v2"
    rebuilt = model_from_checkpoint(loaded)
    assert isinstance(rebuilt.neck, PANNeck)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
