"""Run directories under ``output_dir`` and the pointer to the latest trained checkpoint.

``runs/latest.json`` names the best checkpoint of the last finished ``detkit train``; ``detkit
detect`` and ``detkit eval`` use it when no ``--weights`` is given.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from detkit.errors import CheckpointError, ConfigError, quoted
from detkit.io import atomic_write_json, read_regular_bytes

if TYPE_CHECKING:
    from detkit.config import ExperimentConfig

LATEST = "latest.json"
CONFIG = "config.json"
# What a run's config.json may not decide on --resume: the run folder is where it is found, and the
# proposal cache is the default one unless --set places it.
RUN_LOCATIONS = ("output_dir", "name", "model.proposals.cache_dir")


@dataclass
class TrainResult:
    """Where a finished training run is, its checkpoints, its best validation numbers and how long it took."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]  # the best validation epoch's COCO numbers
    seconds: float


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """``output_dir/name``, or ``name-2``, ``name-3``... when taken; created empty. ``name`` must be one
    path component (the config refuses others; checked again here, where the folder is made)."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"run name {quoted(name)} must be a single folder name (no '/', '\\', '..'); pass another --name"
        )
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    candidate, index = root / name, 1
    while candidate.exists():
        index += 1
        candidate = root / f"{name}-{index}"
    candidate.mkdir()
    return candidate


@contextmanager
def removed_on_failure(run_dir: Path, *, fresh: bool, owner: bool) -> Iterator[None]:
    """Delete a new run directory when training fails before it holds any checkpoint (``*.pt``): a
    config and a few log lines are nothing to resume or use, only a folder to clean up. Resumed runs
    and runs that saved a checkpoint are kept. ``owner``: this process created it (rank 0)."""
    try:
        yield
    except BaseException:
        if fresh and owner and not any(run_dir.rglob("*.pt")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def record_latest(output_dir: str | Path, checkpoint: Path) -> None:
    atomic_write_json(Path(output_dir) / LATEST, {"checkpoint": str(checkpoint.resolve())}, indent=2)


def latest_checkpoint(output_dir: str | Path = "runs") -> Path:
    pointer = Path(output_dir) / LATEST
    if not os.path.lexists(pointer):
        raise CheckpointError(f"{pointer}: no trained model yet; run `detkit train` first or pass --weights CHECKPOINT")
    try:
        target = json.loads(read_regular_bytes(pointer, max_bytes=1 << 16))["checkpoint"]
        if not isinstance(target, str) or not target or "\0" in target:
            raise TypeError(target)
        checkpoint = Path(target)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise CheckpointError(f"{pointer}: damaged pointer file; delete it and pass --weights CHECKPOINT") from None
    if not checkpoint.is_file():
        raise CheckpointError(
            f"{pointer}: points to {checkpoint}, which no longer exists; pass --weights CHECKPOINT or re-train"
        )
    return checkpoint


def run_config(resume_from: str | Path) -> ExperimentConfig:
    """The resolved ``ExperimentConfig`` a run was started with (``<run>/config.json``), placed where the
    run is: its output folder and name are the run directory's own, whatever the file says, and the
    proposal cache is the default one (``--set`` places it again). A run directory can come from
    anyone; the files it holds must not choose where detkit writes."""
    from dataclasses import replace

    from detkit.config import ExperimentConfig
    from detkit.config.legacy import upgrade
    from detkit.config.overrides import config_from_dict, without_keys
    from detkit.errors import ConfigError
    from detkit.io import read_json

    source = Path(resume_from)
    run_dir = source if source.is_dir() else source.parent
    values = read_json(
        run_dir / CONFIG, what="run config", missing_fix="pass a run directory written by `detkit train`"
    )
    try:  # the file's placement fields are not even parsed: they are the run folder's own
        cfg: ExperimentConfig = config_from_dict(ExperimentConfig, without_keys(upgrade(values), RUN_LOCATIONS))
    except ConfigError as error:
        raise ConfigError(f"{run_dir / CONFIG}: {error}; was the run made by another detkit version?") from None
    return replace(cfg, output_dir=str(run_dir.parent), name=run_dir.name)
