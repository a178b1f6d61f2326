import torch

from detkit.pipelines import PIPELINES
from detkit.structures import Detections, Target
from tests.pipelines.training import train_two_steps


def build(cfg):
    torch.manual_seed(0)
    return PIPELINES["faster_rcnn"].build(cfg)


def test_train_two_steps_then_detect(tiny_model_config, tiny_batch):
    images, targets = tiny_batch
    model = build(tiny_model_config)
    train_two_steps(model, images, targets, {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"})
    model.eval()
    output = model(images)
    assert output.losses == {}
    assert len(output.detections) == 2
    for dets, image in zip(output.detections, images):
        assert isinstance(dets, Detections)
        assert dets.boxes.dtype == torch.float32 and dets.labels.dtype == torch.int64
        assert len(dets.boxes) == len(dets.scores) == len(dets.labels)
        if len(dets):
            # returned in the frame of the image as given, not the resized one
            assert dets.boxes[:, 2].max() <= image.shape[-1] + 1e-3 and dets.boxes[:, 3].max() <= image.shape[-2] + 1e-3
            assert dets.labels.min() >= 0 and dets.labels.max() < 3
            assert torch.all(dets.scores[:-1] >= dets.scores[1:])


def test_image_without_ground_truth_has_zero_box_losses(tiny_model_config, tiny_batch):
    images, _ = tiny_batch
    model = build(tiny_model_config).train()
    output = model(images, [Target(image_id=1), Target(image_id=2)])
    for name, value in output.losses.items():
        assert torch.isfinite(value), name
    assert output.losses["loss_rpn_box"].item() == 0.0
    assert output.losses["loss_box"].item() == 0.0
    sum(output.losses.values()).backward()  # a graph exists even with nothing to regress


def test_eval_mode_with_targets_gives_losses_and_detections(tiny_model_config, tiny_batch):
    images, targets = tiny_batch
    model = build(tiny_model_config).eval()
    with torch.no_grad():
        output = model(images, targets)
    assert set(output.losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    assert output.detections is not None and len(output.detections) == 2


def test_crowd_boxes_are_not_trained_on(tiny_model_config, tiny_batch):
    images, targets = tiny_batch
    crowd_only = Target(
        boxes=targets[0].boxes, labels=targets[0].labels, iscrowd=torch.tensor([True, True]), image_id=1
    )
    model = build(tiny_model_config).train()
    output = model(images, [crowd_only, targets[1]])
    assert output.losses["loss_box"].item() == 0.0 and output.losses["loss_rpn_box"].item() == 0.0
