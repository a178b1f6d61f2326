"""What ``detkit detect`` writes, written as it goes, and never over its inputs.

    <out>/detections.jsonl   one line per image as soon as it is done: image_id, file_name, height,
                             width and its detections (COCO xywh boxes, category id and name, score,
                             an RLE for masks); flushed line by line, so a killed run keeps its work
    <out>/<image>.<ext>      the annotated copy of each image (atomic), with ``save_images``
    <out>/detections.json    at the end: the COCO results json of every image (atomic)
    <out>/<video>.jsonl      one line per processed frame of each video or camera, flushed as it is
                             done: frame, time, file_name, height, width and its detections (each
                             image record's fields, plus ``box`` xyxy pixels and the contiguous ``label``)
    <out>/<video>.mp4        the annotated video (mp4v), with ``save_images``: written to a hidden
                             temporary file, renamed when the video is done (or stopped by Ctrl-C)

Image ids number the images 1..N in order; ``file_name`` is what ``detkit eval --results`` matches
against a ground-truth json, so the ids need not agree with any dataset's. Video frames are not in
detections.json (they are no dataset's images); the two image files are written only when there are
images. A camera's outputs are named ``camera<N>``.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from detkit.data.video import OUTPUT_SUFFIX, Frame, VideoFileWriter
from detkit.engine.detect_timing import DetectTiming
from detkit.errors import DataError
from detkit.evaluation.results import detections_to_coco_results, write_results_json
from detkit.io import input_replaced_by, same_file
from detkit.structures import Detections
from detkit.viz.detections import draw_detections, save_image_rgb

if TYPE_CHECKING:
    from detkit.engine.predict import ImageDetections

STREAM = "detections.jsonl"
RESULTS = "detections.json"
ANNOTATED_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAMES_SUFFIX = ".jsonl"
DRAWS_AHEAD = 4


VideoKey = Path | int  # a video file, or a camera index


class DetectionWriter:
    """Writes each image's results as it arrives (``add``) and the COCO results json at ``close``;
    ``record_video`` gives each video's (or camera's) ``FrameRecorder``.

    ``images`` and ``videos`` are the input files, ``cameras`` the camera indices read, and
    ``read_also`` anything else the run reads (the weights): an output that would replace one of
    them, or annotated copies in the folder of the input images or videos, is refused before
    anything is written. detections.jsonl and detections.json are written only when there are images.
    """

    def __init__(
        self,
        out: Path,
        images: list[Path],
        class_names: list[str],
        category_ids: list[int],
        *,
        save_images: bool,
        read_also: tuple[Path, ...] = (),
        videos: Sequence[Path] = (),
        cameras: Sequence[int] = (),
        timing: DetectTiming | None = None,
    ) -> None:
        self.out, self.class_names, self.category_ids, self.save_images = (
            Path(out),
            class_names,
            category_ids,
            save_images,
        )
        self._name_of = dict(zip(category_ids, class_names))
        image_names, video_names = output_names(images, [*(p.stem for p in videos), *(f"camera{i}" for i in cameras)])
        self.annotated = image_names if save_images else {}
        self.video_names: dict[VideoKey, str] = dict(zip([*videos, *cameras], video_names))
        self._has_images = bool(images)
        _refuse_outputs_over_inputs(self.out, [*images, *videos], list(read_also), self.planned_outputs(), save_images)
        self._created_out = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        # Closed in close() or abort().
        self._stream: IO[str] | None = open(self.out / STREAM, "w", encoding="utf-8") if images else None  # noqa: SIM115
        self.results: list[dict[str, Any]] = []
        self.images_done = self.images_written = 0
        self.timing = timing if timing is not None else DetectTiming()
        # Annotated copies are drawn and encoded in one thread (OpenCV releases the GIL), beside the model;
        # at most DRAWS_AHEAD wait, so a slow disk holds back the model rather than filling memory.
        self._drawer: ThreadPoolExecutor | None = ThreadPoolExecutor(1, "detkit-draw") if save_images else None
        self._drawing: deque[Future[None]] = deque()

    def planned_outputs(self) -> list[Path]:
        images = [self.out / STREAM, self.out / RESULTS] if self._has_images else []
        videos = [path for key in self.video_names for path in self.video_outputs(key) if path is not None]
        return [*images, *(self.out / name for name in self.annotated.values()), *videos]

    def video_outputs(self, key: VideoKey) -> tuple[Path, Path | None]:
        """A video's (or camera's) per-frame jsonl and annotated video (None without ``save_images``)."""
        stem = self.video_names[key]
        return self.out / f"{stem}{FRAMES_SUFFIX}", (self.out / f"{stem}{OUTPUT_SUFFIX}" if self.save_images else None)

    def add(self, item: ImageDetections) -> None:
        """One image's ``engine.predict.ImageDetections``: its line in the stream, its annotated copy."""
        if self._stream is None:
            raise RuntimeError("DetectionWriter.add: the writer was made without images")
        records = [
            {**record, "file_name": str(item.path)}
            for record in detections_to_coco_results([item.detections], [item.image_id], self.category_ids)
        ]
        self.results.extend(records)
        height, width = item.image.shape[:2]
        line = {
            "image_id": item.image_id,
            "file_name": str(item.path),
            "height": height,
            "width": width,
            "detections": [self._stream_record(r) for r in records],
        }
        started = time.perf_counter()
        self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()
        self.timing.add("write", time.perf_counter() - started)
        self.images_done += 1
        if self._drawer is not None:
            while len(self._drawing) >= DRAWS_AHEAD:
                self._drawing.popleft().result()
            self._drawing.append(self._drawer.submit(self._draw, item))

    def _draw(self, item: ImageDetections) -> None:
        started = time.perf_counter()
        annotated = draw_detections(item.image, item.detections, self.class_names)
        save_image_rgb(self.out / self.annotated[item.path], annotated)
        self.timing.add("draw", time.perf_counter() - started)
        self.images_written += 1  # one drawing thread: no race

    def finish_images(self) -> None:
        """Wait for the images' annotated copies (so that the images' wall time includes them)."""
        self._finish_drawing(cancel=False)

    def _finish_drawing(self, *, cancel: bool) -> None:
        """Wait for the annotated copies in flight and raise the first error drawing one; with ``cancel``
        (the run is failing already) those not started are dropped and errors are not raised."""
        if self._drawer is None:
            return
        drawer, self._drawer = self._drawer, None
        pending, self._drawing = list(self._drawing), deque()
        drawer.shutdown(wait=True, cancel_futures=cancel)
        if not cancel:
            for future in pending:
                future.result()

    def record_video(self, key: VideoKey, name: str, size: tuple[int, int], fps: float) -> FrameRecorder:
        """The recorder of one video or camera (``key``, shown as ``name``) of frames of ``size`` (H, W),
        its annotated video playing at ``fps``."""
        frames, video = self.video_outputs(key)
        return FrameRecorder(
            frames,
            name,
            self.class_names,
            self.category_ids,
            video=None if video is None else VideoFileWriter(video, fps, size),
        )

    def close(self) -> Path | None:
        """Write the COCO results json of the images; returns its path (None: there were no images)."""
        self._finish_drawing(cancel=False)
        if self._stream is None:
            return None
        self._stream.close()
        started = time.perf_counter()
        write_results_json(self.out / RESULTS, self.results)
        self.timing.add("write", time.perf_counter() - started)
        return self.out / RESULTS

    def abort(self) -> None:
        """Close the stream on failure: what it holds is the work done so far (a stream of no image,
        and the folder made for it when it holds nothing else, are removed)."""
        self._finish_drawing(cancel=True)
        if self._stream is not None:
            self._stream.close()
            if self.images_done == 0:
                (self.out / STREAM).unlink(missing_ok=True)
        if self._created_out and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def _stream_record(self, record: dict[str, Any]) -> dict[str, Any]:
        return stream_record(record, self._name_of)


class FrameRecorder:
    """One video's outputs, frame by frame: a flushed jsonl line per processed frame, and the frame
    drawn into the annotated video (``data.video.VideoFileWriter``, published by ``finish``).

    Each line: ``frame`` (0-based index in the source), ``time`` (seconds), ``file_name`` (the
    source), ``height``, ``width``, and ``detections``: per detection the image records' fields
    (``category_id``, COCO ``bbox`` xywh, ``score``, ``category``, an RLE ``segmentation`` for
    masks) plus ``box`` (xyxy pixels of the frame) and ``label`` (contiguous, 0..K-1).
    """

    def __init__(
        self,
        frames: Path,
        name: str,
        class_names: list[str],
        category_ids: list[int],
        *,
        video: VideoFileWriter | None,
    ) -> None:
        self.frames_path, self.name, self.class_names, self.category_ids = frames, name, class_names, category_ids
        self.video = video
        self._name_of = dict(zip(category_ids, class_names))
        try:
            self._stream: IO[str] = open(frames, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()/abort()
        except BaseException:
            if video is not None:
                video.discard()
            raise
        self.frames_done = 0

    def add(self, frame: Frame, detections: Detections) -> None:
        """One processed frame: detections in its pixels (boxes ``[D, 4]`` xyxy, labels in ``[0, K)``)."""
        records = detections_to_coco_results([detections], [0], self.category_ids)
        boxes = detections.boxes.detach().cpu().tolist()
        labels = detections.labels.detach().cpu().tolist()
        height, width = frame.image.shape[:2]
        line = {
            "frame": frame.index,
            "time": round(frame.time, 6),
            "file_name": self.name,
            "height": height,
            "width": width,
            "detections": [
                {**stream_record(record, self._name_of), "box": box, "label": int(label)}
                for record, box, label in zip(records, boxes, labels)
            ],
        }
        self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()  # a killed run keeps every frame done
        if self.video is not None:
            self.video.write(draw_detections(frame.image, detections, self.class_names))
        self.frames_done += 1

    def finish(self) -> tuple[Path, Path | None]:
        """Close the jsonl and publish the annotated video; returns (jsonl, video or None)."""
        self._stream.close()
        return self.frames_path, None if self.video is None else self.video.finish()

    def abort(self) -> None:
        """On failure: the half-written video is removed; the jsonl keeps the frames done (removed when none)."""
        self._stream.close()
        if self.video is not None:
            self.video.discard()
        if self.frames_done == 0:
            self.frames_path.unlink(missing_ok=True)


def stream_record(record: dict[str, Any], name_of: dict[int, str]) -> dict[str, Any]:
    """A COCO result record as the jsonl streams show it: without image_id and file_name (the line
    has them), with the category's name."""
    kept = {key: value for key, value in record.items() if key not in ("image_id", "file_name")}
    return {**kept, "category": name_of[record["category_id"]]}


def annotated_names(images: list[Path]) -> dict[Path, str]:
    """Each input's annotated copy's file name: the input's (PNG for other types), made unique when
    two inputs share a name."""
    return output_names(images, [])[0]


def output_names(images: list[Path], video_stems: list[str]) -> tuple[dict[Path, str], list[str]]:
    """The annotated images' file names, and each video's output stem (``<stem>.mp4`` and
    ``<stem>.jsonl``), unique among themselves and beside detections.json(l): ``a``, ``a_2``, ..."""
    used = {STREAM, RESULTS}
    image_names = {}
    for path in images:
        suffix = path.suffix.lower() if path.suffix.lower() in ANNOTATED_SUFFIXES else ".png"
        image_names[path] = _claim(path.stem, (suffix,), used) + suffix
    return image_names, [_claim(stem, (OUTPUT_SUFFIX, FRAMES_SUFFIX), used) for stem in video_stems]


def _claim(stem: str, suffixes: tuple[str, ...], used: set[str]) -> str:
    """The first of ``stem``, ``stem_2``, ... free with every one of ``suffixes``; marks those names used."""
    name, index = stem, 1
    while any(f"{name}{suffix}" in used for suffix in suffixes):
        index += 1
        name = f"{stem}_{index}"
    used.update(f"{name}{suffix}" for suffix in suffixes)
    return name


def _refuse_outputs_over_inputs(
    out: Path, inputs: list[Path], others: list[Path], outputs: list[Path], save_images: bool
) -> None:
    folders = {Path(os.path.realpath(path)).parent for path in inputs}
    if save_images and out.exists() and any(same_file(out, folder) for folder in folders):
        raise DataError(
            f"--out {out} is a folder of the input images or videos: their annotated copies would replace or mix "
            "with them; choose another --out, or pass --no-save-images"
        )
    for output in outputs:
        clash = input_replaced_by(output, [*inputs, *others])
        if clash is not None:
            raise DataError(f"--out {out}: {output.name} would replace the input {clash}; choose another --out")
