"""How a benchmark runs the models: float32 or autocast (bf16/fp16), memory format, ``torch.compile``.

These are the switches that make GPU numbers good. ``channels_last`` (NHWC) lets cuDNN use its
tensor-core convolutions and oneDNN its fastest CPU ones; RoIAlign/RoIPool take NHWC maps as they
are. ``compile`` compiles each model's dense network (trunk and FPN/neck), the part with static
shapes; proposals, RoI sampling and NMS have data-dependent shapes and stay eager.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from detkit.engine.precision import AMP_DTYPES
from detkit.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    amp: str | None = None  # None (float32), "bf16" or "fp16"
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ConfigError(f"--amp-dtype {self.amp!r}: choose bf16 or fp16")

    @property
    def name(self) -> str:
        """What the report calls it: ``fp32``, ``amp-bf16`` or ``amp-fp16``."""
        return "fp32" if self.amp is None else f"amp-{self.amp}"

    def autocast(self, device: torch.device) -> ContextManager[None]:
        if self.amp is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=AMP_DTYPES[self.amp])

    def needs_grad_scaler(self, device: torch.device) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
        return self.amp == "fp16" and device.type == "cuda"

    def prepare(self, model: nn.Module) -> nn.Module:
        """Apply the memory format to ``model`` (in place) and return it."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def compile_dense(self, model: nn.Module) -> nn.Module:
        """With ``compile``, replace the model's trunk by its compiled version (in place); return the model."""
        if self.compile:
            owner, name = dense_network(model)
            setattr(owner, name, torch.compile(getattr(owner, name)))
        return model


def dense_network(model: nn.Module) -> tuple[nn.Module, str]:
    """``(owner, attribute)`` of a detector's convolutional trunk: what ``torch.compile`` gets."""
    for path in ("backbone", "trunk", "cnn.backbone"):
        *parents, name = path.split(".")
        owner = model
        for parent in parents:
            owner = getattr(owner, parent, None)
        if isinstance(getattr(owner, name, None), nn.Module):
            return owner, name
    raise ConfigError(f"--compile: {type(model).__name__} has no backbone or trunk module to compile")
