"""Format detection, default splits, and resolve_dataset's conversion cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detkit.data.formats import CocoSource, default_cache_dir, default_splits, detect_format, resolve_dataset
from detkit.errors import DataError
from tests.data.builders import voc_object, write_coco, write_voc, write_yolo


def _voc(tmp_path: Path) -> Path:
    records = {"a": ((20, 30), [voc_object("cat", 1, 1, 10, 10)]), "b": ((20, 30), [voc_object("dog", 2, 2, 9, 9)])}
    return write_voc(tmp_path / "voc", records, {"train": ["a"], "val": ["b"]})


def _yolo(tmp_path: Path) -> Path:
    return write_yolo(
        tmp_path / "yolo",
        ["cat"],
        {"train": {"a.png": ((10, 10), "0 0.5 0.5 0.5 0.5\n")}, "val": {"b.png": ((10, 10), "")}},
    )


def test_detect_format(tmp_path):
    coco = write_coco(tmp_path / "coco", [], [], [])
    assert detect_format(coco) == "coco"
    assert detect_format(_voc(tmp_path)) == "voc"
    assert detect_format(_yolo(tmp_path)) == "yolo" and detect_format(tmp_path / "yolo" / "data.yaml") == "yolo"


def _text_file(folder: Path) -> Path:
    (folder / "x.txt").write_text("")
    return folder / "x.txt"


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "missing", _text_file])
def test_anything_else_is_a_data_error_naming_the_three_layouts(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        detect_format(path)
    message = str(info.value)
    assert (
        message.startswith(str(path))
        and "COCO instances .json" in message
        and "Pascal VOC" in message
        and "data.yaml" in message
    )


def test_default_splits(tmp_path):
    assert default_splits(_voc(tmp_path)) == ("train", "val")
    assert default_splits(_yolo(tmp_path)) == ("train", "val")
    assert default_splits(write_coco(tmp_path / "c", [], [], []).rename(tmp_path / "c" / "instances_val2017.json")) == (
        "val2017",
        "val2017",
    )


def test_coco_json_passes_through(tmp_path):
    coco = write_coco(tmp_path / "coco", [], [], [])
    assert resolve_dataset(coco, None, None) == CocoSource(coco, tmp_path / "coco")
    assert resolve_dataset(coco, "ignored", tmp_path) == CocoSource(coco, tmp_path)


def test_voc_split_is_converted_once_and_reused(tmp_path):
    root, cache = _voc(tmp_path), tmp_path / "cache"
    first = resolve_dataset(root, None, None, cache_dir=cache)
    assert first.annotations.parent.parent == cache and first.annotations.name == "instances_train.json"
    assert first.images == (root / "JPEGImages").resolve()
    data = json.loads(first.annotations.read_text())
    assert [i["file_name"] for i in data["images"]] == ["a.jpg"] and [c["name"] for c in data["categories"]] == [
        "cat",
        "dog",
    ]
    written = first.annotations.stat().st_mtime_ns
    again = resolve_dataset(root, "train", None, cache_dir=cache)
    assert again == first and again.annotations.stat().st_mtime_ns == written
    val = resolve_dataset(root, "val", None, cache_dir=cache)
    assert (
        val.annotations != first.annotations
        and json.loads(val.annotations.read_text())["images"][0]["file_name"] == "b.jpg"
    )


def test_an_edited_annotation_makes_a_new_entry(tmp_path):
    root, cache = _voc(tmp_path), tmp_path / "cache"
    first = resolve_dataset(root, "train", None, cache_dir=cache)
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmax>10</xmax>", "<xmax>12</xmax>"))
    second = resolve_dataset(root, "train", None, cache_dir=cache)
    assert second.annotations != first.annotations
    assert json.loads(second.annotations.read_text())["annotations"][0]["bbox"] == [0.0, 0.0, 12.0, 10.0]


def test_an_incomplete_entry_is_made_again(tmp_path):
    root, cache = _voc(tmp_path), tmp_path / "cache"
    first = resolve_dataset(root, "train", None, cache_dir=cache)
    (first.annotations.parent / "source.json").write_text("{broken")
    assert resolve_dataset(root, "train", None, cache_dir=cache) == first
    assert json.loads((first.annotations.parent / "source.json").read_text())["split"] == "train"


def test_yolo_split_resolves_to_its_image_folder(tmp_path):
    root = _yolo(tmp_path)
    source = resolve_dataset(root / "data.yaml", "train", None, cache_dir=tmp_path / "cache")
    assert source.images == (root / "images" / "train").resolve()
    assert json.loads(source.annotations.read_text())["annotations"][0]["bbox"] == pytest.approx([2.5, 2.5, 5.0, 5.0])


def test_default_cache_dir_mirrors_the_proposal_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DETKIT_CACHE_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "d" / "datasets"
    monkeypatch.delenv("DETKIT_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "x" / "detkit" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "detkit" / "datasets"


def test_resolve_uses_the_default_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DETKIT_CACHE_DIR", str(tmp_path / "cache"))
    source = resolve_dataset(_voc(tmp_path), "val", None)
    assert source.annotations.is_relative_to(tmp_path / "cache" / "datasets")


def test_coco_images_default_to_the_official_layout_else_beside_the_json(tmp_path):
    from detkit.data.formats.coco_reader import default_image_dir

    official = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    official.parent.mkdir(parents=True)
    official.write_text("{}")
    assert default_image_dir(official) == official.parent  # no val2017/ folder: beside the json
    (tmp_path / "coco" / "val2017").mkdir()
    assert default_image_dir(official) == tmp_path / "coco" / "val2017"
    assert resolve_dataset(official).images == tmp_path / "coco" / "val2017"
    loose = tmp_path / "instances_val2017.json"
    loose.write_text("{}")
    assert default_image_dir(loose) == tmp_path
