"""Wall-clock timing of model calls: warm-up first, then timed calls with the GPU drained on both sides.

A call is timed from a synchronized start to a synchronized end, so CUDA kernels queued by the call
are inside its time and nothing queued before it is. Nothing inside the call synchronizes: the
models' stage markers are free unless a stage recorder is active, and ``stage_breakdown`` records
stages in separate calls, so the end-to-end latencies are not slowed by the breakdown's syncs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from detkit.modeling.stages import record_stages, stage


@dataclass
class Latency:
    """Milliseconds per call, in call order, over whole passes through the inputs, and the images
    each call processed. Images differ in cost (R-CNN's region count follows the content), so per-image
    time is the mean over the passes; p50/p90 describe the spread of single calls."""

    ms: list[float]
    images_per_call: int

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p90(self) -> float:
        return _percentile(self.ms, 0.9)

    @property
    def ms_per_image(self) -> float:
        return sum(self.ms) / (len(self.ms) * self.images_per_call)

    @property
    def images_per_second(self) -> float:
        return 1000 / self.ms_per_image


def time_call(call: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one ``call()``, GPU work included."""
    _synchronize(device)
    start = time.perf_counter()
    call()
    _synchronize(device)
    return (time.perf_counter() - start) * 1000


def warm_up(calls: Sequence[Callable[[], object]], passes: int) -> None:
    """Untimed passes: allocator pools, oneDNN/cuDNN kernel choices and compiled graphs are made here,
    for every input shape (R-CNN's last region chunk has a new shape on each image)."""
    for _ in range(passes):
        for call in calls:
            call()


def time_repeatedly(
    calls: Sequence[Callable[[], object]], device: torch.device, runs: int, max_seconds: float
) -> list[float]:
    """Milliseconds of each call of up to ``runs`` passes over ``calls``.

    Passes stop early once ``max_seconds`` of timed calls have passed, but only at the end of a pass
    and after at least one: every input is timed equally often, so a mean over the calls is a mean
    over the inputs. A 20-second R-CNN image gets one pass, a 50 ms YOLO image all it asks for.
    """
    times: list[float] = []
    for _ in range(runs):
        times.extend(time_call(call, device) for call in calls)
        if sum(times) > 1000 * max_seconds:
            break
    return times


def stage_breakdown(calls: Sequence[Callable[[], object]], device: torch.device, num_images: int) -> dict[str, float]:
    """Milliseconds per image in each stage over one pass of ``calls`` (``num_images`` images in all).

    Time inside a call that no model stage claims is reported as ``other``.
    """
    with record_stages(device) as recorder:
        for call in calls:
            with stage("other"):
                call()
    return {name: 1000 * seconds / num_images for name, seconds in recorder.seconds.items()}


@torch.inference_mode()
def time_models(
    models: dict[str, nn.Module], images: list[torch.Tensor], runs: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds of each model's forward pass over ``images`` (one batch), ``runs`` times each.

    The models take turns (a, b, a, b, ...) so drift in machine load hits them equally.
    """
    calls = {name: _forward_call(model, images) for name, model in models.items()}
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, call in calls.items():
            times[name].append(time_call(call, device))
    return times


def _forward_call(model: nn.Module, images: list[torch.Tensor]) -> Callable[[], object]:
    return lambda: model(images)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of a non-empty list."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
