import pytest
import torch

from detkit.config import ModelConfig
from detkit.structures import Target
from tests.pipelines.training import tiny_faster_rcnn_config


@pytest.fixture
def tiny_model_config() -> ModelConfig:
    return tiny_faster_rcnn_config()


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
