"""Exported files shared by the export tests: each pipeline exported once per format, through the CLI.

ONNX export takes seconds per graph (torch.export traces it symbolically), so every test reads the same
files. faster_rcnn, mask_rcnn and yolo are exported ``--dynamic``; fast_rcnn at its one fixed size, so
both kinds of ONNX file are covered. TorchScript files always take any size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.data.synthetic import render_image
from tests.cli.helpers import invoke
from tests.export.models import CONFIGS, save_tiny_checkpoint

EXPORTABLE = ("faster_rcnn", "mask_rcnn", "fast_rcnn", "yolo")
FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
# Above the best score of a blank grey image and below that of the scenes (measured on these seeded
# models): an exported graph meets both an image with detections and one with none.
SCORE_THRESH = {"faster_rcnn": 0.6, "mask_rcnn": 0.6, "fast_rcnn": 0.45, "yolo": 0.35}


@dataclass(frozen=True)
class Exported:
    pipeline: str
    format: str
    weights: Path  # the checkpoint it came from
    path: Path
    output: str  # what `detkit export` printed


def tiny_checkpoint(path: Path, pipeline: str) -> Path:
    """The seeded random ``pipeline`` model at its test score threshold."""
    cfg = CONFIGS[pipeline]
    if pipeline == "yolo":
        return save_tiny_checkpoint(path, pipeline, yolo=replace(cfg.yolo, score_thresh=SCORE_THRESH[pipeline]))
    return save_tiny_checkpoint(path, pipeline, roi_heads=replace(cfg.roi_heads, score_thresh=SCORE_THRESH[pipeline]))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("export_checkpoints")
    made: dict[str, Path] = {}

    def get(pipeline: str) -> Path:
        if pipeline not in made:
            made[pipeline] = tiny_checkpoint(folder / f"{pipeline}.pt", pipeline)
        return made[pipeline]

    return get


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoints):
    """``exported(pipeline, format)``: the file ``detkit export`` wrote (made on first use)."""
    made: dict[tuple[str, str], Exported] = {}

    def get(pipeline: str, fmt: str) -> Exported:
        if (pipeline, fmt) not in made:
            folder = tmp_path_factory.mktemp(f"{pipeline}_{fmt}")
            out = folder / f"{pipeline}{SUFFIX[fmt]}"
            dynamic = ["--dynamic"] if pipeline != "fast_rcnn" else []
            args = ("export", str(checkpoints(pipeline)), "--format", fmt, "--out", str(out), "--check-count", "1")
            result = invoke(*args, *dynamic)
            assert result.exit_code == 0, result.output
            made[pipeline, fmt] = Exported(pipeline, fmt, checkpoints(pipeline), out, result.output)
        return made[pipeline, fmt]

    return get


def scenes(size: tuple[int, int], count: int, seed: int = 5) -> list[torch.Tensor]:
    """Synthetic ``float [3, H, W]`` scenes in [0, 1], other than the ones the export checked."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(render_image(rng, *size)[0]).permute(2, 0, 1).float() / 255 for _ in range(count)]


def blank(size: tuple[int, int]) -> torch.Tensor:
    """A uniform grey image: the test models detect nothing in it."""
    return torch.full((3, *size), 128 / 255)
