"""What a training checkpoint holds beyond the weights, and how ``--resume`` puts it back.

``training_state`` in ``last.pt``: optimizer, scheduler and gradient-scaler state, EMA update count
and raw weights (when the checkpoint's weights are the EMA's), completed epochs, optimizer steps,
global batches already trained on in the unfinished epoch, the best validation numbers so far and
the number of processes. No random-generator state is needed: every random draw is seeded from the step,
the epoch and the item (see ``train.py``), so restoring the counters restores the random streams.

``resume_into`` checks every field before it loads anything (``check_training_state``): torch's
``load_state_dict`` methods take a damaged state (a counter that is text, an optimizer buffer of
another shape, a scheduler entry that is a list) without a word and fail later, deep inside a
training step. A damaged field is a ``CheckpointError`` naming the file and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from detkit.checkpoint import Checkpoint, load_checkpoint
from detkit.config import ExperimentConfig
from detkit.data.coco import CocoDetection
from detkit.engine.distributed import Rank
from detkit.engine.ema import ModelEMA
from detkit.engine.events import EventCallback, Notice
from detkit.errors import CheckpointError, quoted, shown
from detkit.modeling.state_checks import check_tensor_dict, check_weights_fit, value_kind


class TrainingParts(TypedDict):
    """What a training checkpoint saves besides the weights it is evaluated with, and ``--resume`` loads."""

    model: nn.Module  # the raw (not averaged) model, unwrapped from DDP
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # global batches trained on in the epoch under way
    step: int = 0  # optimizer steps taken
    best_ap: float = -1.0
    best_metrics: dict[str, float] | None = None


def training_checkpoint(
    cfg: ExperimentConfig,
    evaluated: nn.Module,
    train_set: CocoDetection,
    metrics: dict[str, float],
    parts: TrainingParts,
    state: TrainingState,
    world_size: int,
) -> Checkpoint:
    """A checkpoint of ``evaluated``'s weights (the EMA's when there is one) plus everything to resume from."""
    training_state = {
        "optimizer": parts["optimizer"].state_dict(),
        "scheduler": parts["scheduler"].state_dict(),
        "scaler": parts["scaler"].state_dict(),
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "step": state.step,
        "best_ap": state.best_ap,
        "best_metrics": state.best_metrics or {},
        "world_size": world_size,
    }
    if parts["ema"] is not None:  # the checkpoint's weights are the average; training resumes from the raw ones
        training_state.update(model=parts["model"].state_dict(), ema_updates=parts["ema"].updates)
    return Checkpoint(
        config=cfg,
        model_state=evaluated.state_dict(),
        class_names=train_set.class_names,
        category_ids=train_set.category_ids,
        metrics=metrics,
        training_state=training_state,
    )


def read_resume_checkpoint(source: Path) -> Checkpoint:
    """The checkpoint ``--resume`` names: a run directory's ``last.pt``, or a file (read safely, see checkpoint.py)."""
    source = Path(source)
    return load_checkpoint(source / "last.pt" if source.is_dir() else source)


def resume_into(
    checkpoint: Checkpoint,
    cfg: ExperimentConfig,
    parts: TrainingParts,
    state: TrainingState,
    rank: Rank,
    on_event: EventCallback,
) -> Path:
    """Load ``checkpoint`` into ``parts`` and ``state``; return its run directory."""
    path = Path(checkpoint.source)
    _check_compatible(checkpoint, cfg, path)
    check_training_state(checkpoint, parts)
    training = checkpoint.training_state
    _load_weights(checkpoint, parts)
    parts["optimizer"].load_state_dict(training["optimizer"])
    parts["scheduler"].load_state_dict(training["scheduler"])
    parts["scaler"].load_state_dict(training["scaler"])
    state.epoch, state.step, state.best_ap = int(training["epoch"]), int(training["step"]), float(training["best_ap"])
    state.batches_done = _batches_in_new_world(
        int(training.get("batches_done", 0)), int(training.get("world_size", 1)), rank, on_event
    )
    state.best_metrics = training.get("best_metrics") or None
    return path.parent


def _check_compatible(checkpoint: Checkpoint, cfg: ExperimentConfig, path: Path) -> None:
    if checkpoint.pipeline != cfg.model.pipeline or checkpoint.config.model.num_classes != cfg.model.num_classes:
        raise CheckpointError(
            f"{path}: cannot resume a {checkpoint.pipeline} model with {checkpoint.config.model.num_classes} "
            f"classes as a {cfg.model.pipeline} model with {cfg.model.num_classes}; "
            "resume with the same --pipeline and data"
        )
    if not checkpoint.training_state:
        raise CheckpointError(f"{path}: holds weights only, no training state; pass the run's last.pt")


def _load_weights(checkpoint: Checkpoint, parts: TrainingParts) -> None:
    """The raw weights into the model, the checkpoint's (the average) into the EMA (both checked already)."""
    training = checkpoint.training_state
    parts["model"].load_state_dict(training.get("model", checkpoint.model_state))
    if parts["ema"] is not None:
        updates = training.get("ema_updates", training["step"])
        parts["ema"].load_state_dict({"module": checkpoint.model_state, "updates": updates})


def _batches_in_new_world(batches_done: int, saved_world: int, rank: Rank, on_event: EventCallback) -> int:
    """Where to continue the unfinished epoch; exact with the same number of processes, approximate otherwise."""
    if saved_world == rank.world_size or batches_done == 0:
        return batches_done
    if rank.is_main:
        on_event(
            Notice(
                f"resuming with {rank.world_size} processes, the run had {saved_world}: the global batch changed, "
                "so the resumed run continues from about the same image of the epoch but is not step-for-step "
                "identical"
            )
        )
    return batches_done * saved_world // rank.world_size


# ---------------------------------------------------------------------------------------------
# Checking a saved training state against the parts it is loaded into

_MODEL_FIX = "resume without changing model.* settings (the run's own config.json is used by default)"


def _damaged(path: Path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: training_state.{field} {problem}; the resume state is damaged: resume from an earlier last.pt, "
        f"or start a new run from its weights with --weights {path}"
    )


def check_training_state(checkpoint: Checkpoint, parts: TrainingParts) -> None:
    """Refuse a ``training_state`` that ``resume_into`` could not put back faithfully, naming the field."""
    path, training = Path(checkpoint.source), checkpoint.training_state
    _check_counters(training, path)
    _check_resume_weights(checkpoint, parts, path)
    _check_optimizer(training, parts["optimizer"], path)
    for name in ("scheduler", "scaler"):
        if not isinstance(training.get(name), dict):
            problem = f"is {_kind(training[name])}, not a mapping" if name in training else "is missing"
            raise _damaged(path, name, problem)
    _check_like(training["scheduler"], parts["scheduler"].state_dict(), "scheduler", path)
    if parts["scaler"].is_enabled():  # a disabled GradScaler ignores what it is given
        _check_like(training["scaler"], parts["scaler"].state_dict(), "scaler", path)


# (field, smallest value, required): the counters resume_into reads, and where they may start.
_COUNTERS = (("epoch", 0, True), ("step", 0, True), ("batches_done", 0, False), ("world_size", 1, False))


def _check_counters(training: dict[str, Any], path: Path) -> None:
    for name, smallest, required in _COUNTERS:
        if name not in training:
            if required:
                raise _damaged(path, name, "is missing")
            continue
        value = training[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise _damaged(path, name, f"is {shown(value)}, not a whole number >= {smallest}")
    if "best_ap" not in training:
        raise _damaged(path, "best_ap", "is missing")
    if not _is_number(training["best_ap"]):
        raise _damaged(path, "best_ap", f"is {shown(training['best_ap'])}, not a finite number")
    best = training.get("best_metrics", {})
    if not isinstance(best, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in best.items()):
        raise _damaged(path, "best_metrics", f"is {shown(best)}, not a mapping of metric names to numbers")
    updates = training.get("ema_updates", 0)
    if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
        raise _damaged(path, "ema_updates", f"is {shown(updates)}, not a whole number >= 0")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_resume_weights(checkpoint: Checkpoint, parts: TrainingParts, path: Path) -> None:
    """The raw weights (``training_state.model`` when the checkpoint holds the EMA's) fit the model, the
    checkpoint's fit the EMA: same names, shapes, kinds of values, all finite (``check_weights_fit``)."""
    training = checkpoint.training_state
    damage_fix = f"resume from an earlier last.pt, or start a new run from its weights with --weights {path}"

    def check(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
        check_weights_fit(model, state, source, "the model configured now", _MODEL_FIX, damage_fix)

    if "model" in training:
        raw = check_tensor_dict(training["model"], path, "training_state.model")
        check(parts["model"], raw, f"{path} (training_state.model)")
    else:
        check(parts["model"], checkpoint.model_state, str(path))
    if parts["ema"] is not None:
        check(parts["ema"].module, checkpoint.model_state, str(path))


def _check_optimizer(training: dict[str, Any], optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Groups and hyper-parameters like the optimizer's own, and a state per parameter of its shape:
    ``Optimizer.load_state_dict`` checks only the number of parameters per group."""
    saved = training.get("optimizer")
    if not (
        isinstance(saved, dict) and isinstance(saved.get("param_groups"), list) and isinstance(saved.get("state"), dict)
    ):
        raise _damaged(path, "optimizer", f"is {shown(saved)}, not an optimizer state (state, param_groups)")
    reference, groups = optimizer.state_dict()["param_groups"], saved["param_groups"]
    if len(groups) != len(reference):
        raise _damaged(path, "optimizer.param_groups", f"has {len(groups)} groups, the optimizer {len(reference)}")
    for index, (group, own) in enumerate(zip(groups, reference)):
        field = f"optimizer.param_groups[{index}]"
        _check_like(group, {k: v for k, v in own.items() if k != "params"}, field, path)
        ids = group.get("params")
        if not isinstance(ids, list) or len(ids) != len(own["params"]) or not all(_is_index(i) for i in ids):
            raise _damaged(path, f"{field}.params", f"is not a list of {len(own['params'])} parameter indices")
    saved_ids = list(chain.from_iterable(group["params"] for group in groups))
    params = dict(zip(saved_ids, chain.from_iterable(group["params"] for group in optimizer.param_groups)))
    if len(params) != len(saved_ids):
        raise _damaged(path, "optimizer.param_groups", "lists a parameter index twice")
    for index, state in saved["state"].items():
        field = f"optimizer.state[{shown(index)}]"
        if index not in params or not isinstance(state, dict):
            raise _damaged(path, field, "is not the state of one of the optimizer's parameters")
        for name, value in state.items():
            _check_parameter_state(value, params[index], f"{field}[{shown(name)}]", name == "step", path)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_parameter_state(value: Any, parameter: Tensor, field: str, is_step: bool, path: Path) -> None:
    """A momentum or moment buffer is a finite float tensor of its parameter's shape; ``step`` is one number
    (torch's own ``load_state_dict`` tells them apart by that key too)."""
    if value is None or _is_number(value):
        return
    if not isinstance(value, Tensor) or value.layout != torch.strided or value_kind(value) != "floating":
        raise _damaged(path, field, f"is {_kind(value)}, not a floating-point tensor")
    if is_step and value.numel() != 1:
        raise _damaged(path, field, f"has shape {quoted(list(value.shape), 60)}, not one number")
    if not is_step and value.shape != parameter.shape:
        raise _damaged(path, field, f"has shape {quoted(list(value.shape), 60)}, its parameter {list(parameter.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise _damaged(path, field, "holds NaN or inf values")


def _check_like(saved: Any, reference: Any, field: str, path: Path) -> None:
    """``saved`` has the structure of ``reference`` (a fresh object's ``state_dict()``): mappings with its
    keys, lists of its length, numbers where it has numbers (finite), flags where it has flags.

    Keys whose reference value is a flag (bool or None) may be absent: torch versions add such options
    and default them on load (``Optimizer.__setstate__``); a missing number or list is read and fails."""
    if isinstance(reference, dict):
        if not isinstance(saved, dict):
            raise _damaged(path, field, f"is {_kind(saved)}, not a mapping")
        for key, own in reference.items():
            if key in saved:
                _check_like(saved[key], own, f"{field}.{key}", path)
            elif own is not None and not isinstance(own, bool):
                raise _damaged(path, f"{field}.{key}", "is missing")
    elif isinstance(reference, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(reference):
            raise _damaged(path, field, f"is {shown(saved)}, not a list of {len(reference)} values")
        for index, (item, own) in enumerate(zip(saved, reference)):
            _check_like(item, own, f"{field}[{index}]", path)
    elif _kind(saved) != _kind(reference) or (_kind(saved) == "a number" and not _is_number(saved)):
        raise _damaged(path, field, f"is {shown(saved)}, not {_kind(reference)}")


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return "a tensor" if isinstance(value, Tensor) else f"a {type(value).__name__}"
