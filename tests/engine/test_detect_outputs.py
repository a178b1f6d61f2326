"""detect's outputs: streamed per image, never over the inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.engine.detect_outputs import RESULTS, STREAM, DetectionWriter, annotated_names
from detkit.engine.predict import ImageDetections
from detkit.errors import DataError
from detkit.structures import Detections
from tests.data.builders import write_image


def _item(path: Path, image_id: int) -> ImageDetections:
    detections = Detections(torch.tensor([[1.0, 2.0, 11.0, 12.0]]), torch.tensor([0.9]), torch.tensor([1]))
    return ImageDetections(path, image_id, np.zeros((20, 30, 3), np.uint8), detections)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [write_image(tmp_path / "photos" / name, 20, 30, extension=Path(name).suffix) for name in ("a.png", "b.jpg")]


def test_each_image_is_in_the_stream_as_soon_as_it_is_done(photos, tmp_path):
    out = tmp_path / "out"
    writer = DetectionWriter(out, photos, ["cat", "dog"], [3, 7], save_images=True)
    writer.add(_item(photos[0], 1))
    # A run killed here keeps the first image's results.
    line = json.loads((out / STREAM).read_text())
    assert line["file_name"] == str(photos[0]) and (line["height"], line["width"]) == (20, 30)
    assert line["detections"] == [
        {"category_id": 7, "bbox": [1.0, 2.0, 10.0, 10.0], "score": pytest.approx(0.9), "category": "dog"}
    ]
    assert not (out / RESULTS).exists()
    writer.add(_item(photos[1], 2))
    writer.close()
    assert len((out / STREAM).read_text().splitlines()) == 2
    assert [r["image_id"] for r in json.loads((out / RESULTS).read_text())] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", RESULTS, STREAM]


def test_annotated_copies_never_replace_or_mix_with_the_inputs(photos, tmp_path):
    before = [p.read_bytes() for p in photos]
    with pytest.raises(DataError, match="is a folder of the input images"):
        DetectionWriter(photos[0].parent, photos, ["cat"], [1], save_images=True)
    assert [p.read_bytes() for p in photos] == before and not (photos[0].parent / STREAM).exists()
    DetectionWriter(photos[0].parent, photos, ["cat"], [1], save_images=False).close()  # results only: fine there
    weights = tmp_path / "out" / RESULTS
    weights.parent.mkdir()
    weights.write_text("{}")
    with pytest.raises(DataError, match="would replace the input"):
        DetectionWriter(tmp_path / "out", photos, ["cat"], [1], save_images=False, read_also=(weights,))


def test_a_run_that_did_no_image_leaves_nothing(photos, tmp_path):
    writer = DetectionWriter(tmp_path / "out", photos, ["cat"], [1], save_images=True)
    writer.abort()
    assert not (tmp_path / "out").exists()


def test_annotated_names_are_unique_and_keep_jpeg_and_png():
    names = annotated_names([Path("x/a.png"), Path("y/a.png"), Path("z/a.webp"), Path("b.JPG")])
    assert list(names.values()) == ["a.png", "a_2.png", "a_3.png", "b.jpg"]
