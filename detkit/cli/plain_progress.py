"""Progress as plain lines, for output that is not a terminal (nohup, CI, a cluster scheduler's log).

rich draws no live bar there, so a long stage would print nothing between its start and its end.
``PlainProgressLog`` prints one line per stage every ``interval_s`` seconds instead::

    epoch 3/20: 120/400 (30%)  loss 0.912 cls 0.301 box 0.255 lr 2.00e-02  7.36 img/s  eta 2m32s

and a closing line for a stage that lasted longer than one interval. A stage shorter than that stays
silent, so quick commands print what they always did. ``DETKIT_LOG_INTERVAL`` (seconds, default 30)
sets the interval; 0 prints every step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from detkit.cli.console import printable

INTERVAL_ENV = "DETKIT_LOG_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


@dataclass
class _Stage:
    description: str
    total: int
    started: float
    last_line: float
    completed: int = 0
    images: int = 0


class PlainProgressLog:
    """Stage events -> a plain line every ``interval_s`` seconds per stage (see the module docstring)."""

    def __init__(
        self, console: Console, interval_s: float | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.console, self.clock = console, clock
        self.interval_s = log_interval_s() if interval_s is None else interval_s
        self.stages: dict[str, _Stage] = {}

    def started(self, stage: str, description: str, total: int) -> None:
        now = self.clock()
        self.stages[stage] = _Stage(printable(description or stage), total, now, now)

    def advanced(self, stage: str, completed: int, info: str, images: int = 0) -> None:
        """``images``: how many images the stage's ``completed`` steps held, where a step is a batch."""
        state = self.stages.get(stage)
        if state is None:
            return
        state.completed, state.images = completed, images
        now = self.clock()
        if now - state.last_line >= self.interval_s:
            state.last_line = now
            self._print(state, now, info)

    def finished(self, stage: str) -> None:
        state = self.stages.pop(stage, None)
        if state is not None and self.clock() - state.started >= max(self.interval_s, 1e-9):
            elapsed = self.clock() - state.started
            self.console.print(Text(f"{state.description}: done, {state.completed} in {_duration(elapsed)}"))

    def _print(self, state: _Stage, now: float, info: str) -> None:
        elapsed = max(now - state.started, 1e-9)
        rate = state.completed / elapsed
        parts = [f"{state.description}: {state.completed}/{state.total}"]
        if state.total > 0:
            parts[0] += f" ({100 * state.completed / state.total:.0f}%)"
        if info:
            parts.append(info)
        parts.append(f"{significant(state.images / elapsed)} img/s" if state.images else f"{significant(rate)} it/s")
        if state.total > state.completed and rate > 0:
            parts.append(f"eta {_duration((state.total - state.completed) / rate)}")
        self.console.print(Text("  ".join(parts)))


def log_interval_s() -> float:
    """``$DETKIT_LOG_INTERVAL`` seconds (default 30); a value that is not a number >= 0 is an error."""
    from detkit.errors import ConfigError

    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{INTERVAL_ENV}={text!r}: give the seconds between progress lines, a number >= 0")
    return value


def significant(value: float) -> str:
    """Three significant digits, never rounded to zero: 0.00412, 0.213, 1.84, 21.3, 213, 2134."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
