"""What every pipeline's smoke test shares: a tiny two-stage config and the two-steps-of-training check."""

import torch

from detkit.config import AnchorConfig, BackboneConfig, ModelConfig, RoIHeadsConfig, RPNConfig, TransformConfig


def tiny_faster_rcnn_config() -> ModelConfig:
    """A Faster R-CNN small enough to train a step in well under a second on a CPU."""
    return ModelConfig(
        pipeline="faster_rcnn",
        num_classes=3,
        backbone=BackboneConfig(name="resnet18", fpn_channels=32, fpn_extra_pool=False),
        transform=TransformConfig(min_size=(64,), max_size=96),
        anchors=AnchorConfig(sizes=((8,), (16,), (32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4),
        rpn=RPNConfig(pre_nms_topk_train=200, post_nms_topk_train=100, pre_nms_topk_test=100, post_nms_topk_test=50),
        roi_heads=RoIHeadsConfig(representation_size=64, batch_size_per_image=32, score_thresh=0.0),
    )


def train_two_steps(model, images, targets, expected_losses: set[str]) -> None:
    """Two SGD steps in train mode: no detections, exactly ``expected_losses``, all finite."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _ in range(2):
        output = model(images, targets)
        assert output.detections is None
        assert set(output.losses) == expected_losses
        loss = sum(output.losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
