"""What every R-CNN training stage works with (``StageContext``), the log that says which stages are
current (``StageLog``, ``stages.json``), and the keys the stages are recorded under.

A key is a digest of everything a stage's output was made from; a stage whose logged key matches and
whose output exists is skipped. The digests below are part of the on-disk format: changing how one
is computed makes every existing run's stages stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from detkit.config import ExperimentConfig, RCNNConfig
from detkit.data.coco import CocoDetection
from detkit.engine.distributed import Rank
from detkit.engine.events import EventCallback
from detkit.io import atomic_write_text, read_regular_bytes
from detkit.pipelines.rcnn.model import RCNNDetector

STAGES_FILE = "stages.json"


class StageLog:
    """``stages.json``: per stage its key, wall seconds and numbers; what decides whether a stage is current."""

    def __init__(self, path: Path, writable: bool = True) -> None:
        self.path, self.writable = path, writable  # data-parallel, only rank 0 writes it
        self.entries: dict[str, Any] = json.loads(read_regular_bytes(path)) if path.is_file() else {}

    def is_current(self, stage: str, key: str, output: Path) -> bool:
        return bool(self.entries.get(stage, {}).get("key") == key and output.exists())

    def record(self, stage: str, key: str, seconds: float, info: dict[str, Any]) -> None:
        self.entries[stage] = {"key": key, "seconds": round(seconds, 3), **info}
        if self.writable:
            atomic_write_text(self.path, json.dumps(self.entries, indent=2))


@dataclass
class StageContext:
    """One process's run: the resolved config (``model.num_classes`` from the data), the detector the
    stages fill, the datasets, the run directory and its stage log, where and as which rank this
    process computes, and where progress goes."""

    cfg: ExperimentConfig
    model: RCNNDetector
    train_set: CocoDetection
    val_set: CocoDetection
    run_dir: Path
    log: StageLog
    device: torch.device
    rank: Rank
    on_event: EventCallback

    @property
    def rcnn(self) -> RCNNConfig:
        return self.cfg.model.rcnn


# --- keys ---------------------------------------------------------------------------------------


def settings(rcnn: RCNNConfig, *prefixes: str) -> dict[str, Any]:
    """The RCNNConfig fields a stage depends on (named, or starting with a prefix): only they key it."""
    return {name: value for name, value in asdict(rcnn).items() if any(name.startswith(p) for p in prefixes)}


def digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.blake2b(read_regular_bytes(path), digest_size=16).hexdigest()


def images_digest(dataset: CocoDetection) -> str:
    """Names, sizes and modification times of the image files: an image replaced in place changes the key."""
    stats = []
    for index in range(len(dataset)):
        path = dataset.image_path(index)
        stat = path.stat()
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return digest(stats)


def state_digest(module: torch.nn.Module) -> str:
    """Hash of a module's weights and buffers: features from other weights get another key."""
    hashed = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        hashed.update(name.encode())
        hashed.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hashed.hexdigest()
