"""Peak memory of a stretch of work: the process's resident set (RSS) and, on CUDA, the allocator's peak.

Linux lets a process reset its RSS high-water mark (``/proc/self/clear_refs``, value 5), so each
pipeline's peak is its own even in one process. Elsewhere (macOS) only the lifetime peak exists
(``getrusage``); the report's environment says which (``rss_peak``). The RSS peak includes what the process held before
(Python, torch, the other models still alive): it is what the machine had to provide.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """``start()`` resets the peaks; ``rss_mib()`` and ``cuda_mib()`` read them since then."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        reset_rss_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def rss_mib(self) -> float:
        high_water_kib = _status_kib("VmHWM")
        if high_water_kib is not None:
            return high_water_kib / 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024

    def cuda_mib(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20


def reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark; False where the system cannot (the peak is then the
    process's lifetime peak: ``environment()`` records which)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def current_rss_mib() -> float | None:
    resident = _status_kib("VmRSS")
    return None if resident is None else resident / 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None
