"""Conversions: COCO -> VOC -> COCO and COCO -> YOLO -> COCO keep boxes and class names; output
layout, image placement, atomicity, and real data (BCCD VOC, tiny COCO) when present."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from detkit.data.coco import CocoDetection
from detkit.data.formats import convert_dataset, read_source
from detkit.data.synthetic import generate_synthetic_coco
from detkit.errors import DataError
from tests.data.builders import voc_object, write_coco, write_voc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_coco(root, num_train=6, num_val=3, image_size=(64, 64), seed=3)
    return root


def _boxes_by_file(annotation_file: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """{image file name: sorted [(class name, COCO bbox)]}."""
    data = json.loads(annotation_file.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {i["id"]: Path(i["file_name"]).name for i in data["images"]}
    boxes: dict[str, list] = {name: [] for name in files.values()}
    for ann in data["annotations"]:
        boxes[files[ann["image_id"]]].append((names[ann["category_id"]], tuple(ann["bbox"])))
    return {name: sorted(value) for name, value in boxes.items()}


def _assert_same_boxes(expected: dict, actual: dict, tolerance: float) -> None:
    assert expected.keys() == actual.keys()
    for name in expected:
        assert [c for c, _ in actual[name]] == [c for c, _ in expected[name]], name
        for (_, want), (_, got) in zip(expected[name], actual[name]):
            assert got == pytest.approx(want, abs=tolerance), name


def test_coco_to_voc_to_coco_keeps_boxes_and_class_names(synthetic, tmp_path):
    source = synthetic / "annotations" / "instances_train.json"
    convert_dataset(source, tmp_path / "voc", "voc", images=synthetic / "train", split="train")
    report = convert_dataset(tmp_path / "voc", tmp_path / "back", "coco")
    back = tmp_path / "back" / "annotations" / "instances_train.json"
    assert [s.name for s in report.splits] == ["train"]
    # VOC writes whole pixels as integers: exact.
    _assert_same_boxes(_boxes_by_file(source), _boxes_by_file(back), 1e-9)
    assert report.splits[0].class_names == ("circle", "cross", "square", "star", "triangle")  # VOC: sorted names
    dataset = CocoDetection(back, report.splits[0].image_dir)
    assert len(dataset) == 6 and dataset[0][0].shape == (3, 64, 64)


def test_coco_to_yolo_to_coco_keeps_boxes_within_yolo_precision(synthetic, tmp_path):
    source = synthetic / "annotations" / "instances_val.json"
    convert_dataset(source, tmp_path / "yolo", "yolo", images=synthetic / "val", split="val")
    report = convert_dataset(tmp_path / "yolo", tmp_path / "back.json", "coco", split="val")
    # 6 decimals of a 64 px side: under 1e-4 px per coordinate.
    _assert_same_boxes(_boxes_by_file(source), _boxes_by_file(tmp_path / "back.json"), 1e-3)
    assert report.splits[0].class_names == ("circle", "triangle", "square", "star", "cross")  # YOLO keeps the order
    assert report.splits[0].image_dir == tmp_path / "yolo" / "images" / "val"


def test_yolo_layout_and_data_yaml(synthetic, tmp_path):
    convert_dataset(
        synthetic / "annotations" / "instances_train.json",
        tmp_path / "yolo",
        "yolo",
        images=synthetic / "train",
        split="train",
    )
    root = tmp_path / "yolo"
    data = (root / "data.yaml").read_text()
    assert "train: images/train" in data and "nc: 5" in data and "0: circle" in data and "path:" not in data
    images = sorted(p.name for p in (root / "images" / "train").iterdir())
    labels = sorted(p.name for p in (root / "labels" / "train").iterdir())
    assert images == [f"{i:06d}.png" for i in range(1, 7)] and labels == [f"{i:06d}.txt" for i in range(1, 7)]
    # Placed by hard link: the same file as the source, no bytes copied.
    assert os.path.samefile(root / "images" / "train" / "000001.png", synthetic / "train" / "000001.png")


def test_voc_from_two_splits_with_clashing_file_names(synthetic, tmp_path):
    """Synthetic train and val both have 000001.png: the second becomes val_000001."""
    splits = read_source(synthetic / "annotations" / "instances_train.json", images=synthetic / "train", split="train")
    splits += read_source(synthetic / "annotations" / "instances_val.json", images=synthetic / "val", split="val")
    from detkit.data.formats.voc_writer import write_voc as write_voc_folder

    report = write_voc_folder(splits, tmp_path / "voc")
    lists = tmp_path / "voc" / "ImageSets" / "Main"
    assert (lists / "train.txt").read_text().split() == [f"{i:06d}" for i in range(1, 7)]
    assert (lists / "val.txt").read_text().split() == [f"val_{i:06d}" for i in range(1, 4)]
    assert (lists / "trainval.txt").read_text().split() == (lists / "train.txt").read_text().split() + (
        lists / "val.txt"
    ).read_text().split()
    assert "<filename>val_000001.png</filename>" in (tmp_path / "voc" / "Annotations" / "val_000001.xml").read_text()
    assert report.notes[-1] == "images placed: 9 hard-linked, 0 copied"
    back = read_source(tmp_path / "voc")
    assert [s.name for s in back] == ["train", "val"] and [s.num_images for s in back] == [6, 3]


def test_crowds_become_difficult_in_voc_and_are_dropped_in_yolo(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 2, 10, 10], "iscrowd": 0, "area": 100},
        {
            "id": 2,
            "image_id": 1,
            "category_id": 5,
            "bbox": [5, 5, 10, 10],
            "iscrowd": 1,
            "area": 100,
            "segmentation": {"size": [20, 30], "counts": [0, 600]},
        },
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [25, 15, 20, 20], "iscrowd": 0, "area": 400},
        {"id": 4, "image_id": 1, "category_id": 5, "bbox": [40, 1, 5, 5], "iscrowd": 0, "area": 25},
    ]
    source = write_coco(tmp_path / "coco", images, anns, [{"id": 5, "name": "cat"}])
    voc = convert_dataset(source, tmp_path / "voc", "voc")
    xml = (tmp_path / "voc" / "Annotations" / "a.xml").read_text()
    assert xml.count("<object>") == 3 and xml.count("<difficult>1</difficult>") == 1
    # Box 3 is clipped to the 30x20 image: xmax 30, ymax 20; box 4 lies outside and is dropped.
    assert "<xmin>26</xmin>" in xml and "<xmax>30</xmax>" in xml and "<ymax>20</ymax>" in xml
    assert any("1 boxes clipped" in n for n in voc.notes) and any("1 boxes under 1 px" in n for n in voc.notes)
    yolo = convert_dataset(source, tmp_path / "yolo", "yolo")
    assert (tmp_path / "yolo" / "labels" / "instances" / "a.txt").read_text().count("\n") == 2
    assert any("1 crowd regions dropped (YOLO has no ignore regions)" in n for n in yolo.notes)
    back = read_source(tmp_path / "voc")[0]
    assert sorted(a["difficult"] for a in back.coco["annotations"]) == [0, 0, 1]


def test_failed_conversion_leaves_no_output_and_no_temporary_folder(synthetic, tmp_path):
    source = tmp_path / "coco"
    images = [
        {"id": 1, "file_name": "a.png", "height": 8, "width": 8},
        {"id": 2, "file_name": "gone.png", "height": 8, "width": 8},
    ]
    path = write_coco(source, images[:1], [], [{"id": 1, "name": "x"}])
    data = json.loads(path.read_text())
    data["images"] = images
    path.write_text(json.dumps(data))
    out = tmp_path / "out" / "yolo"
    with pytest.raises(DataError, match="gone.png: image not found; the target layout needs every image in place"):
        convert_dataset(path, out, "yolo")
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []


def test_existing_output_is_refused_unless_overwrite(synthetic, tmp_path):
    source = synthetic / "annotations" / "instances_val.json"
    out = tmp_path / "yolo"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(DataError, match="already exists; choose another output or pass --overwrite"):
        convert_dataset(source, out, "yolo", images=synthetic / "val")
    # --overwrite replaces only what a conversion wrote: a folder of the user's is kept.
    with pytest.raises(DataError, match="was not written by `detkit data convert`"):
        convert_dataset(source, out, "yolo", images=synthetic / "val", replace=True)
    assert (out / "old.txt").read_text() == "old"
    (out / "old.txt").unlink()
    out.rmdir()
    convert_dataset(source, out, "yolo", images=synthetic / "val")
    (out / "old.txt").write_text("old")
    convert_dataset(source, out, "yolo", images=synthetic / "val", replace=True)
    assert not (out / "old.txt").exists() and (out / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolo"]  # nothing left beside it


@pytest.mark.parametrize("to, name", [("coco", "out.json"), ("coco", "coco"), ("voc", "voc")])
def test_overwrite_replaces_a_conversion_of_any_format_but_never_a_users_file(synthetic, tmp_path, to, name):
    source = synthetic / "annotations" / "instances_val.json"
    out = tmp_path / name
    if out.suffix:
        out.write_text('{"images": [], "annotations": [], "categories": [], "info": {"mine": 1}}')
    else:
        out.mkdir()
        (out / "thesis.tex").write_text("keep")
    with pytest.raises(DataError, match="was not written by"):
        convert_dataset(source, out, to, images=synthetic / "val", replace=True)
    assert "mine" in out.read_text() if out.suffix else (out / "thesis.tex").read_text() == "keep"
    shutil.rmtree(out) if out.is_dir() else out.unlink()
    convert_dataset(source, out, to, images=synthetic / "val")
    convert_dataset(source, out, to, images=synthetic / "val", replace=True)  # its own output: replaced


def test_output_that_holds_the_source_is_refused(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": ((8, 8), [])}, None)
    with pytest.raises(DataError, match="is or contains the source"):
        convert_dataset(root, tmp_path, "coco", replace=True)
    assert (root / "Annotations" / "a.xml").is_file()


def test_one_json_takes_one_split_and_unknown_targets_are_refused(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": ((8, 8), []), "b": ((8, 8), [])}, {"train": ["a"], "val": ["b"]})
    with pytest.raises(DataError, match="one .json file holds one split, and the source has 2"):
        convert_dataset(root, tmp_path / "out.json", "coco")
    with pytest.raises(DataError, match="unknown target format 'csv'"):
        convert_dataset(root, tmp_path / "out", "csv")
    with pytest.raises(DataError, match="class list applies to Pascal VOC only"):
        read_source(write_coco(tmp_path / "coco", [], [], []), classes=["a"])


def test_bccd_voc_converts_with_its_published_counts(shared_data, tmp_path):
    root = shared_data("bccd", "BCCD")
    report = convert_dataset(root, tmp_path / "bccd", "coco")
    counts = {s.name: (s.num_images, s.num_annotations) for s in report.splits}
    # trainval is train + val, so it is not converted separately; 4,888 boxes in all.
    assert counts == {"train": (205, 2805), "val": (87, 1138), "test": (72, 945)}
    assert sum(a for _, a in counts.values()) == 4888
    assert all(s.class_names == ("Platelets", "RBC", "WBC") for s in report.splits)
    dataset = CocoDetection(tmp_path / "bccd" / "annotations" / "instances_val.json", report.splits[1].image_dir)
    image, target = dataset[0]
    assert image.shape == (3, 480, 640) and len(target) > 0


def test_tiny_coco_to_yolo_and_back_keeps_its_boxes(shared_data, tmp_path):
    root = shared_data("tiny_coco", "small_coco")
    source = root / "instances_train2017_small.json"
    report = convert_dataset(source, tmp_path / "yolo", "yolo", images=root / "train_2017_small", split="train")
    assert report.splits[0].num_images == 16 and report.splits[0].num_annotations == 196  # the crowd is dropped
    back = read_source(tmp_path / "yolo", split="train")[0]
    original = CocoDetection(source, root / "train_2017_small")
    assert back.class_names == original.class_names
    expected = _boxes_by_file(source)
    crowd = {a["id"] for a in original.coco.dataset["annotations"] if a["iscrowd"]}
    files = {i["id"]: i["file_name"] for i in original.coco.dataset["images"]}
    for ann_id in crowd:
        ann = original.coco.anns[ann_id]
        expected[files[ann["image_id"]]].remove((original.coco.cats[ann["category_id"]]["name"], tuple(ann["bbox"])))
    actual: dict[str, list] = {Path(i["file_name"]).name: [] for i in back.coco["images"]}
    names = {c["id"]: c["name"] for c in back.coco["categories"]}
    files_back = {i["id"]: Path(i["file_name"]).name for i in back.coco["images"]}
    for ann in back.coco["annotations"]:
        actual[files_back[ann["image_id"]]].append((names[ann["category_id"]], tuple(ann["bbox"])))
    # 6 decimals of a 640 px side: under 1e-3 px per coordinate.
    _assert_same_boxes(expected, {k: sorted(v) for k, v in actual.items()}, 2e-3)


def test_inverted_voc_box_is_dropped_from_yolo_with_a_note(tmp_path):
    root = write_voc(
        tmp_path / "voc", {"a": ((20, 30), [voc_object("cat", 9, 9, 3, 3), voc_object("cat", 1, 1, 10, 10)])}, None
    )
    report = convert_dataset(root, tmp_path / "yolo", "yolo")
    assert (tmp_path / "yolo" / "labels" / "all" / "a.txt").read_text() == "0 0.166667 0.250000 0.333333 0.500000\n"
    assert "all: 1 boxes under 1 px (or inverted) after clipping dropped" in report.notes
