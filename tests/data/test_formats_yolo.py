"""YOLO (Ultralytics layout) reading: data.yaml, label lines to pixels, label lookup, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data.formats.image_size import read_image_size
from detkit.data.formats.yolo import (
    default_yolo_splits,
    label_path,
    load_data_yaml,
    parse_label_file,
    read_yolo,
    yolo_splits,
)
from detkit.errors import DataError
from tests.data.builders import write_image, write_yolo


def _dataset(tmp_path: Path) -> Path:
    return write_yolo(
        tmp_path / "yolo",
        ["cat", "dog"],
        {
            "train": {"a.png": ((40, 80), "0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n"), "b.png": ((20, 20), None)},
            "val": {"c.jpg": ((10, 10), "1 0.5 0.5 1 1\n")},
        },
    )


def test_labels_become_pixel_boxes_with_ids_from_one(tmp_path):
    split = read_yolo(_dataset(tmp_path), "train")
    assert split.class_names == ["cat", "dog"] and [c["id"] for c in split.coco["categories"]] == [1, 2]
    assert split.image_dir == tmp_path / "yolo" / "images" / "train"
    assert [(i["file_name"], i["height"], i["width"]) for i in split.coco["images"]] == [
        ("a.png", 40, 80),
        ("b.png", 20, 20),
    ]
    anns = split.coco["annotations"]
    # 0.5 0.5 0.5 0.5 on 80x40: centre (40, 20), size 40x20 -> [20, 10, 40, 20] in COCO xywh.
    assert [a["category_id"] for a in anns] == [1, 2]
    assert anns[0]["bbox"] == pytest.approx([20.0, 10.0, 40.0, 20.0])
    assert anns[1]["bbox"] == pytest.approx([16.0, 6.0, 8.0, 8.0])
    assert all(a["image_id"] == 1 for a in anns)  # b.png has no label file: no objects


def test_polygon_lines_give_their_bounding_box_and_segmentation(tmp_path):
    root = write_yolo(tmp_path / "yolo", ["cat"], {"train": {"a.png": ((10, 20), "0 0.1 0.2 0.5 0.2 0.3 0.9\n")}})
    (ann,) = read_yolo(root, "train").coco["annotations"]
    assert ann["bbox"] == pytest.approx([2.0, 2.0, 8.0, 7.0])
    assert ann["segmentation"] == [pytest.approx([2.0, 2.0, 10.0, 2.0, 6.0, 9.0])]


def test_names_as_a_mapping_or_from_nc(tmp_path):
    root = tmp_path / "y"
    write_image(root / "images" / "train" / "a.png", 8, 8)
    (root / "data.yaml").write_text("names: {1: dog, 0: cat}\ntrain: images/train\n")
    assert load_data_yaml(root).names == ["cat", "dog"]
    (root / "data.yaml").write_text("nc: 2\ntrain: images/train\n")
    assert load_data_yaml(root).names == ["class_0", "class_1"]


def test_splits_keep_yaml_order_and_defaults(tmp_path):
    root = _dataset(tmp_path)
    assert yolo_splits(root) == ["train", "val"]
    assert default_yolo_splits(root / "data.yaml") == ("train", "val")
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: images/train\ntest: images/val\n")
    assert default_yolo_splits(root) == ("train", "test")


def test_txt_image_list_and_path_key(tmp_path):
    root = _dataset(tmp_path)
    (root / "train.txt").write_text("./images/train/a.png\nimages/val/c.jpg\n\n")
    (root / "sub").mkdir()
    (root / "sub" / "data.yaml").write_text("path: ..\nnames: [cat, dog]\ntrain: train.txt\n")
    split = read_yolo(root / "sub" / "data.yaml", "train")
    assert split.image_dir == root / "images"
    assert [i["file_name"] for i in split.coco["images"]] == ["train/a.png", "val/c.jpg"]
    assert split.num_annotations == 3


def test_label_path_replaces_the_last_images_folder():
    assert label_path(Path("/d/images/x/images/train/a.b.jpg")) == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.5", "has 4 fields"),
        ("0 0.5 0.5 0.5 0.5 0.9", "has 6 fields"),
        ("cat 0.5 0.5 0.5 0.5", "class 'cat' is not a whole number"),
        ("1.5 0.5 0.5 0.5 0.5", "class '1.5' is not a whole number"),
        ("2 0.5 0.5 0.5 0.5", r"class 2 is out of range; data.yaml names 2 classes \(0..1\)"),
        ("-1 0.5 0.5 0.5 0.5", "class -1 is out of range"),
        ("0 0.5 x 0.5 0.5", "field 3 is 'x', not a number"),
        ("0 0.5 nan 0.5 0.5", "field 3 is 'nan'; write a finite"),
        ("0 0.5 0.5 120 0.5", "field 4 is 120, outside"),
    ],
)
def test_bad_lines_are_data_errors_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        parse_label_file(path, 2, (10, 10))
    assert f"{path}: line 2" in str(info.value)


def test_values_just_outside_unit_range_are_rounding_and_kept(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 1.005 0.5 0.01 0.2\n")
    (label,) = parse_label_file(path, 1, (100, 100))
    assert label.box == pytest.approx((100.0, 40.0, 101.0, 60.0))


def test_class_written_as_float_is_accepted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1.0 0.5 0.5 0.2 0.2\n")
    assert parse_label_file(path, 2, (10, 10))[0].label == 1


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("names: [cat\n", "invalid YAML at line"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("train: images/train\n", "no 'names'"),
        ("names: cat\ntrain: images/train\n", "'names' must be a list"),
        ("names: {0: cat, 2: dog}\ntrain: images/train\n", r"indices are \[0, 2\]"),
        ("names: {a: cat}\ntrain: images/train\n", "keys must be class indices"),
        (
            "names: {.inf: cat}\ntrain: images/train\n",
            "keys must be class indices",
        ),  # found by the fuzz test: int(inf) overflowed
        ("names: {0.5: cat}\ntrain: images/train\n", "keys must be class indices"),
        ("names: [cat]\nnc: 2\ntrain: images/train\n", "nc is 2 but 'names' has 1"),
        ("names: [cat]\nnc: two\ntrain: images/train\n", "nc is 'two'"),
        ("names: [cat]\n", "names no split"),
        ("names: [cat]\ntrain: [1, 2]\n", "split 'train' must be a path"),
        ("names: [cat]\ntrain: !!python/object/apply:os.system [ls]\n", "invalid YAML"),
    ],
)
def test_bad_data_yaml_is_a_data_error(tmp_path, yaml_text, message):
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DataError, match=message) as info:
        load_data_yaml(tmp_path)
    assert str(tmp_path / "data.yaml") in str(info.value)


def test_missing_split_folder_and_unknown_split_are_data_errors(tmp_path):
    root = _dataset(tmp_path)
    with pytest.raises(DataError, match="no split 'test'; choose one of train, val"):
        read_yolo(root, "test")
    (root / "data.yaml").write_text("names: [cat, dog]\ntrain: images/nowhere\n")
    with pytest.raises(DataError, match="entry 'images/nowhere' is not a folder or .txt list"):
        read_yolo(root, "train")


def test_unreadable_image_is_kept_without_size_and_its_labels_noted(tmp_path):
    root = _dataset(tmp_path)
    (root / "images" / "train" / "a.png").write_bytes(b"not an image")
    split = read_yolo(root, "train")
    assert split.coco["images"][0] == {"id": 1, "file_name": "a.png"}
    assert split.num_annotations == 0
    assert split.notes == ["1 images are missing or unreadable: their 2 label lines were skipped"]


def test_images_override_replaces_the_split_folder(tmp_path):
    root = _dataset(tmp_path)
    split = read_yolo(root, "train", images=root / "images" / "val")
    assert [i["file_name"] for i in split.coco["images"]] == ["c.jpg"]


def test_image_size_from_png_and_jpeg_headers_and_by_decoding_others(tmp_path):
    assert read_image_size(write_image(tmp_path / "a.png", 17, 23)) == (17, 23)
    assert read_image_size(write_image(tmp_path / "a.jpg", 31, 9, extension=".jpg")) == (31, 9)
    assert read_image_size(write_image(tmp_path / "a.bmp", 5, 6, extension=".bmp")) == (5, 6)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00")
    assert read_image_size(tmp_path / "bad.jpg") is None
    assert read_image_size(tmp_path / "missing.png") is None


def test_jpeg_header_walk_skips_large_metadata_segments(tmp_path):
    jpeg = write_image(tmp_path / "a.jpg", 12, 34, extension=".jpg").read_bytes()
    app1 = b"\xff\xe1" + (2 + 60000).to_bytes(2, "big") + b"\0" * 60000  # an EXIF-sized segment before the frame
    (tmp_path / "b.jpg").write_bytes(jpeg[:2] + app1 + jpeg[2:])
    assert read_image_size(tmp_path / "b.jpg") == (12, 34)
