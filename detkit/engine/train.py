"""The training loop of every gradient-trained pipeline, in one process or data-parallel in many.

One optimizer step (``step.TrainingStep``, shared with R-CNN fine-tuning): ``solver.accumulate_steps``
batches, each a forward with targets -> sum of ``loss_*`` weighted by ``solver.loss_weights`` -> backward
(under autocast with ``solver.amp``; fp16 through a gradient scaler), then clip -> step -> per-iteration
warm-up + cosine/step schedule -> EMA update. After each validation
epoch: COCO box AP on the val split (each process predicts its share of the images, rank 0 scores
them all), ``last.pt`` and (when AP improved) ``best.pt`` written atomically by rank 0, a JSON-lines
metrics log and a training-curve PNG in the run directory.

What makes a run survive faults:
- Randomness is a function of what is computed, not of history: augmentation of item ``i`` in
  epoch ``e`` is seeded by ``(seed, e, i)`` (``data/seeded.py``), the model's own draws (RoI sampling,
  multi-scale sizes) by ``(seed, rank, step, micro-batch)``. A run resumed from any step therefore
  continues exactly as the uninterrupted run, with no random-generator state to restore.
- ``last.pt`` also holds the optimizer, scheduler, scaler, EMA, epoch, step and the batches already
  trained on in the current epoch; it is written at epoch ends, every
  ``runtime.checkpoint_every_steps`` steps, and when Ctrl-C/SIGTERM stops the run at a step boundary.
- A non-finite loss (on any process) skips its step on every process; several in a row stop the run
  with a message naming the likely causes.

With ``solver.ema_decay`` the exponential moving average is what validation scores and checkpoints
hold (the raw weights ride along for ``--resume``); with ``data.mosaic_prob`` the epoch's loader tiles
images into mosaics until the last ``data.mosaic_off_epochs`` epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import config_to_dict
from detkit.data.sampler import DetectionBatchSampler
from detkit.data.seeded import hash_ints
from detkit.engine.device import deterministic_algorithms, seed_everything
from detkit.engine.distributed import (
    SINGLE_PROCESS,
    Rank,
    backend_for,
    barrier,
    broadcast_buffers_from_main,
    broadcast_from_main,
    cpu_threads_per_process,
    process_group,
    rank_from_environment,
    training_device,
)
from detkit.engine.ema import ModelEMA
from detkit.engine.evaluate import evaluate_detector
from detkit.engine.events import (
    EpochFinished,
    EventCallback,
    Notice,
    StageAdvanced,
    StageFinished,
    StageStarted,
    ignore_events,
)
from detkit.engine.fine_tune import start_from_checkpoint
from detkit.engine.interrupt import StopRequest
from detkit.engine.launch import launch
from detkit.engine.metrics_log import METRICS_LOG, logged_before, read_log, truncate_log
from detkit.engine.precision import Precision, check_runtime
from detkit.engine.proposals import propose_and_report
from detkit.engine.rcnn import train_rcnn
from detkit.engine.runs import CONFIG, TrainResult, new_run_dir, record_latest, removed_on_failure
from detkit.engine.solver import build_optimizer, build_scheduler
from detkit.engine.step import TrainingStep, reweighted
from detkit.engine.training_data import epoch_loader, load_datasets, report_dataset, validation_notice
from detkit.engine.training_state import (
    TrainingParts,
    TrainingState,
    read_resume_checkpoint,
    resume_into,
    training_checkpoint,
)
from detkit.errors import ConfigError, TrainingInterrupted
from detkit.io import atomic_write_text
from detkit.pipelines import pipeline
from detkit.viz.curves import plot_training_curves


def train(
    cfg: ExperimentConfig, *, resume_from: Path | None = None, on_event: EventCallback = ignore_events
) -> TrainResult:
    """Train ``cfg`` here, in ``cfg.runtime.devices`` processes (this one is rank 0), or as one rank of a
    ``torchrun`` job; returns rank 0's result."""
    check_runtime(cfg)
    launched = rank_from_environment()
    if launched is not None:
        if cfg.runtime.devices > 1:
            raise ConfigError("--devices starts processes on one machine; under torchrun set --nproc-per-node instead")
        return train_rank(
            launched, "env://", cfg, resume_from, on_event=on_event if launched.is_main else ignore_events
        )
    if cfg.runtime.devices > 1:
        return launch(train_rank, cfg.runtime.devices, (cfg, resume_from), {"on_event": on_event})
    return train_rank(SINGLE_PROCESS, "", cfg, resume_from, on_event=on_event)


def train_rank(
    rank: Rank,
    init_method: str,
    cfg: ExperimentConfig,
    resume_from: Path | None,
    on_event: EventCallback = ignore_events,
) -> TrainResult:
    """One training process: join the group, then train (the staged R-CNN or the gradient loop)."""
    device = training_device(cfg.device, rank)
    with (
        process_group(rank, device, backend_for(cfg.runtime.backend, device), init_method),
        cpu_threads_per_process(rank, device),
        deterministic_algorithms(cfg.runtime.deterministic),
        StopRequest() as stop,
    ):
        if pipeline(cfg.model.pipeline).staged:
            return train_rcnn(cfg, rank=rank, device=device, resume_from=resume_from, on_event=on_event)
        return _Trainer(cfg, rank, device, stop, on_event).run(resume_from)


class _Trainer:
    """The state of one process's run: model (and its DDP wrapper), optimizer, schedule, run directory."""

    def __init__(
        self, cfg: ExperimentConfig, rank: Rank, device: torch.device, stop: StopRequest, on_event: EventCallback
    ) -> None:
        self.cfg, self.rank, self.device, self.stop, self.on_event = cfg, rank, device, stop, on_event
        self.precision = Precision.of_solver(cfg.solver)
        self.state = TrainingState()

    # --- set-up ---------------------------------------------------------------------------------

    def run(self, resume_from: Path | None) -> TrainResult:
        started = time.perf_counter()
        resumed = (
            read_resume_checkpoint(resume_from) if resume_from is not None else None
        )  # a bad file fails before any work
        seed_everything(self.cfg.seed)  # the same initial weights on every process
        self.train_set, self.val_set = load_datasets(self.cfg)
        if self.rank.is_main:
            report_dataset(self.train_set, self.on_event)
            notice = validation_notice(self.cfg)
            if notice is not None:
                self.on_event(notice)
        if pipeline(self.cfg.model.pipeline).uses_selective_search:
            self._precompute_proposals()
        self.cfg = replace(self.cfg, model=replace(self.cfg.model, num_classes=len(self.train_set.category_ids)))
        self._build_model(fresh=resumed is None)
        self.run_dir = self._run_dir(resumed)
        with removed_on_failure(self.run_dir, fresh=resumed is None, owner=self.rank.is_main):
            for epoch in range(self.state.epoch, self.cfg.solver.epochs):
                self._epoch(epoch)
        best = self.run_dir / "best.pt"
        if self.rank.is_main:
            if (
                not best.exists()
            ):  # no validation ran (every_epochs larger than the run): the last weights are the best we have
                save_checkpoint(best, self._checkpoint({}))
            record_latest(self.cfg.output_dir, best)
        barrier()
        return TrainResult(
            self.run_dir, best, self.run_dir / "last.pt", self.state.best_metrics or {}, time.perf_counter() - started
        )

    def _build_model(self, fresh: bool) -> None:
        cfg, device = self.cfg, self.device
        model = pipeline(cfg.model.pipeline).build(cfg.model)
        if fresh and cfg.model.init_weights:
            start_from_checkpoint(model, cfg, self.on_event if self.rank.is_main else ignore_events)
        if cfg.runtime.sync_bn and self.rank.joined:  # CUDA only: check_runtime refused it on CPU
            # torch leaves convert_sync_batchnorm unannotated; it returns the converted module
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        self.model = self.precision.prepare(model.to(device))
        self.ema = (
            ModelEMA(self.model, cfg.solver.ema_decay, cfg.solver.ema_ramp_steps) if cfg.solver.ema_decay > 0 else None
        )
        self.evaluated = (
            self.ema.module if self.ema is not None else self.model
        )  # what validation scores and checkpoints hold
        self.trained: nn.Module = self.model  # what the training forward calls: the DDP wrapper, or the model alone
        if self.rank.joined:
            self.trained = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        steps_per_epoch = -(-len(epoch_loader(self.train_set, cfg, 0, rank=self.rank)) // cfg.solver.accumulate_steps)
        self.optimizer = build_optimizer(self.model, cfg.solver)
        self.scheduler = build_scheduler(self.optimizer, cfg.solver, steps_per_epoch)
        self.scaler = self.precision.grad_scaler(device)
        self.step = TrainingStep(
            cfg,
            self.trained,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.rank,
            device,
            ema=self.ema,
            on_event=self.on_event,
        )

    def _run_dir(self, resumed: Checkpoint | None) -> Path:
        if resumed is not None:
            run_dir = resume_into(resumed, self.cfg, self._parts(), self.state, self.rank, self.on_event)
            _refuse_a_finished_run(run_dir, self.state.epoch, self.cfg)  # before anything in the run is rewritten
        else:
            made = new_run_dir(self.cfg.output_dir, self.cfg.name) if self.rank.is_main else None
            run_dir = cast(Path, broadcast_from_main(made))  # rank 0's
        if self.rank.is_main:
            atomic_write_text(run_dir / CONFIG, json.dumps(config_to_dict(self.cfg), indent=2))
            # Records past the checkpoint would be repeated; a line cut short by a kill is dropped.
            partial = truncate_log(
                run_dir / METRICS_LOG, lambda record: logged_before(record, self.state.step, self.state.epoch)
            )
            if partial:
                self.on_event(
                    Notice(f"{run_dir / METRICS_LOG}: {partial} unreadable line(s) dropped (a write cut short)")
                )
        return run_dir

    def _parts(self) -> TrainingParts:
        return {
            "model": self.model,
            "ema": self.ema,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }

    def _precompute_proposals(self) -> None:
        """Fill the proposal cache (all cores, one process per machine) before the loaders read it image by image."""
        if self.rank.local_rank == 0:
            seen: set[Path] = set()
            for dataset in (self.train_set, self.val_set):
                if dataset.annotation_file not in seen:
                    seen.add(dataset.annotation_file)
                    propose_and_report(
                        dataset, self.cfg.model.proposals, label=str(dataset.annotation_file), on_event=self.on_event
                    )
        barrier()

    # --- epochs and steps -----------------------------------------------------------------------

    def _epoch(self, epoch: int) -> None:
        cfg, state = self.cfg, self.state
        epoch_start = time.perf_counter()
        losses, num_images = self._train_epoch(epoch)
        images_per_second = num_images / max(time.perf_counter() - epoch_start, 1e-9)
        state.epoch, state.batches_done = epoch + 1, 0
        broadcast_buffers_from_main(self.model)
        if self.ema is not None:
            broadcast_buffers_from_main(self.ema.module)
        metrics: dict[str, float] = {}
        if state.epoch == cfg.solver.epochs or state.epoch % max(cfg.eval.every_epochs, 1) == 0:
            metrics = evaluate_detector(
                self.evaluated,
                self.val_set,
                device=self.device,
                batch_size=cfg.data.batch_size * 2,
                on_event=self.on_event,
            )
        is_best = bool(metrics) and metrics["AP"] > state.best_ap
        if is_best:
            state.best_ap, state.best_metrics = metrics["AP"], metrics
        if self.rank.is_main:
            checkpoint = self._checkpoint(metrics)
            save_checkpoint(self.run_dir / "last.pt", checkpoint)
            if is_best:  # weights only: resuming reads last.pt, and optimizer state would double the file
                save_checkpoint(self.run_dir / "best.pt", replace(checkpoint, training_state={}))
        self._log(
            {
                "epoch": state.epoch,
                "train_images_per_second": round(images_per_second, 3),
                **({"val": metrics} if metrics else {}),
            }
        )
        if self.rank.is_main:  # after the log line: the curves show this epoch's validation, not the last one's
            plot_training_curves(read_log(self.run_dir / METRICS_LOG), self.run_dir / "curves.png")
        self.on_event(
            EpochFinished(
                state.epoch,
                cfg.solver.epochs,
                losses,
                metrics,
                is_best,
                time.perf_counter() - epoch_start,
                images_per_second,
            )
        )

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        """Train through the epoch's remaining batches; returns the running losses and the images trained on
        (every process's, padding included)."""
        cfg, state = self.cfg, self.state
        loader = epoch_loader(
            self.train_set,
            cfg,
            epoch,
            rank=self.rank,
            start=state.batches_done,
            pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
        )
        sampler = cast(DetectionBatchSampler, loader.batch_sampler)  # what epoch_loader gives the loader
        total = len(sampler.global_batches)
        num_images = sum(len(batch) for batch in sampler.global_batches[state.batches_done :])
        self.model.train()
        self.on_event(
            StageStarted("train", total=total, epoch=epoch + 1, description=f"epoch {epoch + 1}/{cfg.solver.epochs}")
        )
        running: dict[str, float] = {}
        group_sum: torch.Tensor | None = None
        micro = images_done = 0
        for images, targets in loader:
            group_size = min(cfg.solver.accumulate_steps, total - state.batches_done)
            closes_group = micro == group_size - 1
            torch.manual_seed(hash_ints(cfg.seed, self.rank.rank, state.step, micro))  # see the module docstring
            batch = self.step.forward_backward(
                images,
                targets,
                group_size=group_size,
                closes_group=closes_group,
                stop_requested=self.stop.requested,
                step=state.step,
            )
            images_done += len(sampler.global_batches[state.batches_done + micro])
            if batch.values is None:  # non-finite: this step's gradients are dropped everywhere
                state.batches_done += micro + 1
                micro, group_sum = 0, None
                self._stop_if_asked()
                continue
            group_sum = batch.values if group_sum is None else group_sum + batch.values
            micro += 1
            if not closes_group:
                continue
            self.step.optimizer_step()
            state.step += 1
            state.batches_done += group_size
            values = dict(zip(batch.names, (group_sum / (group_size * self.rank.world_size)).tolist()))
            micro, group_sum = 0, None
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in values.items()}
            self._after_step(epoch, values, running, images_done)
            self._stop_if_asked()
        self.on_event(StageFinished("train"))
        return running, num_images

    def _after_step(self, epoch: int, values: dict[str, float], running: dict[str, float], images: int) -> None:
        runtime, state = self.cfg.runtime, self.state
        lr = self.optimizer.param_groups[0]["lr"]
        if state.step == 1 or state.step % max(runtime.log_every_steps, 1) == 0:
            # "loss" is the weighted total; each loss_* raw, and weighted under "weighted" where its weight is not 1.
            weighted = reweighted(values, self.cfg.solver.loss_weights)
            self._log(
                {
                    "epoch": epoch + 1,
                    "iter": state.step,
                    "lr": lr,
                    **values,
                    **({"weighted": weighted} if weighted else {}),
                }
            )
        if (
            runtime.checkpoint_every_steps > 0
            and state.step % runtime.checkpoint_every_steps == 0
            and self.rank.is_main
        ):
            save_checkpoint(self.run_dir / "last.pt", self._checkpoint({}))
        self.on_event(StageAdvanced("train", completed=state.batches_done, info={**running, "lr": lr}, images=images))

    def _stop_if_asked(self) -> None:
        """After a completed (or skipped) optimizer step that a process was asked to stop at: every process
        stops at this same step; rank 0 saves where the run stands, then all exit."""
        if not self.step.stop_agreed:
            return
        last = self.run_dir / "last.pt"
        if self.rank.is_main:
            save_checkpoint(last, self._checkpoint({}))
        barrier()
        self.on_event(StageFinished("train"))
        raise TrainingInterrupted(
            f"stopped at epoch {self.state.epoch + 1}, step {self.state.step}; saved {last}; "
            f"continue with: detkit train --resume {self.run_dir}"
        )

    # --- outputs --------------------------------------------------------------------------------

    def _checkpoint(self, metrics: dict[str, float]) -> Checkpoint:
        return training_checkpoint(
            self.cfg,
            self.evaluated,
            self.train_set,
            metrics,
            self._parts(),
            self.state,
            self.rank.world_size,
        )

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank.is_main:
            with open(self.run_dir / METRICS_LOG, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _refuse_a_finished_run(run_dir: Path, epochs_done: int, cfg: ExperimentConfig) -> None:
    """Resuming after the last epoch would train nothing and still repoint ``runs/latest.json``."""
    if epochs_done >= cfg.solver.epochs:
        raise ConfigError(
            f"--resume {run_dir}: the run has trained all its {epochs_done} epochs; pass --epochs with more "
            "to train on (the schedule then follows the new total)"
        )
