"""Training throughput: images per second of full optimizer steps (forward, losses, backward, update).

The step is the one ``detkit train`` takes: the preset's optimizer, autocast and a gradient scaler
under AMP. The learning rate is tiny so that random weights on random scenes stay finite for the
few steps timed; it does not change the arithmetic. Selective-search proposals are attached to the
targets before timing, as training reads them from the cache; R-CNN times its CNN fine-tuning step
(the SVM and regression stages solve on cached features and have no per-image step).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import torch
from torch import Tensor, nn

from detkit.config import ExperimentConfig
from detkit.engine.benchmark.timing import time_repeatedly, warm_up
from detkit.engine.precision import Precision
from detkit.engine.solver import build_optimizer
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.pipelines import pipeline
from detkit.structures import Target

TIMING_LR = 1e-6


def training_images_per_second(
    model: nn.Module,
    cfg: ExperimentConfig,
    images: list[Tensor],
    targets: list[Target],
    *,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    runs: int,
    warmup: int,
    max_seconds: float,
) -> float:
    """Images per second over timed training steps of ``batch_size`` images; ``model`` is trained (its
    weights change: measure it last)."""
    trainee = model.train()
    if pipeline(cfg.model.pipeline).uses_selective_search:
        targets = _with_proposals(trainee, images, targets)
    targets = [target.to(device) for target in targets]
    optimizer = build_optimizer(trainee, replace(cfg.solver, lr=TIMING_LR))
    scaler = precision.grad_scaler(device)
    batches = [
        (images[start : start + batch_size], targets[start : start + batch_size])
        for start in range(0, len(images), batch_size)
    ]

    def step(batch_images: list[Tensor], batch_targets: list[Target]) -> None:
        with precision.autocast(device):
            losses = trainee(batch_images, batch_targets).losses
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    calls = [lambda batch=batch: step(*batch) for batch in batches]
    warm_up(calls, warmup)
    times = time_repeatedly(calls, device, runs, max_seconds)
    return 1000 * len(images) * (len(times) // len(calls)) / sum(times)


@torch.no_grad()
def _with_proposals(model: nn.Module, images: list[Tensor], targets: list[Target]) -> list[Target]:
    """Each target with its image's selective-search proposals, as the training data loader attaches them."""
    source = cast(PrecomputedProposals, model.proposal_generator)  # a selective-search pipeline's source
    return [replace(target, proposals=source.compute(image.cpu())) for image, target in zip(images, targets)]
