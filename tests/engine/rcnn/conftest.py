"""A tiny R-CNN run's stage context: 6 synthetic 64 px images, ResNet-18 on 32 px warped regions."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

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
from detkit.engine.device import seed_everything
from detkit.engine.distributed import SINGLE_PROCESS
from detkit.engine.events import ignore_events
from detkit.engine.rcnn import STAGES_FILE, StageContext, StageLog
from detkit.engine.rcnn.stages import proposal_stage
from detkit.engine.training_data import load_datasets
from detkit.pipelines.rcnn import build_rcnn

MakeContext = Callable[..., tuple[StageContext, list[object]]]


@pytest.fixture(scope="module")
def rcnn_config(tmp_path_factory: pytest.TempPathFactory) -> ExperimentConfig:
    root = tmp_path_factory.mktemp("rcnn_stages")
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


@pytest.fixture
def make_context(rcnn_config: ExperimentConfig, tmp_path: Path) -> MakeContext:
    """``make_context(finetune_iters=2, lr=0.1, ...)``: a fresh context (the model built from the run's seed,
    proposals cached) with those RCNNConfig / SolverConfig fields changed, and the list its events go to."""

    def make(**changes: Any) -> tuple[StageContext, list[object]]:
        rcnn_fields = {k: v for k, v in changes.items() if hasattr(rcnn_config.model.rcnn, k)}
        solver_fields = {k: v for k, v in changes.items() if k not in rcnn_fields}
        cfg = replace(
            rcnn_config,
            model=replace(rcnn_config.model, rcnn=replace(rcnn_config.model.rcnn, **rcnn_fields)),
            solver=replace(rcnn_config.solver, **solver_fields),
        )
        seed_everything(cfg.seed)
        train_set, val_set = load_datasets(cfg, augment=False)
        cfg = replace(cfg, model=replace(cfg.model, num_classes=train_set.num_classes))
        run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        run_dir.mkdir()
        events: list[object] = []
        context = StageContext(
            cfg,
            build_rcnn(cfg.model),
            train_set,
            val_set,
            run_dir,
            StageLog(run_dir / STAGES_FILE),
            torch.device("cpu"),
            SINGLE_PROCESS,
            events.append,
        )
        proposal_stage(replace(context, on_event=ignore_events))
        return context, events

    return make
