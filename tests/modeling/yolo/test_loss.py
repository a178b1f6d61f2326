import torch

from detkit.config import YOLOConfig
from detkit.modeling.yolo.decode import decode_boxes, grid_points
from detkit.modeling.yolo.head import DensePredictions
from detkit.modeling.yolo.loss import YOLOLoss
from detkit.structures import Target


def predictions(num_images=1, size=64, num_classes=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    feature_sizes = [(size // s, size // s) for s in (8, 16, 32)]
    points, strides = grid_points(feature_sizes, [8, 16, 32], torch.device("cpu"))
    num_points = len(points)
    dense = DensePredictions(
        cls_logits=torch.randn(num_images, num_points, num_classes, generator=generator, requires_grad=True),
        box_deltas=(0.1 * torch.randn(num_images, num_points, 4, generator=generator)).requires_grad_(),
        obj_logits=torch.randn(num_images, num_points, generator=generator, requires_grad=True),
        feature_sizes=feature_sizes,
    )
    return dense, decode_boxes(dense.box_deltas, points, strides), points, strides


def test_losses_are_finite_and_reach_every_prediction():
    dense, boxes, points, strides = predictions()
    target = Target(boxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([1]))
    losses = YOLOLoss(YOLOConfig())(dense, boxes, points, strides, [target])
    assert set(losses) == {"loss_cls", "loss_box", "loss_obj"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert dense.cls_logits.grad.abs().sum() > 0 and dense.box_deltas.grad.abs().sum() > 0


def test_image_without_boxes_trains_objectness_only():
    dense, boxes, points, strides = predictions()
    losses = YOLOLoss(YOLOConfig())(dense, boxes, points, strides, [Target()])
    assert losses["loss_box"].item() == 0.0 and losses["loss_cls"].item() == 0.0
    # every point is background: the objectness loss is the plain BCE sum against zeros
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        dense.obj_logits, torch.zeros_like(dense.obj_logits), reduction="sum"
    )
    assert torch.allclose(losses["loss_obj"], expected)
    sum(losses.values()).backward()


def test_points_inside_crowd_regions_are_not_scored_as_background():
    dense, boxes, points, strides = predictions()
    crowd = Target(boxes=torch.tensor([[0.0, 0.0, 64.0, 64.0]]), labels=torch.tensor([0]), iscrowd=torch.tensor([True]))
    losses = YOLOLoss(YOLOConfig())(dense, boxes, points, strides, [crowd])
    assert losses["loss_obj"].item() == 0.0 and losses["loss_box"].item() == 0.0


def test_ciou_is_selectable_and_unknown_box_loss_is_a_config_error():
    dense, boxes, points, strides = predictions()
    target = Target(boxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([0]))
    assert torch.isfinite(YOLOLoss(YOLOConfig(box_loss="ciou"))(dense, boxes, points, strides, [target])["loss_box"])
    try:
        YOLOLoss(YOLOConfig(box_loss="l2"))
    except Exception as error:
        assert "model.yolo.box_loss" in str(error)
    else:
        raise AssertionError("expected a ConfigError")
