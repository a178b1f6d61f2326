"""Training R-CNN as a staged pipeline (DESIGN.md section 2): each stage's output is on disk under the
run directory with the key of everything it was made from, and a stage whose output is current is skipped.

    proposals   the shared selective-search cache (train + val), recall reported
    finetune    cnn.pt: the CNN fine-tuned on warped regions (K+1-way softmax); skipped when finetune_iters = 0
    features    features/<key>/shard-*.pt: float16 features of every ground truth and proposal
    svms        svms.pt: per-class linear SVMs with hard-negative mining (+ the feature scale)
    regressors  regressors.pt: per-class ridge box regressors
    then        validation AP, best.pt / last.pt holding the CNN, the SVMs and the regressors together

Keys chain: features depend on the data, the proposals and the CNN's weights (hashed), the SVMs and
regressors on the features and their own settings. Changing any input gives a new key, so a stale
output is recomputed, never silently reused; ``stages.json`` records each stage's key, time and numbers.

The stages (``stages.py``) share one ``StageContext`` (``context.py``: config, detector, datasets,
run directory, stage log, device, rank, progress callback); fine-tuning runs the gradient loop's
training step (``finetune.py``); the feature cache's files are ``features.py``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import cast

import torch

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import config_to_dict
from detkit.engine.device import resolve_device, seed_everything
from detkit.engine.distributed import SINGLE_PROCESS, Rank, barrier, broadcast_from_main
from detkit.engine.events import EventCallback, ignore_events
from detkit.engine.fine_tune import start_from_checkpoint
from detkit.engine.precision import Precision
from detkit.engine.rcnn.context import STAGES_FILE, StageContext, StageLog
from detkit.engine.rcnn.stages import (
    apply_svms,
    evaluate_stage,
    features_key,
    features_stage,
    finetune_stage,
    proposal_stage,
    regressor_stage,
    svm_stage,
)
from detkit.engine.runs import (
    CONFIG,
    TrainResult,
    new_run_dir,
    record_latest,
    removed_on_failure,
)
from detkit.engine.training_data import load_datasets
from detkit.errors import ConfigError
from detkit.io import atomic_write_text
from detkit.pipelines.rcnn import build_rcnn

__all__ = ["STAGES_FILE", "StageContext", "StageLog", "train_rcnn"]


def train_rcnn(
    cfg: ExperimentConfig,
    *,
    rank: Rank = SINGLE_PROCESS,
    device: torch.device | None = None,
    resume_from: Path | None = None,
    on_event: EventCallback = ignore_events,
) -> TrainResult:
    """Run (or resume) every stage; returns the engine's ``TrainResult``.

    Data-parallel: one process per machine fills the proposal cache, fine-tuning is DDP, every
    process extracts the features of its own shards, rank 0 fits the SVMs and regressors (the
    others read them from the run directory) and evaluation is shared.
    """
    started = time.perf_counter()
    seed_everything(cfg.seed)
    device = device or resolve_device(cfg.device)
    # Unaugmented: the feature cache holds each image's regions once, as the file has them.
    train_set, val_set = load_datasets(cfg, augment=False)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=train_set.num_classes))
    run_dir = cast(Path, broadcast_from_main(_run_dir(cfg, resume_from) if rank.is_main else None))  # rank 0's
    with removed_on_failure(run_dir, fresh=resume_from is None, owner=rank.is_main):
        log = StageLog(run_dir / STAGES_FILE, writable=rank.is_main)
        model = build_rcnn(cfg.model)
        if resume_from is None and cfg.model.init_weights:
            start_from_checkpoint(model, cfg, on_event if rank.is_main else ignore_events)
        model = model.to(device)
        Precision.of_solver(cfg.solver).prepare(model)  # the memory format (solver.channels_last), in place
        ctx = StageContext(cfg, model, train_set, val_set, run_dir, log, device, rank, on_event)

        with _local_main_first(rank):
            data_key = proposal_stage(ctx)
        finetune_stage(ctx, data_key)
        key = features_key(ctx, data_key)
        regions = features_stage(ctx, key)
        if regions is not None:  # rank 0
            svm_stage(ctx, regions, key)
            regressor_stage(ctx, regions, key)
        barrier()
        if not rank.is_main:
            apply_svms(model, torch.load(run_dir / "svms.pt", weights_only=True))
            model.regressor_weight.copy_(torch.load(run_dir / "regressors.pt", weights_only=True))

        metrics = evaluate_stage(ctx)
        if rank.is_main:
            _save_checkpoints(ctx, metrics)
    barrier()
    return TrainResult(run_dir, run_dir / "best.pt", run_dir / "last.pt", metrics, time.perf_counter() - started)


def _save_checkpoints(ctx: StageContext, metrics: dict[str, float]) -> None:
    """``last.pt`` and ``best.pt`` (the same: a staged run has one result) and ``runs/latest.json``."""
    checkpoint = Checkpoint(
        config=ctx.cfg,
        model_state=ctx.model.state_dict(),
        class_names=ctx.train_set.class_names,
        category_ids=ctx.train_set.category_ids,
        metrics=metrics,
        training_state={},
    )
    for name in ("last.pt", "best.pt"):
        save_checkpoint(ctx.run_dir / name, checkpoint)
    record_latest(ctx.cfg.output_dir, ctx.run_dir / "best.pt")


def _run_dir(cfg: ExperimentConfig, resume_from: Path | None) -> Path:
    """A new run directory, or the one being resumed; either way with the resolved config in it."""
    run_dir = Path(resume_from) if resume_from is not None else new_run_dir(cfg.output_dir, cfg.name)
    if resume_from is not None and not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG} here; pass the run directory of an rcnn training run")
    atomic_write_text(run_dir / CONFIG, json.dumps(config_to_dict(cfg), indent=2))
    return run_dir


@contextmanager
def _local_main_first(rank: Rank) -> Iterator[None]:
    """The first process of each machine runs the block, then the others (which then find its outputs)."""
    if rank.local_rank != 0:
        barrier()
    yield
    if rank.local_rank == 0:
        barrier()
