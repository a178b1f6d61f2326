"""``detkit data convert`` and ``detkit data check`` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import invoke, synthesize
from tests.data.builders import voc_object, write_image, write_voc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("data_cli") / "synthetic", num_train=4, num_val=2)


def _voc(tmp_path: Path) -> Path:
    records = {
        "a": ((20, 30), [voc_object("WBC", 1, 1, 10, 10), voc_object("RBC", 5, 5, 20, 15)]),
        "b": ((20, 30), [voc_object("RBC", 2, 2, 9, 9)]),
        "c": ((20, 30), [voc_object("Platelets", 3, 3, 8, 8)]),
    }
    return write_voc(tmp_path / "voc", records, {"train": ["a", "b"], "val": ["c"]})


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_convert_coco_to_yolo(synthetic, tmp_path):
    result = invoke(
        "data",
        "convert",
        str(synthetic / "annotations" / "instances_train.json"),
        str(tmp_path / "yolo"),
        "--to",
        "yolo",
        "--images",
        str(synthetic / "train"),
        "--split",
        "train",
    )
    assert result.exit_code == 0, result.output
    assert "YOLO dataset written to" in result.output and "4 hard-linked, 0 copied" in result.output
    assert sorted(p.name for p in (tmp_path / "yolo" / "labels" / "train").iterdir()) == [
        f"{i:06d}.txt" for i in range(1, 5)
    ]


def test_convert_voc_split_to_one_json_with_a_class_order(tmp_path):
    result = invoke(
        "data",
        "convert",
        str(_voc(tmp_path)),
        str(tmp_path / "val.json"),
        "--to",
        "coco",
        "--split",
        "val",
        "--classes",
        "WBC, RBC,Platelets",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "val.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["WBC", "RBC", "Platelets"]
    assert [a["category_id"] for a in data["annotations"]] == [3]
    assert "images are referenced, not copied" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--to", "csv"], "unknown target format 'csv'"),
        (["--to", "coco", "--classes", "a,b"], "class 'WBC' is not in the class list"),
        (["--to", "coco", "--split", "nope"], "VOC split 'nope' not found; choose one of train, val"),
    ],
)
def test_convert_errors_are_one_line_exit_2_and_leave_nothing(tmp_path, args, needle):
    result = invoke("data", "convert", str(_voc(tmp_path)), str(tmp_path / "out"), *args)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert len(_lines(result.output)) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_convert_refuses_an_unknown_layout_and_an_existing_output(tmp_path):
    result = invoke("data", "convert", str(tmp_path), str(tmp_path / "out"), "--to", "coco")
    assert result.exit_code == 2 and "not a dataset detkit reads" in result.output and "data.yaml" in result.output
    (tmp_path / "out").mkdir()
    result = invoke("data", "convert", str(_voc(tmp_path)), str(tmp_path / "out"), "--to", "yolo")
    assert result.exit_code == 2 and "already exists; choose another output or pass --overwrite" in result.output
    # --overwrite replaces detkit's own conversions only: the user's (empty) folder is kept.
    result = invoke("data", "convert", str(_voc(tmp_path)), str(tmp_path / "out"), "--to", "yolo", "--overwrite")
    assert result.exit_code == 2 and "was not written by `detkit data convert`" in result.output
    (tmp_path / "out").rmdir()
    assert invoke("data", "convert", str(_voc(tmp_path)), str(tmp_path / "out"), "--to", "yolo").exit_code == 0
    result = invoke("data", "convert", str(_voc(tmp_path)), str(tmp_path / "out"), "--to", "yolo", "--overwrite")
    assert result.exit_code == 0 and (tmp_path / "out" / "data.yaml").is_file()


def test_check_a_clean_dataset_exits_0(synthetic):
    result = invoke(
        "data", "check", str(synthetic / "annotations" / "instances_val.json"), "--images", str(synthetic / "val")
    )
    assert result.exit_code == 0, result.output
    assert "checked" in result.output and "2 images" in result.output and "errors:" not in result.output


def _broken(synthetic: Path, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    shutil.copytree(synthetic / "train", images)
    data = json.loads((synthetic / "annotations" / "instances_train.json").read_text())
    (images / data["images"][0]["file_name"]).unlink()
    kept = [a for a in data["annotations"] if a["image_id"] != data["images"][0]["id"]]
    kept[0]["bbox"] = [-20, 3, 30, 10]
    kept[1]["category_id"] = 77
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    return path, images


def test_check_finds_errors_and_exits_2(synthetic, tmp_path):
    path, images = _broken(synthetic, tmp_path)
    result = invoke("data", "check", str(path), "--images", str(images))
    assert result.exit_code == 2, result.output
    assert "errors: missing_image (1), unknown_category (1), box_outside_image (1)" in result.output
    assert "pass --fix OUT.json" in result.output and "severity" in result.output


def test_check_fix_writes_a_clean_copy_and_exits_0(synthetic, tmp_path):
    path, images = _broken(synthetic, tmp_path)
    result = invoke("data", "check", str(path), "--images", str(images), "--fix", str(tmp_path / "fixed.json"))
    assert result.exit_code == 0, result.output
    assert "1 image records dropped: file missing, unreadable or truncated" in result.output
    assert (
        "1 boxes clipped to their image" in result.output
        and "1 annotations of unknown categories dropped" in result.output
    )
    assert "the cleaned file has no errors" in result.output
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    assert len(fixed["images"]) == 3
    again = invoke("data", "check", str(tmp_path / "fixed.json"), "--images", str(images))
    assert again.exit_code == 0, again.output


def test_check_a_voc_split(tmp_path):
    root = _voc(tmp_path)
    (root / "Annotations" / "c.xml").write_text(
        (root / "Annotations" / "c.xml").read_text().replace("<xmax>8</xmax>", "<xmax>80</xmax>")
    )
    result = invoke("data", "check", str(root), "--split", "val")
    assert result.exit_code == 2, result.output
    assert "checking split 'val'" in result.output and "box_outside_image (1)" in result.output


def test_check_of_a_missing_file_is_one_line(tmp_path):
    result = invoke("data", "check", str(tmp_path / "nope.json"))
    assert result.exit_code == 2 and len(_lines(result.output)) == 1 and "nope.json: not found" in result.output


def test_check_reports_a_truncated_image(tmp_path):
    write_image(tmp_path / "a.jpg", 20, 20, extension=".jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) - 10])
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 25}
                ],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    result = invoke("data", "check", str(tmp_path / "a.json"))
    assert result.exit_code == 2 and "truncated_image (1)" in result.output


def test_check_coco128_has_no_errors(shared_data):
    root = shared_data("coco128")
    result = invoke(
        "data", "check", str(root / "annotations" / "instances_train2017.json"), "--images", str(root / "train2017")
    )
    assert result.exit_code == 0, result.output
    assert "no errors; warnings: images_without_annotations (2)" in result.output
