"""One optimizer step of any gradient-trained model: the gradient loop's and R-CNN fine-tuning's alike.

    forward(images, targets) -> losses {loss_*: Tensor}           under autocast (``solver.amp``)
    -> loss = sum of weight[name] * loss_name                      ``solver.loss_weights``
    -> losses summed over processes, with the stop flag            one collective per batch
    -> backward of loss / group_size through the gradient scaler   skipped everywhere when non-finite
    ... ``group_size`` batches (gradient accumulation), then
    -> unscale, clip to ``solver.clip_grad_norm`` -> optimizer step -> scaler update -> schedule -> EMA

The loss a detector returns is raw (each stage's mean over its samples); how much each counts is a
training choice, so the engine, not the detector, weighs them. A non-finite loss on any process skips
the step on every process; ``solver.max_nonfinite_steps`` in a row stop the run with the likely causes.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from detkit.config import ExperimentConfig, LossWeights
from detkit.engine.distributed import Rank, sum_over_processes
from detkit.engine.ema import ModelEMA
from detkit.engine.events import EventCallback, Notice, ignore_events
from detkit.engine.precision import Precision
from detkit.errors import TrainingError
from detkit.structures import Target


def weighted_total(losses: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """``sum(weight[name] * loss)`` over ``losses``; a loss ``LossWeights`` does not name counts once."""
    known = {field.name for field in fields(weights)}
    # sum() starts from the int 0; a detector returns at least one loss, so the total is a tensor
    return cast(
        Tensor, sum(getattr(weights, name) * value if name in known else value for name, value in losses.items())
    )


def reweighted(values: dict[str, float], weights: LossWeights) -> dict[str, float]:
    """The weighted value of each logged raw loss whose weight is not 1 (what the total summed)."""
    known = {field.name: getattr(weights, field.name) for field in fields(weights)}
    return {name: known[name] * value for name, value in values.items() if known.get(name, 1.0) != 1.0}


@dataclass
class StepLosses:
    """One batch's losses summed over processes: ``values[0]`` the weighted total, then each raw loss,
    in ``names`` order; None values when the step was skipped (non-finite)."""

    names: list[str]
    values: Tensor | None


class TrainingStep:
    """The parts a training step touches, and the step itself (see the module docstring).

    ``trained`` is what the forward calls (a DDP wrapper, or the model); ``model`` holds the parameters
    clipped and averaged; ``stop_requested`` is read at every batch and the answer agreed by all
    processes in ``stop_agreed``.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        trained: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        rank: Rank,
        device: torch.device,
        *,
        ema: ModelEMA | None = None,
        on_event: EventCallback = ignore_events,
    ) -> None:
        self.cfg, self.trained, self.model, self.optimizer = cfg, trained, model, optimizer
        self.scheduler, self.scaler, self.rank, self.device, self.ema = scheduler, scaler, rank, device, ema
        self.precision = Precision.of_solver(cfg.solver)
        self.on_event = on_event
        self.nonfinite_in_a_row = 0  # consecutive skipped steps, across epoch boundaries
        self.stop_agreed = False

    def forward_backward(
        self,
        images: list[Tensor],
        targets: list[Target],
        *,
        group_size: int = 1,
        closes_group: bool = True,
        stop_requested: bool = False,
        step: int = 0,
    ) -> StepLosses:
        """One batch: losses, their sum over processes, and gradients (``group_size`` batches make a step;
        DDP synchronises gradients on the batch that ``closes_group`` only)."""
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [target.to(self.device) for target in targets]
        joined_and_open = self.rank.joined and not closes_group  # joined: ``trained`` is the DDP wrapper
        no_sync = cast(DistributedDataParallel, self.trained).no_sync() if joined_and_open else nullcontext()
        with no_sync:
            with self.precision.autocast(self.device):
                losses = self.trained(images, targets).losses
            loss = weighted_total(losses, self.cfg.solver.loss_weights)
            names = ["loss", *losses]
            flag = torch.tensor(float(stop_requested), device=loss.device)
            reduced = sum_over_processes(
                torch.stack([loss.detach().float(), *(v.detach().float() for v in losses.values()), flag])
            )
            self.stop_agreed = self.stop_agreed or bool(reduced[-1] > 0)
            if not torch.isfinite(reduced[0]):
                self._skip(losses, step)
                return StepLosses(names, None)
            # torch leaves Tensor.backward unannotated
            self.scaler.scale(loss / group_size).backward()  # type: ignore[no-untyped-call]
        self.nonfinite_in_a_row = 0
        return StepLosses(names, reduced[:-1].cpu())

    def optimizer_step(self) -> None:
        """Clip, step, update the scaler, the schedule and the EMA; clear the gradients."""
        if self.cfg.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _skip(self, losses: dict[str, Tensor], step: int) -> None:
        """Drop a non-finite batch's gradients; too many in a row stop the run."""
        self.nonfinite_in_a_row += 1
        self.optimizer.zero_grad(set_to_none=True)
        solver = self.cfg.solver
        bad = ", ".join(k for k, v in losses.items() if not torch.isfinite(v)) or "on another process"
        if self.nonfinite_in_a_row >= solver.max_nonfinite_steps:
            raise TrainingError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row at step {step} ({bad}); likely causes: learning "
                f"rate too high (now {solver.lr}, try --set solver.lr={solver.lr / 10:g}), degenerate boxes in the "
                "annotations (run `detkit data check`), or AMP overflow (try without --amp, or --amp-dtype bf16)"
            )
        self.on_event(
            Notice(
                f"step {step}: non-finite {bad}; step skipped ({self.nonfinite_in_a_row}/{solver.max_nonfinite_steps})"
            )
        )
