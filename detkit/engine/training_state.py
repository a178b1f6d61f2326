"""What a training checkpoint holds beyond the weights, and how ``--resume`` puts it back.

``training_state`` in ``last.pt``: optimizer, scheduler and gradient-scaler state, EMA update count
and raw weights (when the checkpoint's weights are the EMA's), completed epochs, optimizer steps,
global batches already trained on in the unfinished epoch, the best validation numbers so far and
the number of processes. No random-generator state is needed: every random draw is seeded from the step, the
epoch and the item (see ``train.py``), so restoring the counters restores the random streams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint
from detkit.config import ExperimentConfig
from detkit.data.coco import CocoDetection
from detkit.engine.distributed import Rank
from detkit.engine.events import EventCallback, Notice
from detkit.errors import CheckpointError
from detkit.io import atomic_write_text


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # global batches trained on in the epoch under way
    step: int = 0  # optimizer steps taken
    best_ap: float = -1.0
    best_metrics: dict[str, float] | None = None
    nonfinite_in_a_row: int = 0  # consecutive skipped steps, across epoch boundaries


def training_checkpoint(
    cfg: ExperimentConfig, evaluated: nn.Module, train_set: CocoDetection, metrics: dict[str, float],
    parts: dict[str, Any], state: TrainingState, world_size: int,
) -> Checkpoint:
    """A checkpoint of ``evaluated``'s weights (the EMA's when there is one) plus everything to resume from."""
    training_state = {
        "optimizer": parts["optimizer"].state_dict(), "scheduler": parts["scheduler"].state_dict(),
        "scaler": parts["scaler"].state_dict(), "epoch": state.epoch, "batches_done": state.batches_done,
        "step": state.step, "best_ap": state.best_ap, "best_metrics": state.best_metrics or {}, "world_size": world_size,
    }
    if parts["ema"] is not None:  # the checkpoint's weights are the average; training resumes from the raw ones
        training_state.update(model=parts["model"].state_dict(), ema_updates=parts["ema"].updates)
    return Checkpoint(
        config=cfg, model_state=evaluated.state_dict(), class_names=train_set.class_names,
        category_ids=train_set.category_ids, metrics=metrics, training_state=training_state,
    )


def read_resume_checkpoint(source: Path) -> Checkpoint:
    """The checkpoint ``--resume`` names: a run directory's ``last.pt``, or a file (read safely, see checkpoint.py)."""
    source = Path(source)
    return load_checkpoint(source / "last.pt" if source.is_dir() else source)


def resume_into(
    checkpoint: Checkpoint, cfg: ExperimentConfig, parts: dict[str, Any], state: TrainingState, rank: Rank, on_event: EventCallback,
) -> Path:
    """Load ``checkpoint`` into ``parts`` and ``state``; return its run directory."""
    path = Path(checkpoint.source)
    _check_compatible(checkpoint, cfg, path)
    training = checkpoint.training_state
    _load_weights(checkpoint, parts, path)
    parts["optimizer"].load_state_dict(training["optimizer"])
    parts["scheduler"].load_state_dict(training["scheduler"])
    parts["scaler"].load_state_dict(training["scaler"])
    state.epoch, state.step, state.best_ap = int(training["epoch"]), int(training["step"]), float(training["best_ap"])
    state.batches_done = _batches_in_new_world(int(training.get("batches_done", 0)), int(training.get("world_size", 1)), rank, on_event)
    state.best_metrics = training.get("best_metrics") or None
    return path.parent


def truncate_log(path: Path, state: TrainingState) -> None:
    """Drop metrics-log records of steps and epochs after the checkpoint ``state`` came from (a run
    killed after its last checkpoint wrote them; the resumed run writes them again)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and _before(json.loads(line), state)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _before(record: dict[str, Any], state: TrainingState) -> bool:
    if "iter" in record:
        return record["iter"] <= state.step
    return record.get("epoch", 0) <= state.epoch  # an epoch's record: written once that epoch is complete


def _check_compatible(checkpoint: Checkpoint, cfg: ExperimentConfig, path: Path) -> None:
    if checkpoint.pipeline != cfg.model.pipeline or checkpoint.config.model.num_classes != cfg.model.num_classes:
        raise CheckpointError(
            f"{path}: cannot resume a {checkpoint.pipeline} model with {checkpoint.config.model.num_classes} "
            f"classes as a {cfg.model.pipeline} model with {cfg.model.num_classes}; resume with the same --pipeline and data"
        )
    if not checkpoint.training_state:
        raise CheckpointError(f"{path}: holds weights only, no training state; pass the run's last.pt")


def _load_weights(checkpoint: Checkpoint, parts: dict[str, Any], path: Path) -> None:
    training = checkpoint.training_state
    try:
        parts["model"].load_state_dict(training.get("model", checkpoint.model_state))
        if parts["ema"] is not None:
            parts["ema"].load_state_dict({"module": checkpoint.model_state, "updates": training.get("ema_updates", training["step"])})
    except RuntimeError:
        raise CheckpointError(
            f"{path}: its weights do not fit the model configured now; resume without changing "
            "model.* settings (the run's own config.json is used by default)"
        ) from None


def _batches_in_new_world(batches_done: int, saved_world: int, rank: Rank, on_event: EventCallback) -> int:
    """Where to continue the unfinished epoch; exact with the same number of processes, approximate otherwise."""
    if saved_world == rank.world_size or batches_done == 0:
        return batches_done
    if rank.is_main:
        on_event(Notice(
            f"resuming with {rank.world_size} processes, the run had {saved_world}: the global batch changed, so the "
            "resumed run continues from about the same image of the epoch but is not step-for-step identical"
        ))
    return batches_done * saved_world // rank.world_size
