"""Pascal VOC reading: pixel convention, flags, splits, class order, image lookup, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data.formats.voc import (
    ALL,
    all_class_names,
    default_voc_splits,
    parse_voc_xml,
    read_voc,
    split_ids,
    voc_splits,
)
from detkit.errors import DataError
from tests.data.builders import voc_object, voc_xml, write_image, write_voc


def _xml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "a.xml"
    path.write_text(text)
    return path


def test_one_based_inclusive_corners_become_continuous_xyxy(tmp_path):
    record = parse_voc_xml(
        _xml(tmp_path, voc_xml("a.jpg", (40, 50), [voc_object("cat", 1, 1, 50, 40), voc_object("dog", 11, 21, 20, 30)]))
    )
    assert record.filename == "a.jpg" and record.size == (40, 50)
    # xmin=1..xmax=50 covers all 50 columns: [0, 50] in continuous coordinates.
    assert [o.box for o in record.objects] == [(0.0, 0.0, 50.0, 40.0), (10.0, 20.0, 20.0, 30.0)]
    assert [o.name for o in record.objects] == ["cat", "dog"]


def test_difficult_and_truncated_flags_are_read_and_default_to_zero(tmp_path):
    objects = [
        voc_object("cat", 1, 1, 5, 5, difficult=1, truncated=0),
        voc_object("cat", 1, 1, 5, 5, difficult=None, truncated=1),
    ]
    record = parse_voc_xml(_xml(tmp_path, voc_xml("a.jpg", (10, 10), objects)))
    assert [(o.difficult, o.truncated) for o in record.objects] == [(True, False), (False, True)]


def test_absent_or_zero_size_is_none(tmp_path):
    assert parse_voc_xml(_xml(tmp_path, voc_xml("a.jpg", None, []))).size is None
    assert parse_voc_xml(_xml(tmp_path, voc_xml("a.jpg", (0, 0), []))).size is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object>", "malformed XML at line 1"),
        ("<notvoc/>", "root element is <notvoc>"),
        (voc_xml("a.jpg", (5, 5), ["<object><bndbox/></object>"]), "object 1 has no <name>"),
        (voc_xml("a.jpg", (5, 5), ["<object><name>cat</name></object>"]), r"object 1 \('cat'\) has no <bndbox>"),
        (
            voc_xml("a.jpg", (5, 5), ["<object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object>"]),
            "has no <ymin>",
        ),
        (voc_xml("a.jpg", (5, 5), [voc_object("cat", "one", 1, 2, 2)]), "has <xmin> 'one', not a finite number"),
        (voc_xml("a.jpg", (5, 5), [voc_object("cat", "nan", 1, 2, 2)]), "has <xmin> 'nan'"),
        (
            voc_xml("a.jpg", (5, 5), [voc_object("cat", 1, 1, 2, 2, difficult="yes")]),
            "has <difficult> 'yes'; write 0 or 1",
        ),
        ("<annotation><size><width>wide</width><height>5</height></size></annotation>", r"<size><width> is 'wide'"),
    ],
)
def test_unreadable_files_are_data_errors_naming_file_and_object(tmp_path, text, message):
    with pytest.raises(DataError, match=message) as info:
        parse_voc_xml(_xml(tmp_path, text))
    assert str(tmp_path / "a.xml") in str(info.value)


def test_entity_declarations_are_refused_before_parsing(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        "<annotation><filename>&lol2;</filename></annotation>"
    )
    with pytest.raises(DataError, match="declares a DTD"):
        parse_voc_xml(_xml(tmp_path, bomb))
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><annotation/>').encode("utf-16")
    (tmp_path / "a.xml").write_bytes(utf16)
    with pytest.raises(DataError, match="declares a DTD"):
        parse_voc_xml(tmp_path / "a.xml")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        parse_voc_xml(tmp_path / "nope.xml")


def _dataset(tmp_path: Path, splits: dict[str, list[str]] | None = None) -> Path:
    records = {
        "a": ((40, 60), [voc_object("dog", 1, 1, 10, 10)]),
        "b": ((30, 30), [voc_object("cat", 5, 5, 20, 20, difficult=1)]),
        "c": ((20, 20), [voc_object("bird", 2, 2, 8, 8)]),
    }
    return write_voc(tmp_path / "voc", records, splits if splits is not None else {"train": ["a", "b"], "val": ["c"]})


def test_read_voc_gives_coco_with_sorted_classes_from_every_split(tmp_path):
    split = read_voc(_dataset(tmp_path), "train")
    # 'bird' only occurs in val, yet train knows it: both splits must share one label mapping.
    assert split.class_names == ["bird", "cat", "dog"]
    assert [c["id"] for c in split.coco["categories"]] == [1, 2, 3]
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in split.coco["images"]] == [
        (1, "a.jpg", 40, 60),
        (2, "b.jpg", 30, 30),
    ]
    anns = split.coco["annotations"]
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"], a["difficult"]) for a in anns] == [
        (1, 1, 3, [0.0, 0.0, 10.0, 10.0], 0),
        (2, 2, 2, [4.0, 4.0, 16.0, 16.0], 1),
    ]
    assert split.image_dir == tmp_path / "voc" / "JPEGImages"


def test_explicit_classes_set_the_order_and_refuse_other_names(tmp_path):
    root = _dataset(tmp_path)
    split = read_voc(root, "train", classes=["dog", "cat", "bird"])
    assert split.class_names == ["dog", "cat", "bird"]
    assert [a["category_id"] for a in split.coco["annotations"]] == [1, 2]
    with pytest.raises(DataError, match="class 'cat' is not in the class list"):
        read_voc(root, "train", classes=["dog"])
    with pytest.raises(DataError, match="name each class once"):
        read_voc(root, "train", classes=["dog", "dog"])


def test_splits_and_defaults(tmp_path):
    root = _dataset(
        tmp_path, {"train": ["a"], "val": ["b"], "trainval": ["a", "b"], "test": ["c"], "cat_train": ["a  1"]}
    )
    # The class-specific list cat_train.txt is not a split.
    assert voc_splits(root) == ["train", "val", "trainval", "test"]
    assert default_voc_splits(root) == ("train", "val")
    assert split_ids(root, "trainval") == ["a", "b"]


def test_test_split_validates_when_there_is_no_val(tmp_path):
    assert default_voc_splits(_dataset(tmp_path, {"trainval": ["a", "b"], "test": ["c"]})) == ("trainval", "test")


def test_without_split_lists_every_xml_is_split_all(tmp_path):
    root = _dataset(tmp_path, {})
    assert voc_splits(root) == [ALL] and default_voc_splits(root) == (ALL, ALL)
    assert [i["file_name"] for i in read_voc(root, ALL).coco["images"]] == ["a.jpg", "b.jpg", "c.jpg"]


def test_split_list_lines_are_deduplicated_and_extra_columns_ignored(tmp_path):
    root = _dataset(tmp_path, {"train": []})
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n\nb  1\na\n")
    assert split_ids(root, "train") == ["a", "b"]


def test_unknown_split_and_missing_xml_are_data_errors(tmp_path):
    root = _dataset(tmp_path)
    with pytest.raises(DataError, match="split 'nope' not found; choose one of train, val"):
        read_voc(root, "nope")
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nghost\n")
    with pytest.raises(DataError, match="image id 'ghost' has no Annotations/ghost.xml"):
        read_voc(root, "train")


def test_no_annotations_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no Annotations/ folder"):
        read_voc(tmp_path, "train")


def test_image_found_by_id_when_filename_is_wrong_and_size_read_from_the_file(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x.xml").write_text(voc_xml("renamed.jpg", None, [voc_object("cat", 1, 1, 4, 4)]))
    write_image(root / "JPEGImages" / "x.png", 24, 32)
    split = read_voc(root, ALL)
    assert split.coco["images"] == [{"id": 1, "file_name": "x.png", "height": 24, "width": 32}]
    assert split.notes == []


def test_missing_image_without_size_is_kept_without_size_and_noted(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x.xml").write_text(voc_xml(None, None, [voc_object("cat", 1, 1, 4, 4)]))
    split = read_voc(root, ALL)
    assert split.coco["images"] == [{"id": 1, "file_name": "x.jpg"}]
    assert split.num_annotations == 1 and "no <size> and no readable file" in split.notes[0]


def test_geometry_is_read_as_written_for_the_checker(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": ((10, 10), [voc_object("cat", 8, 8, 3, 3)])}, None)
    assert read_voc(root, ALL).coco["annotations"][0]["bbox"] == [7.0, 7.0, -4.0, -4.0]


def test_all_class_names_reads_every_file(tmp_path):
    assert all_class_names(_dataset(tmp_path)) == ["bird", "cat", "dog"]
