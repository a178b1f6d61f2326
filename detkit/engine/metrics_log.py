"""A run's ``metrics.jsonl``: one JSON record per line, appended as training goes.

A run killed mid-append leaves a partial last line; a disk that filled up can leave worse. Readers
skip lines that are not a JSON object instead of failing (the curves of an interrupted run must
still draw, and ``--resume`` must still resume), and ``truncate_log`` rewrites the file without them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detkit.io import atomic_write_text, read_regular_bytes

METRICS_LOG = "metrics.jsonl"


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's records, in order; unreadable lines are skipped (see the module docstring)."""
    return [record for record in map(_record, _lines(path)) if record is not None]


def truncate_log(path: Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the log with only the records ``keep`` accepts (and no unreadable line); returns how
    many unreadable lines were dropped."""
    lines = _lines(path)
    records = [_record(line) for line in lines]
    kept = [line for line, record in zip(lines, records) if record is not None and keep(record)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return sum(record is None for record in records)


def logged_before(record: dict[str, Any], step: int, epoch: int) -> bool:
    """Whether a record was written before a checkpoint taken after ``step`` optimizer steps and
    ``epoch`` complete epochs: a resumed run drops the later ones (a run killed after its last
    checkpoint wrote them) and writes them again. A step's record carries ``iter``, an epoch's only
    ``epoch`` (written once the epoch is complete); a record whose count is not a number is not one
    detkit wrote, and is dropped too."""
    key, done = ("iter", step) if "iter" in record else ("epoch", epoch)
    value = record.get(key, 0)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value <= done


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in read_regular_bytes(path).decode("utf-8", errors="replace").splitlines() if line.strip()]


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
