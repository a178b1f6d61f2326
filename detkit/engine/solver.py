"""Optimizer and learning-rate schedule: linear warm-up, then cosine or step decay, per iteration."""

from __future__ import annotations

import math

import torch
from torch import nn

from detkit.config import SolverConfig
from detkit.errors import ConfigError

TRUNK_PREFIX = "backbone.body."  # the classification network the detector is built on (pretrained)


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters: weight decay on weights only, and the trunk at
    ``cfg.lr * cfg.trunk_lr_factor`` when that factor is below 1 (its groups after the others, so the
    first group's rate is the nominal one the logs print)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    split_trunk = cfg.trunk_lr_factor != 1.0  # one group pair otherwise: the layout older checkpoints resume
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Weight decay on norm scales and biases only shrinks them toward zero for no benefit.
        key = (split_trunk and name.startswith(TRUNK_PREFIX), parameter.ndim <= 1)
        groups.setdefault(key, []).append(parameter)
    param_groups = [
        {
            "params": groups.get((trunk, no_decay), []),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "lr": cfg.lr * (cfg.trunk_lr_factor if trunk else 1.0),
        }
        for trunk in ((False, True) if split_trunk else (False,))
        for no_decay in (False, True)
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr)
    raise ConfigError(f"solver.optimizer {cfg.optimizer!r} is not one of sgd, adamw")


# Warm-up never takes more than this share of a run, so a 1-epoch smoke run still trains at the
# nominal rate for most of its steps instead of spending them ramping up.
MAX_WARMUP_SHARE = 0.2


def warmup_length(cfg: SolverConfig, total_iters: int) -> int:
    """Warm-up iterations actually used: ``cfg.warmup_iters`` capped at a fifth of the run."""
    return min(cfg.warmup_iters, int(total_iters * MAX_WARMUP_SHARE))


def lr_factor(iteration: int, cfg: SolverConfig, iters_per_epoch: int) -> float:
    """Multiplier of ``cfg.lr`` at a 0-based iteration.

    Linear warm-up from ``cfg.warmup_factor`` to 1.0, reached exactly at the end of the warm-up;
    the decay (cosine or step) starts from there, so the nominal rate is always reached once.
    """
    total = max(cfg.epochs * iters_per_epoch, 1)
    warmup = warmup_length(cfg, total)
    if iteration < warmup:
        alpha = iteration / warmup
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        progress = (iteration - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.schedule == "step":
        epoch = iteration // max(iters_per_epoch, 1)
        return cfg.gamma ** sum(epoch >= boundary for boundary in cfg.step_epochs)
    raise ConfigError(f"solver.schedule {cfg.schedule!r} is not one of cosine, step")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SolverConfig, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, cfg, iters_per_epoch)  # validates the schedule name before training starts
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg, iters_per_epoch))
