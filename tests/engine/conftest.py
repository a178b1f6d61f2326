"""Shared engine fixtures: a tiny R-CNN experiment (6 synthetic 64 px images, ResNet-18 on 32 px warped regions)."""

import pytest

from detkit.config import (
    BackboneConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    ProposalConfig,
    RCNNConfig,
    SolverConfig,
)
from detkit.data.synthetic import generate_synthetic_coco


@pytest.fixture(scope="module")
def tiny_rcnn(tmp_path_factory: pytest.TempPathFactory) -> ExperimentConfig:
    """One config per test module, each with its own data, proposal cache and run directory."""
    root = tmp_path_factory.mktemp("rcnn")
    paths = generate_synthetic_coco(root / "data", num_train=6, num_val=2, image_size=(64, 64), seed=3)
    (train_json, train_images), (val_json, val_images) = paths["train"], paths["val"]
    return ExperimentConfig(
        name="tiny_rcnn",
        model=ModelConfig(
            pipeline="rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,)),
            proposals=ProposalConfig(cache_dir=str(root / "cache")),
            rcnn=RCNNConfig(crop_size=32, context_padding=3, finetune_iters=1, svm_steps=20, svm_initial_negatives=20),
        ),
        data=DataConfig(str(train_json), str(train_images), str(val_json), str(val_images), batch_size=2),
        solver=SolverConfig(optimizer="adamw", lr=1e-3, warmup_iters=1),
        output_dir=str(root / "runs"),
        device="cpu",
    )
