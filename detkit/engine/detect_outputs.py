"""What ``detkit detect`` writes, written as it goes, and never over its inputs.

    <out>/detections.jsonl   one line per image as soon as it is done: image_id, file_name, height,
                             width and its detections (COCO xywh boxes, category id and name, score,
                             an RLE for masks); flushed line by line, so a killed run keeps its work
    <out>/<image>.<ext>      the annotated copy of each image (atomic), with ``save_images``
    <out>/detections.json    at the end: the COCO results json of every image (atomic)

Image ids number the inputs 1..N in order; ``file_name`` is what ``detkit eval --results`` matches
against a ground-truth json, so the ids need not agree with any dataset's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from detkit.errors import DataError
from detkit.evaluation.results import detections_to_coco_results, write_results_json
from detkit.io import input_replaced_by, same_file
from detkit.viz.detections import draw_detections, save_image_rgb

if TYPE_CHECKING:
    from detkit.engine.predict import ImageDetections

STREAM = "detections.jsonl"
RESULTS = "detections.json"
ANNOTATED_SUFFIXES = (".png", ".jpg", ".jpeg")


class DetectionWriter:
    """Writes each image's results as it arrives (``add``) and the COCO results json at ``close``.

    ``images`` are the input files and ``read_also`` anything else the run reads (the weights): an
    output that would replace one of them, or annotated copies in the folder of the input images, is
    refused before anything is written.
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
    ) -> None:
        self.out, self.class_names, self.category_ids, self.save_images = (
            Path(out),
            class_names,
            category_ids,
            save_images,
        )
        self._name_of = dict(zip(category_ids, class_names))
        self.annotated = annotated_names(images) if save_images else {}
        _refuse_outputs_over_inputs(self.out, images, list(read_also), self.planned_outputs(), save_images)
        self._created_out = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self._stream: IO[str] = open(self.out / STREAM, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.results: list[dict[str, Any]] = []
        self.images_done = self.images_written = 0

    def planned_outputs(self) -> list[Path]:
        return [self.out / STREAM, self.out / RESULTS, *(self.out / name for name in self.annotated.values())]

    def add(self, item: ImageDetections) -> None:
        """One image's ``engine.predict.ImageDetections``: its line in the stream, its annotated copy."""
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
        self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()
        self.images_done += 1
        if self.save_images:
            annotated = draw_detections(item.image, item.detections, self.class_names)
            save_image_rgb(self.out / self.annotated[item.path], annotated)
            self.images_written += 1

    def close(self) -> Path:
        """Write the COCO results json; returns its path."""
        self._stream.close()
        write_results_json(self.out / RESULTS, self.results)
        return self.out / RESULTS

    def abort(self) -> None:
        """Close the stream on failure: what it holds is the work done so far (a stream of no image,
        and the folder made for it, are removed)."""
        self._stream.close()
        if self.images_done == 0:
            (self.out / STREAM).unlink(missing_ok=True)
            if self._created_out and not any(self.out.iterdir()):
                self.out.rmdir()

    def _stream_record(self, record: dict[str, Any]) -> dict[str, Any]:
        kept = {key: value for key, value in record.items() if key not in ("image_id", "file_name")}
        return {**kept, "category": self._name_of[record["category_id"]]}


def annotated_names(images: list[Path]) -> dict[Path, str]:
    """Each input's annotated copy's file name: the input's (PNG for other types), made unique when
    two inputs share a name."""
    used: set[str] = set()
    names = {}
    for path in images:
        suffix = path.suffix.lower() if path.suffix.lower() in ANNOTATED_SUFFIXES else ".png"
        name, index = f"{path.stem}{suffix}", 1
        while name in used:
            index += 1
            name = f"{path.stem}_{index}{suffix}"
        used.add(name)
        names[path] = name
    return names


def _refuse_outputs_over_inputs(
    out: Path, images: list[Path], others: list[Path], outputs: list[Path], save_images: bool
) -> None:
    folders = {Path(os.path.realpath(path)).parent for path in images}
    if save_images and out.exists() and any(same_file(out, folder) for folder in folders):
        raise DataError(
            f"--out {out} is a folder of the input images: their annotated copies would replace or mix with them; "
            "choose another --out, or pass --no-save-images"
        )
    for output in outputs:
        clash = input_replaced_by(output, [*images, *others])
        if clash is not None:
            raise DataError(f"--out {out}: {output.name} would replace the input {clash}; choose another --out")
