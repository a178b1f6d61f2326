"""A stage context for the tiny R-CNN experiment (``tiny_rcnn`` from tests/engine/conftest.py)."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from detkit.config import ExperimentConfig
from detkit.engine.device import seed_everything
from detkit.engine.distributed import SINGLE_PROCESS
from detkit.engine.events import ignore_events
from detkit.engine.rcnn import STAGES_FILE, StageContext, StageLog
from detkit.engine.rcnn.stages import proposal_stage
from detkit.engine.training_data import load_datasets
from detkit.pipelines.rcnn import build_rcnn

MakeContext = Callable[..., tuple[StageContext, list[object]]]


@pytest.fixture
def make_context(tiny_rcnn: ExperimentConfig, tmp_path: Path) -> MakeContext:
    """``make_context(finetune_iters=2, lr=0.1, ...)``: a fresh context (the model built from the run's seed,
    proposals cached) with those RCNNConfig / SolverConfig fields changed, and the list its events go to."""

    def make(**changes: Any) -> tuple[StageContext, list[object]]:
        rcnn_fields = {k: v for k, v in changes.items() if hasattr(tiny_rcnn.model.rcnn, k)}
        solver_fields = {k: v for k, v in changes.items() if k not in rcnn_fields}
        cfg = replace(
            tiny_rcnn,
            model=replace(tiny_rcnn.model, rcnn=replace(tiny_rcnn.model.rcnn, **rcnn_fields)),
            solver=replace(tiny_rcnn.solver, **solver_fields),
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
