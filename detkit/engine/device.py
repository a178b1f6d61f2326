"""Device selection, CPU threads, seeding and deterministic kernels."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from detkit.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_cpu_threads() -> int:
    """CPU threads when ``--threads`` is not given: ``OMP_NUM_THREADS`` when set, else one core fewer than
    this process may use, at least 1 (Ultralytics sizes its worker pools so, and sets OMP_NUM_THREADS=1
    unless given).

    One core is left for whatever else runs: the image reading and drawing of ``detect``, the data
    loaders of ``train``, other users' jobs. torch's intra-op pool waits at the end of every parallel op
    for its slowest thread, and a thread whose core is taken waits a whole scheduler slice: measured on
    the 2-core development machine while other jobs ran on it (load average 4.6 to 9), one 640 px
    forward pass with 2 threads took 4 to 9 times as long as with 1 (YOLO, MobileNetV2: 421 ms with 1
    thread, 1882 ms with 2; Faster R-CNN MobileNetV2-FPN: 700 vs 2879 ms; folded, channels-last, calls
    alternated, medians of 7); a whole ``detkit detect`` of 8 coco128 photos took 15 s with 1 thread
    and 35-36 s with 2 for both (medians of 3 alternated runs). On an idle machine the second thread
    can at best halve the time (not measured: the machine was never idle); losing up to that is the
    price of never losing 2-9x on a shared one, and on 16 cores the spare core costs about 6%.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()  # torch has read it already
    return max(1, available_cores() - 1)


def use_cpu_threads(threads: int | None = None) -> int:
    """Run this process's torch (intra-op) and OpenCV code on ``threads`` threads (None: the default);
    returns the count. Processes this one starts choose their own (DataLoader workers take 1)."""
    import cv2  # only here: a command that never computes should not pay for importing OpenCV

    count = default_cpu_threads() if threads is None else threads
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    return count


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a run (the previous settings come back afterwards).

    On the CPU this makes a run bit-exact for a fixed thread count. On CUDA, torchvision's RoIAlign and
    RoIPool backward passes add with atomics and have no deterministic version: torch warns about
    them (``warn_only``) instead of refusing to train.
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's reproducible workspace
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
