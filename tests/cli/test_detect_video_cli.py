"""``detkit detect`` on videos, a mixed folder and a camera, as a user runs it (CliRunner).

The model is a tiny Faster R-CNN with random weights, saved as a checkpoint: nothing is trained
(``--score-thresh 0`` keeps its detections, so every frame has some to draw and record).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import detkit.engine.detect_request as detect_request
from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.cli.main import app
from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, TransformConfig
from detkit.config.overrides import apply_overrides
from detkit.data.synthetic import render_image
from detkit.data.video import open_video
from detkit.pipelines import PIPELINES
from tests.engine.test_detect_video import HEIGHT, NUM_FRAMES, WIDTH, frame_count, truncate, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    cfg = ExperimentConfig(
        model=ModelConfig(
            num_classes=2,
            backbone=BackboneConfig(name="resnet18", fpn_channels=16, pretrained=False),
            transform=TransformConfig(min_size=(64,), max_size=64),
        )
    )
    small = ("rpn.pre_nms_topk_test=50", "rpn.post_nms_topk_test=10", "roi_heads.representation_size=32")
    cfg = apply_overrides(cfg, [f"model.{setting}" for setting in small])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    model = PIPELINES["faster_rcnn"].build(cfg.model)
    save_checkpoint(path, Checkpoint(cfg, model.state_dict(), ["cat", "dog"], [3, 7]))
    return path


def detect(weights: Path, *args: str):
    # Batches of 4: the first forward pass of each new batch shape is the slow one on a CPU.
    options = ["--weights", str(weights), "--score-thresh", "0", "--device", "cpu", "--batch-size", "4"]
    return runner.invoke(app, ["detect", *args, *options])


def text(output: str) -> str:
    """The output as one line: rich wraps long lines at the terminal width."""
    return " ".join(output.split())


def squeezed(output: str) -> str:
    """The output without any whitespace: what survives rich's wrapping wherever it breaks a line."""
    return "".join(output.split())


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_video_in_gives_an_annotated_video_and_a_line_per_frame(weights, tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4")
    out = tmp_path / "out"
    result = detect(weights, str(clip), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temporary file left
    annotated = cv2.VideoCapture(str(out / "clip.mp4"))
    assert (annotated.get(cv2.CAP_PROP_FRAME_WIDTH), annotated.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (WIDTH, HEIGHT)
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0) and frame_count(out / "clip.mp4") == NUM_FRAMES
    lines = lines_of(out / "clip.jsonl")
    assert [line["frame"] for line in lines] == list(range(NUM_FRAMES))
    detection = lines[0]["detections"][0]
    assert {"box", "bbox", "score", "label", "category", "category_id"} <= detection.keys()
    assert detection["category"] == ["cat", "dog"][detection["label"]]
    assert f"{NUM_FRAMES} frames in" in text(result.output) and "frames/s" in text(result.output)


def test_stride_keeps_every_nth_frame_at_fps_over_n(weights, tmp_path):
    clip = write_video(tmp_path / "clip.mkv")
    out = tmp_path / "out"
    result = detect(weights, str(clip), "--out", str(out), "--stride", "3")
    assert result.exit_code == 0, result.output
    assert [line["frame"] for line in lines_of(out / "clip.jsonl")] == [0, 3, 6, 9]
    assert frame_count(out / "clip.mp4") == 4
    assert cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(10.0 / 3, rel=1e-3)
    assert "every 3rd of 12" in text(result.output)


def test_a_mixed_folder_gives_images_as_before_and_each_video(weights, tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), cv2.cvtColor(render_image(rng, HEIGHT, WIDTH)[0], cv2.COLOR_RGB2BGR))
    write_video(folder / "c.avi", fourcc="MJPG")
    out = tmp_path / "out"
    result = detect(weights, str(folder), "--out", str(out), "--quiet", "--stride", "4")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.png", "b.jpg", "c.jsonl", "c.mp4", "detections.json", "detections.jsonl"]
    assert [line["file_name"] for line in lines_of(out / "detections.jsonl")] == [
        str(folder / "a.png"),
        str(folder / "b.jpg"),
    ]
    assert {r["image_id"] for r in json.loads((out / "detections.json").read_text())} <= {1, 2}
    assert len(lines_of(out / "c.jsonl")) == 3 and frame_count(out / "c.mp4") == 3


@pytest.mark.parametrize("make", ["garbage", "cut-mp4"])
def test_an_unreadable_video_is_one_line_and_leaves_nothing(weights, tmp_path, make):
    clip = tmp_path / "in" / "clip.mp4"
    if make == "garbage":
        clip.parent.mkdir()
        clip.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    else:
        truncate(write_video(clip))
    out = tmp_path / "out"
    result = detect(weights, str(clip), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 1, result.output
    assert f"{clip}: not a readable video" in text(result.output) and "Traceback" not in result.output
    assert not out.exists()


def test_a_truncated_video_keeps_its_frames_and_warns(weights, tmp_path):
    clip = truncate(write_video(tmp_path / "in" / "clip.avi", fourcc="MJPG"))
    out = tmp_path / "out"
    result = detect(weights, str(clip), "--out", str(out))
    assert result.exit_code == 0, result.output
    said = squeezed(result.output)  # rich may break the long path anywhere, even inside a name
    assert "warning:" in said and squeezed(f"{clip}: the video ended early, at frame") in said
    assert squeezed(f"of the {NUM_FRAMES}") in said
    done = len(lines_of(out / "clip.jsonl"))
    assert 0 < done < NUM_FRAMES and frame_count(out / "clip.mp4") == done


def test_no_camera_is_one_line_naming_the_index(weights, tmp_path):
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera at index 0")
    result = detect(weights, "--source", "0", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 1, result.output
    assert "camera 0: no camera could be opened at index 0" in text(result.output)
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_a_camera_and_keeps_what_was_written(weights, tmp_path, monkeypatch):
    clip = write_video(tmp_path / "in" / "clip.mp4")

    def camera_stopped_after_5_frames(index: int):
        source = open_video(clip)
        source.camera = True
        frames = source.frames

        def until_ctrl_c(stride: int = 1):
            for count, frame in enumerate(frames(stride)):
                if count == 5:
                    raise KeyboardInterrupt
                yield frame

        source.frames = until_ctrl_c  # type: ignore[method-assign]
        return source

    monkeypatch.setattr(detect_request, "open_camera", camera_stopped_after_5_frames)
    out = tmp_path / "out"
    result = detect(weights, "--source", "0", "--out", str(out))
    assert result.exit_code == 0, result.output  # Ctrl-C is how a camera ends
    assert sorted(p.name for p in out.iterdir()) == ["camera0.jsonl", "camera0.mp4"]
    # The first batch of 4 was done; the one being gathered when Ctrl-C came is dropped.
    assert len(lines_of(out / "camera0.jsonl")) == 4 and frame_count(out / "camera0.mp4") == 4
    assert "4 frames in" in text(result.output) and "stopped by Ctrl-C" in text(result.output)


def test_nothing_to_detect_in_is_one_line(weights):
    result = runner.invoke(app, ["detect", "--weights", str(weights)])
    assert result.exit_code == 3 and "nothing to detect in" in result.output
