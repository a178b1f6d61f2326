"""R-CNN's CNN fine-tuning (section 2.3): ``rcnn.finetune_iters`` optimizer steps of the K+1-way window
classification loss, through the gradient loop's own step (``engine/step.py``, ``TrainingStep``).

So it trains as every other pipeline does: the solver's optimizer and warm-up + schedule (one "epoch"
of ``finetune_iters`` steps), ``solver.loss_weights``, autocast with ``solver.amp``, gradient
accumulation, clipping to ``solver.clip_grad_norm``, non-finite steps skipped (``max_nonfinite_steps``
in a row stop the run) and, with ``solver.ema_decay``, the CNN's moving average as the result.
Data-parallel, the detector is wrapped in DDP and each process trains on its slice of every global batch.

The windows a batch samples are drawn from torch's generator seeded by ``(seed, rank, step)``, the
``micro``-th batch of an accumulated step after the first by ``(seed, rank, step, micro)``: a re-run
draws the same windows, and without accumulation they are the ones R-CNN fine-tuning always drew.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detkit.data.seeded import hash_ints
from detkit.engine.ema import ModelEMA
from detkit.engine.events import StageAdvanced, StageFinished, StageStarted
from detkit.engine.precision import Precision
from detkit.engine.rcnn.context import StageContext
from detkit.engine.solver import build_optimizer, build_scheduler
from detkit.engine.step import TrainingStep
from detkit.engine.training_data import epoch_loader

LOSS = "loss_cls"  # the one loss R-CNN's detector returns with targets: K+1-way cross-entropy on windows


def window_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """The seed of the window sampling in micro-batch ``micro`` of optimizer step ``step`` on ``rank``."""
    return hash_ints(seed, rank, step) if micro == 0 else hash_ints(seed, rank, step, micro)


def finetune_cnn(ctx: StageContext) -> list[float]:
    """Fine-tune ``ctx.model.cnn`` in place; returns each optimizer step's ``loss_cls``, averaged over the
    step's batches and the processes. The model is left in eval mode."""
    step, ema = _training_step(ctx)
    ctx.model.train()
    losses: list[float] = []
    running: float | None = None
    epoch = 0
    ctx.on_event(
        StageStarted("finetune", total=ctx.rcnn.finetune_iters, description="fine-tuning the CNN on warped regions")
    )
    while len(losses) < ctx.rcnn.finetune_iters:
        running = _finetune_epoch(ctx, step, epoch, losses, running)
        epoch += 1
    ctx.on_event(StageFinished("finetune"))
    if ema is not None:
        ctx.model.cnn.load_state_dict(ema.module.state_dict())
    ctx.model.eval()
    return losses


def _training_step(ctx: StageContext) -> tuple[TrainingStep, ModelEMA | None]:
    """The shared training step over the CNN's parameters (the detector wrapped in DDP when joined), and
    the CNN's moving average when ``solver.ema_decay`` asks for one."""
    solver, model, device = ctx.cfg.solver, ctx.model, ctx.device
    optimizer = build_optimizer(model.cnn, solver)
    scheduler = build_scheduler(optimizer, replace(solver, epochs=1), ctx.rcnn.finetune_iters)
    trained: nn.Module = model
    if ctx.rank.joined:
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = ModelEMA(model.cnn, solver.ema_decay, solver.ema_ramp_steps) if solver.ema_decay > 0 else None
    scaler = Precision.of_solver(solver).grad_scaler(device)
    step = TrainingStep(
        ctx.cfg, trained, model.cnn, optimizer, scheduler, scaler, ctx.rank, device, ema=ema, on_event=ctx.on_event
    )
    return step, ema


def _finetune_epoch(
    ctx: StageContext, step: TrainingStep, epoch: int, losses: list[float], running: float | None
) -> float | None:
    """One pass over the training windows' loader, appending each optimizer step's loss to ``losses``
    until ``finetune_iters`` are done; returns the running (0.9-smoothed) loss the progress shows."""
    cfg, rank = ctx.cfg, ctx.rank
    accumulate = cfg.solver.accumulate_steps
    loader = epoch_loader(ctx.train_set, cfg, epoch, rank=rank)
    total, batches_done, micro = len(loader), 0, 0
    group_sum: torch.Tensor | None = None
    for images, targets in loader:
        group_size = min(accumulate, total - batches_done)
        closes_group = micro == group_size - 1
        torch.manual_seed(window_seed(cfg.seed, rank.rank, len(losses), micro))
        batch = step.forward_backward(
            images, targets, group_size=group_size, closes_group=closes_group, step=len(losses)
        )
        if batch.values is None:  # non-finite: this step's gradients are dropped everywhere
            batches_done += micro + 1
            micro, group_sum = 0, None
            continue
        group_sum = batch.values if group_sum is None else group_sum + batch.values
        micro += 1
        if not closes_group:
            continue
        step.optimizer_step()
        batches_done += group_size
        losses.append(float(group_sum[batch.names.index(LOSS)]) / (group_size * rank.world_size))
        micro, group_sum = 0, None
        running = losses[-1] if running is None else 0.9 * running + 0.1 * losses[-1]
        ctx.on_event(StageAdvanced("finetune", len(losses), {LOSS: running}))
        if len(losses) == ctx.rcnn.finetune_iters:
            break
    return running
