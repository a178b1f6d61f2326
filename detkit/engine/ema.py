"""Exponential moving average of a model's weights (Polyak averaging; YOLOv5/YOLOX train with it).

The average of the weights along the last few thousand steps generalises better than the last
step's weights (~+1 AP late in training, far more early on, when single steps are noisy), so it is
what gets evaluated and saved. The decay ramps up, ``decay * (1 - exp(-updates / ramp_steps))``,
so the first updates are not averaged with the random initialisation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float, ramp_steps: int = 2000, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.ramp_steps = max(ramp_steps, 1)
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``: floating parameters and buffers (BatchNorm statistics
        too) by the current decay; integer buffers (BatchNorm's step count) are copied."""
        self.updates += 1
        decay = self.current_decay()
        averaged = list(self.module.state_dict().values())
        current = list(model.state_dict().values())
        floating = [(a, c) for a, c in zip(averaged, current) if a.dtype.is_floating_point]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c.detach() for _, c in floating], 1.0 - decay)
        for a, c in zip(averaged, current):
            if not a.dtype.is_floating_point:
                a.copy_(c)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
