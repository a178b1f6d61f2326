"""Exported files against the checkpoint they came from: the same images, calls alternated.

The benchmark's rows are measured one after another (each in a fresh process by default), so their
times carry whatever the machine was doing at the time. A runtime ratio must not: here the eager model
and every exported file of the same detector run image by image in turn (eager, file 1, file 2,
eager, ...), each image one call (an exported graph takes one image), and each model's time is the
median over passes of its ms per image. An exported file belongs to the first checkpoint row of the
same pipeline and class names (a file's metadata holds the checkpoint's config, not its path).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detkit.engine.benchmark.models import BenchmarkModel
from detkit.engine.benchmark.timing import time_call
from detkit.engine.precision import Precision


@dataclass
class RuntimeComparison:
    """One checkpoint and its exported files: ms per image of each pass, per model (eager first)."""

    pipeline: str
    weights: list[str]  # the checkpoint's path, then each file's
    runtimes: list[str]  # "eager", then each file's runtime
    pass_ms_per_image: list[list[float]]  # [model][pass]

    def median_ms(self, index: int) -> float:
        return statistics.median(self.pass_ms_per_image[index])

    def ratio(self, index: int) -> float:
        """Model ``index``'s median ms per image over the eager model's (below 1.0: faster than eager)."""
        return self.median_ms(index) / self.median_ms(0)

    def to_dict(self) -> dict[str, object]:
        return {
            "pipeline": self.pipeline,
            "models": [
                {"weights": w, "runtime": r, "median_ms_per_image": self.median_ms(i), "ratio_to_eager": self.ratio(i)}
                for i, (w, r) in enumerate(zip(self.weights, self.runtimes))
            ],
            "pass_ms_per_image": self.pass_ms_per_image,
        }


def exported_groups(entries: list[BenchmarkModel]) -> list[tuple[BenchmarkModel, list[BenchmarkModel]]]:
    """(checkpoint row, its exported files) for every checkpoint row that has any, in row order."""
    checkpoints = [e for e in entries if e.runtime == "eager" and e.checkpoint is not None]
    groups: dict[int, list[BenchmarkModel]] = {}
    for entry in (e for e in entries if e.runtime != "eager"):
        owner = next((i for i, c in enumerate(checkpoints) if _same_detector(c, entry)), None)
        if owner is not None:
            groups.setdefault(owner, []).append(entry)
    return [(checkpoints[i], files) for i, files in sorted(groups.items())]


def _same_detector(checkpoint: BenchmarkModel, exported: BenchmarkModel) -> bool:
    assert checkpoint.checkpoint is not None and exported.checkpoint is not None
    return (
        checkpoint.pipeline == exported.pipeline
        and checkpoint.checkpoint.class_names == exported.checkpoint.class_names
    )


def compare_runtimes(
    eager: BenchmarkModel,
    files: list[BenchmarkModel],
    images: list[Tensor],
    *,
    runs: int,
    warmup: int,
    device: torch.device,
    precision: Precision,
) -> RuntimeComparison:
    """Time ``eager`` (under ``precision`` on ``device``) and ``files`` on ``images`` (CPU ``[3, H, W]``
    float in [0, 1]), alternating image by image; ``warmup`` untimed passes first."""
    model = precision.prepare(eager.model.to(device).eval())
    models: list[nn.Module] = [model, *(f.model.eval() for f in files)]
    inputs = [image.to(device) for image in images]
    calls = [_calls(model, inputs, lambda: precision.autocast(device))]
    calls += [_calls(m, inputs, nullcontext) for m in models[1:]]  # a runtime runs in its own precision
    passes: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for number in range(warmup + runs):
            totals = [0.0] * len(models)
            for index in range(len(inputs)):
                for which, model_calls in enumerate(calls):
                    totals[which] += time_call(model_calls[index], device)
            if number >= warmup:
                for which, total in enumerate(totals):
                    passes[which].append(total / len(inputs))
    return RuntimeComparison(
        pipeline=eager.pipeline,
        weights=[eager.weights, *(f.weights for f in files)],
        runtimes=["eager", *(f.runtime for f in files)],
        pass_ms_per_image=passes,
    )


def _calls(
    model: nn.Module, images: list[Tensor], context: Callable[[], AbstractContextManager[None]]
) -> list[Callable[[], object]]:
    """One call per image: ``model([image])`` inside ``context()``."""

    def call_on(image: Tensor) -> Callable[[], object]:
        def call() -> object:
            with context():
                return model([image])

        return call

    return [call_on(image) for image in images]
