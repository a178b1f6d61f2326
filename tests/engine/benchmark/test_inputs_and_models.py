import pytest
import torch

from detkit.engine.benchmark.inputs import four_by_three, scene_inputs
from detkit.engine.benchmark.models import preset_config, random_model
from detkit.engine.precision import Precision, dense_network
from detkit.errors import ConfigError
from detkit.pipelines import PIPELINES


def test_scene_inputs_are_images_with_consistent_targets():
    images, targets = scene_inputs(four_by_three(64), count=3, num_classes=2, seed=1)
    assert [tuple(image.shape) for image in images] == [(3, 48, 64)] * 3
    assert all(0 <= float(image.min()) and float(image.max()) <= 1 for image in images)
    for target in targets:
        assert len(target) > 0 and set(target.labels.tolist()) <= {0, 1}
        assert target.masks.shape == (len(target), 48, 64)
        for box, mask in zip(target.boxes, target.masks):
            ys, xs = torch.where(mask > 0)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_presets_run_at_the_asked_size_with_the_full_load(pipeline):
    cfg = preset_config(pipeline, "resnet18", 320, ["model.rcnn.crop_size=32"])
    assert cfg.model.backbone.name == "resnet18" and not cfg.model.backbone.pretrained
    if pipeline == "yolo":
        assert cfg.model.yolo.image_size == 320 and cfg.model.yolo.score_thresh == 0
    elif pipeline != "rcnn":
        assert cfg.model.transform.min_size == (240,) and cfg.model.transform.max_size == 320
        assert cfg.model.roi_heads.score_thresh == 0
    if pipeline in ("faster_rcnn", "mask_rcnn"):
        assert cfg.model.rpn.nms_thresh == 1.0
    if pipeline in ("rcnn", "fast_rcnn"):
        assert not cfg.model.proposals.cache  # selective search runs in every timed call
    assert cfg.model.rcnn.crop_size == 32


def test_bad_sizes_and_pipelines_are_refused():
    with pytest.raises(ConfigError, match="multiple of 32"):
        preset_config("yolo", None, 300)
    with pytest.raises(ConfigError, match="unknown pipeline"):
        preset_config("ssd", None, 320)


def test_random_models_are_seeded_and_in_eval_mode():
    first = random_model("yolo", "resnet18", 64, num_classes=3, overrides=["model.yolo.width_multiple=0.25"])
    second = random_model("yolo", "resnet18", 64, num_classes=3, overrides=["model.yolo.width_multiple=0.25"])
    assert not first.model.training and first.weights == "random" and first.config.model.num_classes == 3
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_precision_settings():
    assert Precision().name == "fp32" and Precision("bf16").name == "amp-bf16"
    assert Precision("fp16").needs_grad_scaler() and not Precision("bf16").needs_grad_scaler()
    assert (
        Precision("fp16").grad_scaler(torch.device("cpu")).is_enabled()
        and not Precision().grad_scaler(torch.device("cpu")).is_enabled()
    )
    with pytest.raises(ConfigError, match="bf16 or fp16"):
        Precision("fp8")
    rcnn = random_model("rcnn", "resnet18", 64).model
    owner, name = dense_network(rcnn, PIPELINES["rcnn"].dense_network)
    assert owner is rcnn.cnn and name == "backbone"
    conv_weights = lambda: [p for p in rcnn.parameters() if p.dim() == 4]  # noqa: E731
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights())
    Precision(channels_last=True).prepare(rcnn)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights())
