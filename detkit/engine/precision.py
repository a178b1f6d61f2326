"""Training precision and memory format: autocast to bf16/fp16, fp16's gradient scaler, channels_last.

bf16 keeps float32's exponent range, so its gradients need no scaling; fp16 underflows without a
``GradScaler``. channels_last (NHWC) is what cuDNN's tensor-core convolutions and oneDNN's fastest
CPU ones want; RoIAlign/RoIPool read NHWC feature maps as they are. Also here: the checks of the
``runtime`` and performance settings that must fail before any process starts.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from detkit.config import ExperimentConfig, SolverConfig
from detkit.engine.distributed import BACKENDS, rank_from_environment
from detkit.errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainingPrecision:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32
    channels_last: bool

    @staticmethod
    def from_config(solver: SolverConfig, device: torch.device) -> "TrainingPrecision":
        return TrainingPrecision(device, AMP_DTYPES[solver.amp_dtype] if solver.amp else None, solver.channels_last)

    def autocast(self) -> ContextManager[None]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16; a disabled (pass-through) scaler otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` (converted in place) in the memory format its convolutions will run in."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


def check_runtime(cfg: ExperimentConfig) -> None:
    """Refuse impossible performance and runtime settings before any process is started."""
    solver, runtime = cfg.solver, cfg.runtime
    if solver.amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"solver.amp_dtype={solver.amp_dtype!r}: choose bf16 or fp16")
    if solver.accumulate_steps < 1:
        raise ConfigError(f"solver.accumulate_steps={solver.accumulate_steps} must be at least 1")
    if runtime.devices < 1:
        raise ConfigError(f"--devices {runtime.devices}: must be at least 1")
    if runtime.checkpoint_every_steps < 0 or runtime.log_every_steps < 1:
        raise ConfigError("runtime.checkpoint_every_steps must be >= 0 and runtime.log_every_steps >= 1")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"--workers {cfg.data.num_workers}: must be 0 or more")
    uses_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    data_parallel = runtime.devices > 1 or rank_from_environment() is not None
    if runtime.sync_bn and data_parallel and not uses_cuda:
        raise ConfigError("--sync-bn needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); drop it on CPU")
    if runtime.backend not in BACKENDS:
        raise ConfigError(f"runtime.backend={runtime.backend!r}: choose one of {', '.join(BACKENDS)}")
    if runtime.backend == "nccl" and not uses_cuda:
        raise ConfigError("runtime.backend=nccl needs CUDA devices; use gloo (the default on CPU)")
    if runtime.devices > 1 and uses_cuda and runtime.devices > torch.cuda.device_count():
        raise ConfigError(f"--devices {runtime.devices}: this machine has {torch.cuda.device_count()} CUDA device(s)")
