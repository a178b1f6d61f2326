"""The training loop of every gradient-trained pipeline.

One epoch: forward with targets -> weighted sum of ``loss_*`` -> backward -> clip -> step, with a
per-iteration warm-up + cosine/step schedule. After each validation epoch: COCO box AP on the val
split, ``last.pt`` and (when AP improved) ``best.pt`` written atomically, a JSON-lines metrics log
and a training-curve PNG in the run directory. A non-finite loss skips its step; several in a row
stop the run with a message naming the likely causes. With ``solver.ema_decay`` an exponential moving
average of the weights is what validation scores and checkpoints hold (the raw weights ride along
in the training state for ``--resume``); with ``data.mosaic_prob`` the epoch's loader tiles images
into mosaics until the last ``data.mosaic_off_epochs`` epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import config_to_dict
from detkit.data.coco import CocoDetection
from detkit.data.loaders import build_loader
from detkit.data.mosaic import MosaicDataset
from detkit.data.transforms import Compose, RandomHorizontalFlip, RandomPhotometric
from detkit.engine.curves import plot_training_curves
from detkit.engine.device import resolve_device, seed_everything
from detkit.engine.ema import ModelEMA
from detkit.engine.evaluate import evaluate_detector
from detkit.engine.events import (
    EpochFinished, EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events,
)
from detkit.engine.proposals import propose_and_report
from detkit.engine.runs import CONFIG, new_run_dir, record_latest
from detkit.engine.solver import build_optimizer, build_scheduler
from detkit.errors import CheckpointError, ConfigError, TrainingError
from detkit.io import atomic_write_text
from detkit.pipelines import MASK_PIPELINES, PIPELINES, SELECTIVE_SEARCH_PIPELINES, STAGED_PIPELINES
from detkit.proposals.cache import ProposalCache

LOG_EVERY = 10  # iterations between metrics-log records


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]  # the best validation epoch's COCO numbers
    seconds: float


@dataclass
class _State:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_ap: float = -1.0
    best_metrics: dict[str, float] | None = None
    nonfinite_in_a_row: int = 0  # consecutive skipped steps, across epoch boundaries


def load_datasets(cfg: ExperimentConfig) -> tuple[CocoDetection, CocoDetection]:
    """Train and validation sets; a selective-search pipeline's training targets carry cached proposals,
    a mask pipeline's carry instance masks."""
    data = cfg.data
    with_masks = cfg.model.pipeline in MASK_PIPELINES
    if not data.train_annotations or not data.train_images:
        raise ConfigError("no training data: pass --data, or set data.train_annotations and data.train_images")
    proposals = None
    if cfg.model.pipeline in SELECTIVE_SEARCH_PIPELINES:
        if data.mosaic_prob > 0:
            raise ConfigError(
                f"data.mosaic_prob={data.mosaic_prob}: {cfg.model.pipeline} trains on selective-search proposals of "
                "whole images, which a mosaic does not have; set data.mosaic_prob=0"
            )
        proposals = ProposalCache(cfg.model.proposals).proposals_for
    train_set = CocoDetection(
        data.train_annotations, data.train_images, transforms=_train_transforms(cfg), with_masks=with_masks,
        proposals=proposals,
    )
    val_set = CocoDetection(
        data.val_annotations or data.train_annotations, data.val_images or data.train_images,
        category_ids=train_set.category_ids,  # scored against the json's own polygons/RLE: no decoding needed
    )
    return train_set, val_set


def _train_transforms(cfg: ExperimentConfig) -> Compose:
    """Per-image augmentation: flip, then colour jitter when ``data.color_jitter`` > 0."""
    transforms = [RandomHorizontalFlip(cfg.data.hflip_prob)]
    if cfg.data.color_jitter > 0:
        amount = cfg.data.color_jitter
        if amount >= 1:
            raise ConfigError(f"data.color_jitter={amount} must be in [0, 1): factors are drawn from [1 - a, 1 + a]")
        transforms.append(RandomPhotometric(brightness=amount, contrast=amount, saturation=amount))
    return Compose(transforms)


def train(
    cfg: ExperimentConfig, *, resume_from: Path | None = None, on_event: EventCallback = ignore_events,
) -> TrainResult:
    if cfg.model.pipeline in STAGED_PIPELINES:
        from detkit.engine.rcnn import train_rcnn  # imported here: it builds on this module's TrainResult

        return train_rcnn(cfg, resume_from=resume_from, on_event=on_event)
    started = time.perf_counter()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train_set, val_set = load_datasets(cfg)
    _report_dataset(train_set, on_event)
    if cfg.model.pipeline in SELECTIVE_SEARCH_PIPELINES:
        _precompute_proposals(cfg, [train_set, val_set], on_event)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=len(train_set.category_ids)))
    if cfg.model.pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {cfg.model.pipeline!r}; choose one of {', '.join(PIPELINES)}")

    model = PIPELINES[cfg.model.pipeline](cfg.model).to(device)
    loader = _epoch_loader(train_set, cfg, epoch=0)
    optimizer = build_optimizer(model, cfg.solver)
    scheduler = build_scheduler(optimizer, cfg.solver, len(loader))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.solver.amp and device.type == "cuda")
    ema = ModelEMA(model, cfg.solver.ema_decay, cfg.solver.ema_ramp_steps) if cfg.solver.ema_decay > 0 else None
    evaluated = ema.module if ema is not None else model  # what validation scores and checkpoints hold
    state = _State()
    if resume_from is not None:
        run_dir = _resume(resume_from, cfg, model, ema, optimizer, scheduler, scaler, state)
    else:
        run_dir = new_run_dir(cfg.output_dir, cfg.name)
    atomic_write_text(run_dir / CONFIG, json.dumps(config_to_dict(cfg), indent=2))

    def make_checkpoint(metrics: dict[str, float]) -> Checkpoint:
        training_state = {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "epoch": state.epoch, "step": state.step, "best_ap": state.best_ap,
            "torch_rng": torch.get_rng_state(),
        }
        if ema is not None:  # the checkpoint's weights are the average; training resumes from the raw ones
            training_state.update(model=model.state_dict(), ema_updates=ema.updates)
        return Checkpoint(
            config=cfg, model_state=evaluated.state_dict(), class_names=train_set.class_names,
            category_ids=train_set.category_ids, metrics=metrics, training_state=training_state,
        )

    for epoch in range(state.epoch, cfg.solver.epochs):
        epoch_start = time.perf_counter()
        loader = _epoch_loader(train_set, cfg, epoch)
        losses = _train_one_epoch(model, ema, loader, optimizer, scheduler, scaler, cfg, device, epoch, state, run_dir, on_event)
        state.epoch = epoch + 1
        metrics: dict[str, float] = {}
        is_last = state.epoch == cfg.solver.epochs
        if is_last or state.epoch % max(cfg.eval.every_epochs, 1) == 0:
            metrics = evaluate_detector(evaluated, val_set, device=device, batch_size=cfg.data.batch_size * 2, on_event=on_event)
            _append_log(run_dir, {"epoch": state.epoch, "val": metrics})
        is_best = bool(metrics) and metrics["AP"] > state.best_ap
        if is_best:
            state.best_ap, state.best_metrics = metrics["AP"], metrics
        checkpoint = make_checkpoint(metrics)
        save_checkpoint(run_dir / "last.pt", checkpoint)
        if is_best:
            save_checkpoint(run_dir / "best.pt", checkpoint)
        plot_training_curves(_read_log(run_dir), run_dir / "curves.png")
        on_event(EpochFinished(state.epoch, cfg.solver.epochs, losses, metrics, is_best, time.perf_counter() - epoch_start))

    best = run_dir / "best.pt"
    if not best.exists():  # no validation ran (every_epochs larger than the run): the last weights are the best we have
        save_checkpoint(best, make_checkpoint({}))
    record_latest(cfg.output_dir, best)
    return TrainResult(run_dir, best, run_dir / "last.pt", state.best_metrics or {}, time.perf_counter() - started)


def _epoch_loader(dataset: CocoDetection, cfg: ExperimentConfig, epoch: int):
    # The shuffle order depends on (seed, epoch) only, so a run resumed at an epoch boundary sees
    # exactly the batches an uninterrupted run would have seen.
    data = cfg.data
    if data.mosaic_prob > 0 and epoch < cfg.solver.epochs - data.mosaic_off_epochs:
        dataset = MosaicDataset(dataset, prob=data.mosaic_prob, scale_range=data.mosaic_scale)
    return build_loader(
        dataset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers, seed=cfg.seed * 1000 + epoch
    )


def _train_one_epoch(model, ema, loader, optimizer, scheduler, scaler, cfg, device, epoch, state, run_dir, on_event) -> dict[str, float]:
    model.train()
    running: dict[str, float] = {}
    on_event(StageStarted("train", total=len(loader), epoch=epoch + 1, description=f"epoch {epoch + 1}/{cfg.solver.epochs}"))
    for index, (images, targets) in enumerate(loader):
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [target.to(device) for target in targets]
        with torch.autocast(device.type, enabled=scaler.is_enabled()):
            losses = model(images, targets).losses
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            state.nonfinite_in_a_row += 1
            _handle_nonfinite(losses, state.nonfinite_in_a_row, cfg, state, on_event)
            optimizer.zero_grad(set_to_none=True)
            continue
        state.nonfinite_in_a_row = 0
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.solver.clip_grad_norm > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.solver.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        state.step += 1
        values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in values.items()}
        lr = optimizer.param_groups[0]["lr"]
        if state.step % LOG_EVERY == 0:
            _append_log(run_dir, {"epoch": epoch + 1, "iter": state.step, "lr": lr, **values})
        on_event(StageAdvanced("train", completed=index + 1, info={**running, "lr": lr}))
    on_event(StageFinished("train"))
    return running


def _handle_nonfinite(losses: dict[str, torch.Tensor], count: int, cfg: ExperimentConfig, state: _State, on_event) -> None:
    bad = ", ".join(k for k, v in losses.items() if not torch.isfinite(v)) or "total"
    if count >= cfg.solver.max_nonfinite_steps:
        raise TrainingError(
            f"{count} non-finite losses in a row at step {state.step} ({bad}); likely causes: learning rate too high "
            f"(now {cfg.solver.lr}, try --set solver.lr={cfg.solver.lr / 10:g}), degenerate boxes in the annotations "
            "(run `detkit data check`), or AMP overflow (try without --set solver.amp=true)"
        )
    on_event(Notice(f"step {state.step}: non-finite {bad}; step skipped ({count}/{cfg.solver.max_nonfinite_steps})"))


def _resume(source: Path, cfg, model, ema: ModelEMA | None, optimizer, scheduler, scaler, state: _State) -> Path:
    source = Path(source)
    checkpoint_path = source / "last.pt" if source.is_dir() else source
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.pipeline != cfg.model.pipeline or checkpoint.config.model.num_classes != cfg.model.num_classes:
        raise CheckpointError(
            f"{checkpoint_path}: cannot resume a {checkpoint.pipeline} model with {checkpoint.config.model.num_classes} "
            f"classes as a {cfg.model.pipeline} model with {cfg.model.num_classes}; resume with the same --pipeline and data"
        )
    if not checkpoint.training_state:
        raise CheckpointError(f"{checkpoint_path}: holds weights only, no training state; pass the run's last.pt")
    training = checkpoint.training_state
    try:
        model.load_state_dict(training.get("model", checkpoint.model_state))
        if ema is not None:
            ema.load_state_dict({"module": checkpoint.model_state, "updates": training.get("ema_updates", state.step)})
    except RuntimeError:
        raise CheckpointError(
            f"{checkpoint_path}: its weights do not fit the model configured now; resume without changing "
            "model.* settings (the run's own config.json is used by default)"
        ) from None
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    scaler.load_state_dict(training["scaler"])
    torch.set_rng_state(training["torch_rng"])
    state.epoch, state.step, state.best_ap = int(training["epoch"]), int(training["step"]), float(training["best_ap"])
    state.best_metrics = checkpoint.metrics or None
    return checkpoint_path.parent


def _precompute_proposals(cfg: ExperimentConfig, datasets: list[CocoDetection], on_event) -> None:
    """Fill the proposal cache for every image (all cores) before the loaders read it one image at a time."""
    seen: set[Path] = set()
    for dataset in datasets:
        if dataset.annotation_file not in seen:
            seen.add(dataset.annotation_file)
            propose_and_report(dataset, cfg.model.proposals, label=str(dataset.annotation_file), on_event=on_event)


def _report_dataset(dataset: CocoDetection, on_event) -> None:
    report = dataset.report
    if report.num_clipped or report.num_dropped_degenerate:
        on_event(Notice(
            f"{dataset.annotation_file}: {report.num_clipped} boxes clipped to their image and "
            f"{report.num_dropped_degenerate} degenerate boxes dropped (run `detkit data check` for details)"
        ))


def _append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
