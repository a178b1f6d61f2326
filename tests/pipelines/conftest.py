import pytest
import torch

from detkit.config import AnchorConfig, BackboneConfig, ModelConfig, RoIHeadsConfig, RPNConfig, TransformConfig
from detkit.structures import Target


@pytest.fixture
def tiny_model_config() -> ModelConfig:
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


@pytest.fixture
def tiny_batch():
    """Two synthetic images of different sizes, one with objects and one with none."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=generator), torch.rand(3, 72, 64, generator=generator)]
    targets = [
        Target(
            boxes=torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 70.0, 60.0]]),
            labels=torch.tensor([0, 2]),
            image_id=1,
        ),
        Target(image_id=2),
    ]
    return images, targets
