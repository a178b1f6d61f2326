"""Optimizer and learning-rate schedule: linear warm-up, then cosine or step decay, per iteration."""

from __future__ import annotations

import math

import torch
from torch import nn

from detkit.config import SolverConfig
from detkit.errors import ConfigError


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.Optimizer:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Weight decay on norm scales and biases only shrinks them toward zero for no benefit.
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"solver.optimizer {cfg.optimizer!r} is not one of sgd, adamw")


def lr_factor(iteration: int, cfg: SolverConfig, iters_per_epoch: int) -> float:
    """Multiplier of ``cfg.lr`` at a 0-based iteration."""
    total = max(cfg.epochs * iters_per_epoch, 1)
    warmup = min(cfg.warmup_iters, total // 2)
    warm = 1.0
    if iteration < warmup:
        alpha = iteration / warmup
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(iteration / total, 1.0)))
    if cfg.schedule == "step":
        epoch = iteration // max(iters_per_epoch, 1)
        return warm * cfg.gamma ** sum(epoch >= boundary for boundary in cfg.step_epochs)
    raise ConfigError(f"solver.schedule {cfg.schedule!r} is not one of cosine, step")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SolverConfig, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, cfg, iters_per_epoch)  # validates the schedule name before training starts
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg, iters_per_epoch))
