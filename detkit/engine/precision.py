"""How training and benchmarks run the models: float32 or autocast (bf16/fp16), memory format, ``torch.compile``.

These are the switches that make GPU numbers good. ``channels_last`` (NHWC) lets cuDNN use its
tensor-core convolutions and oneDNN its fastest CPU ones; RoIAlign/RoIPool take NHWC maps as they
are. ``compile`` compiles each model's dense network (trunk and FPN/neck), the part with static
shapes; proposals, RoI sampling and NMS have data-dependent shapes and stay eager. bf16 keeps
float32's exponent range and trains without loss scaling; fp16 gets a ``GradScaler``.

Also here: the checks of the ``runtime`` and performance settings that must fail before any
training process starts.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from detkit.config import ExperimentConfig, SolverConfig
from detkit.config.overrides import check_config
from detkit.engine.distributed import BACKENDS, rank_from_environment
from detkit.errors import ConfigError
from detkit.pipelines import pipeline

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    amp: str | None = None  # None (float32), "bf16" or "fp16"
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ConfigError(f"--amp-dtype {self.amp!r}: choose bf16 or fp16")

    @staticmethod
    def of_solver(solver: SolverConfig) -> Precision:
        """What a training run asked for: ``solver.amp`` / ``amp_dtype`` / ``channels_last``."""
        return Precision(solver.amp_dtype if solver.amp else None, solver.channels_last)

    @property
    def name(self) -> str:
        """What the report calls it: ``fp32``, ``amp-bf16`` or ``amp-fp16``."""
        return "fp32" if self.amp is None else f"amp-{self.amp}"

    def autocast(self, device: torch.device) -> AbstractContextManager[None]:
        if self.amp is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=AMP_DTYPES[self.amp])

    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
        return self.amp == "fp16"

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """Loss scaling for fp16; a disabled (pass-through) scaler otherwise."""
        return torch.amp.GradScaler(device.type, enabled=self.needs_grad_scaler())

    def prepare(self, model: nn.Module) -> nn.Module:
        """Apply the memory format to ``model`` (in place) and return it."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def compile_dense(self, model: nn.Module, path: str) -> nn.Module:
        """With ``compile``, replace the model's dense network (the submodule at ``path``, the pipeline's
        ``PipelineSpec.dense_network``) by its compiled version, in place; return the model."""
        if self.compile:
            owner, name = dense_network(model, path)
            setattr(owner, name, torch.compile(getattr(owner, name)))
        return model


def dense_network(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """``(owner, attribute)`` of the submodule at dotted ``path`` (``"cnn.backbone"``): what ``torch.compile`` gets."""
    *parents, name = path.split(".")
    owner = model.get_submodule(".".join(parents)) if parents else model
    return owner, name


def check_runtime(cfg: ExperimentConfig) -> None:
    """Refuse impossible settings before any process is started: every value against its constraint
    (``config.check_config``), then the performance and runtime settings against this machine."""
    check_config(cfg)
    pipeline(cfg.model.pipeline)  # a name the pipeline table knows (the config is below the table)
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
