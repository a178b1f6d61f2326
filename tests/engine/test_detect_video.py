"""Video in detect: frames read (stride, truncation, bad files), recorded (jsonl + atomic video), batched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detkit.data.image_files import find_inputs
from detkit.data.synthetic import render_image
from detkit.data.video import VideoError, VideoFileWriter, open_camera, open_video, probe_video
from detkit.engine.detect_outputs import DetectionWriter, output_names
from detkit.engine.detect_video import detect_video
from detkit.structures import Detections, DetectorOutput

HEIGHT, WIDTH, NUM_FRAMES, FPS = 48, 64, 12, 10.0


def write_video(path: Path, num_frames: int = NUM_FRAMES, fourcc: str = "mp4v", fps: float = FPS) -> Path:
    """A short video of synthetic scenes (``detkit.data.synthetic``), 64 x 48, each frame its own scene."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), path
    rng = np.random.default_rng(0)
    for _ in range(num_frames):
        image, _ = render_image(rng, HEIGHT, WIDTH)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


class BoxPerFrame(torch.nn.Module):
    """A stand-in detector: one box per image, its score the image's mean (so frames tell apart); counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, images: list[torch.Tensor]) -> DetectorOutput:
        self.batch_sizes.append(len(images))
        detections = [
            Detections(torch.tensor([[2.0, 3.0, 20.0, 30.0]]), image.mean().reshape(1), torch.tensor([1]))
            for image in images
        ]
        return DetectorOutput(losses={}, detections=detections)


def test_frames_and_stride_give_source_indices_and_times(tmp_path):
    clip = write_video(tmp_path / "clip.mp4")
    with open_video(clip) as source:
        assert (source.info.height, source.info.width, source.info.num_frames) == (HEIGHT, WIDTH, NUM_FRAMES)
        assert source.info.fps == pytest.approx(FPS)
        frames = list(source.frames(stride=5))
        assert [f.index for f in frames] == [0, 5, 10]
        assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0])
        assert frames[0].image.shape == (HEIGHT, WIDTH, 3) and frames[0].image.dtype == np.uint8
        assert source.frames_read == NUM_FRAMES and not source.ended_early
    with open_video(clip) as source:
        every = list(source.frames())
    # The kept frames are the source's own, not neighbours: stride only skips.
    assert [f.index for f in every] == list(range(NUM_FRAMES))
    assert np.array_equal(every[5].image, frames[1].image)


def test_a_truncated_video_yields_what_it_has_and_says_it_ended_early(tmp_path):
    clip = truncate(write_video(tmp_path / "clip.avi", fourcc="MJPG"))
    with open_video(clip) as source:
        frames = list(source.frames())
    assert 0 < len(frames) < NUM_FRAMES and source.ended_early


@pytest.mark.parametrize(
    ("name", "damage", "needle"),
    [
        ("garbage.mp4", lambda p: p.write_bytes(os.urandom(2000)), "not a readable video"),
        ("cut.mp4", lambda p: truncate(write_video(p)), "cut before its index"),  # an .mp4's index is at its end
        ("empty.mkv", lambda p: p.write_bytes(b""), "not a readable video"),
        ("folder.mp4", lambda p: p.mkdir(), "not a regular file (a folder)"),
    ],
)
def test_an_unreadable_video_is_one_error_naming_it(tmp_path, name, damage, needle):
    path = tmp_path / name
    damage(path)
    with pytest.raises(VideoError, match="replace the file") as raised:
        probe_video(path)
    assert str(raised.value).startswith(f"{path}: ") and needle in str(raised.value)


def test_no_camera_is_one_error_naming_the_index():
    with pytest.raises(VideoError, match="camera 57: no camera could be opened at index 57"):
        open_camera(57)


def test_the_video_is_published_only_when_finished(tmp_path):
    target = tmp_path / "out.mp4"
    writer = VideoFileWriter(target, FPS, (HEIGHT, WIDTH))
    writer.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    assert not target.exists() and writer.tmp.name.startswith(".out.")  # hidden while written
    writer.finish()
    assert frame_count(target) == 1 and list(tmp_path.iterdir()) == [target]
    discarded = VideoFileWriter(tmp_path / "gone.mp4", FPS, (HEIGHT, WIDTH))
    discarded.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    discarded.discard()
    assert list(tmp_path.iterdir()) == [target]


def _writer_for(clip: Path, out: Path, save: bool = True) -> DetectionWriter:
    return DetectionWriter(out, [], ["cat", "dog"], [3, 7], save_images=save, videos=[clip])


def test_frames_go_through_the_model_in_batches_and_each_is_recorded(tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4")
    writer, model = _writer_for(clip, tmp_path / "out"), BoxPerFrame()
    with open_video(clip) as source:
        recorder = writer.record_video(clip, str(clip), (HEIGHT, WIDTH), FPS / 2)
        run = detect_video(model, source, recorder, torch.device("cpu"), batch_size=4, stride=2)
    assert writer.close() is None  # no images: no detections.json
    assert model.batch_sizes == [4, 2]
    assert (run.frames_processed, run.frames_read, run.stopped, run.ended_early) == (6, NUM_FRAMES, False, False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.jsonl", "clip.mp4"]
    lines = [json.loads(line) for line in run.frames_file.read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8, 10]
    assert [line["time"] for line in lines] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    first = lines[0]
    assert (first["file_name"], first["height"], first["width"]) == (str(clip), HEIGHT, WIDTH)
    (detection,) = first["detections"]
    assert detection["box"] == [2.0, 3.0, 20.0, 30.0] and detection["bbox"] == [2.0, 3.0, 18.0, 27.0]
    assert (detection["label"], detection["category_id"], detection["category"]) == (1, 7, "dog")
    assert len({line["detections"][0]["score"] for line in lines}) == 6  # each line is its own frame's
    annotated = cv2.VideoCapture(str(run.video))
    assert annotated.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 2) and frame_count(run.video) == 6


def test_ctrl_c_on_a_file_keeps_the_frames_done_and_stops_the_run(tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4")
    writer = _writer_for(clip, tmp_path / "out")

    class StopAtThirdBatch(BoxPerFrame):
        def forward(self, images: list[torch.Tensor]) -> DetectorOutput:
            if len(self.batch_sizes) == 2:
                raise KeyboardInterrupt
            return super().forward(images)

    with open_video(clip) as source, pytest.raises(KeyboardInterrupt):
        recorder = writer.record_video(clip, str(clip), (HEIGHT, WIDTH), FPS)
        detect_video(StopAtThirdBatch(), source, recorder, torch.device("cpu"), batch_size=2)
    out = tmp_path / "out"
    assert len((out / "clip.jsonl").read_text().splitlines()) == 4 and frame_count(out / "clip.mp4") == 4
    assert not list(out.glob(".*")), "the temporary video was renamed"


def test_a_failure_leaves_no_half_written_video(tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4")
    writer = _writer_for(clip, tmp_path / "out")

    class Broken(BoxPerFrame):
        def forward(self, images: list[torch.Tensor]) -> DetectorOutput:
            raise RuntimeError("out of memory")

    with open_video(clip) as source, pytest.raises(RuntimeError):
        recorder = writer.record_video(clip, str(clip), (HEIGHT, WIDTH), FPS)
        detect_video(Broken(), source, recorder, torch.device("cpu"))
    writer.abort()
    assert not (tmp_path / "out").exists()


def test_a_video_is_refused_as_output_folder_and_names_stay_unique(tmp_path):
    clip = write_video(tmp_path / "in" / "clip.mp4")
    with pytest.raises(Exception, match="is a folder of the input images or videos"):
        _writer_for(clip, clip.parent)
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]
    _writer_for(clip, clip.parent, save=False).close()  # only clip.jsonl would go there: allowed
    images, stems = output_names([Path("a/clip.png"), Path("b/detections.png")], ["clip", "clip", "detections"])
    assert list(images.values()) == ["clip.png", "detections.png"]
    assert stems == ["clip", "clip_2", "detections_2"]  # never over detections.jsonl


def test_find_inputs_splits_a_folder_into_images_and_videos(tmp_path):
    write_video(tmp_path / "b.avi", fourcc="MJPG")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not media")
    found = find_inputs([str(tmp_path)])
    assert [p.name for p in found.images] == ["a.png"] and [p.name for p in found.videos] == ["b.avi"]
