"""A dataset's names never reach outside its folder, and a conversion places images only.

The COCO reader is covered in test_coco.py (every name a hypothesis can build); here: the VOC and
YOLO readers, the data checker, and the converters' placement of files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detkit.data.formats import convert_dataset, read_split
from detkit.data.image_paths import ALLOW_OUTSIDE_ENV
from detkit.errors import DataError
from tests.data.builders import voc_object, write_coco, write_image, write_voc, write_yolo


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every dataset folder, as /etc/passwd or a private key would be."""
    path = tmp_path / "secret.jpg"  # an image suffix does not make it an image
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return path


def test_a_coco_file_name_outside_the_folder_is_refused_and_never_linked(tmp_path, secret, monkeypatch):
    folder = tmp_path / "dataset"
    annotations = write_coco(
        folder, [{"id": 1, "file_name": "1.png", "height": 20, "width": 30}], [], [{"id": 1, "name": "a"}]
    )
    document = json.loads(annotations.read_text())
    document["images"].append({"id": 2, "file_name": "../secret.jpg", "height": 20, "width": 30})
    annotations.write_text(json.dumps(document))
    with pytest.raises(DataError, match="image 2: image path '../secret.jpg' leads outside the image folder"):
        convert_dataset(annotations, tmp_path / "yolo", "yolo", images=folder)
    # Opting in lets detkit read it; a text file still never becomes part of a dataset.
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    with pytest.raises(DataError, match="secret.jpg: not an image file"):
        convert_dataset(annotations, tmp_path / "yolo", "yolo", images=folder)
    assert not (tmp_path / "yolo").exists()


def test_a_link_inside_the_folder_to_a_non_image_is_never_placed(tmp_path, secret):
    folder = tmp_path / "dataset"
    annotations = write_coco(
        folder, [{"id": 1, "file_name": "1.png", "height": 20, "width": 30}], [], [{"id": 1, "name": "a"}]
    )
    (folder / "1.png").unlink()
    (folder / "1.png").symlink_to(secret)
    with pytest.raises(DataError, match="not an image file"):
        convert_dataset(annotations, tmp_path / "voc", "voc", images=folder)
    assert not (tmp_path / "voc").exists()


@pytest.mark.parametrize("filename", ["../../secret.jpg", "/etc/passwd", "sub/../../x.jpg"])
def test_a_voc_filename_outside_jpegimages_is_refused(tmp_path, filename):
    root = write_voc(tmp_path / "voc", {"a": ((8, 8), [voc_object("cat", 1, 1, 4, 4)])}, None)
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<filename>a.jpg</filename>", f"<filename>{filename}</filename>"))
    with pytest.raises(DataError, match=r"a.xml: <filename>: image path .* leads outside the image folder"):
        read_split(root, "all")


def test_a_yolo_list_line_outside_the_dataset_is_refused(tmp_path, secret):
    root = write_yolo(tmp_path / "yolo", ["cat"], {"train": {"a.png": ((8, 8), "0 0.5 0.5 0.2 0.2\n")}})
    write_image(tmp_path / "elsewhere.png", 8, 8)
    (root / "train.txt").write_text("images/train/a.png\n../elsewhere.png\n")
    (root / "data.yaml").write_text("names: [cat]\ntrain: train.txt\n")
    with pytest.raises(DataError, match=r"train.txt: line 2: image path .* leads outside"):
        read_split(root, "train")
    (root / "train.txt").write_text("images/train/a.png\n../secret.txt\nnotes.md\n")  # no image type: skipped
    assert read_split(root, "train").num_images == 1
