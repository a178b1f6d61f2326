"""detkit data check: each finding on a crafted dataset, the fix, the image scan, and real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detkit.data.check import MAX_EXAMPLES, check_coco, check_dataset
from detkit.data.coco import CocoDetection
from detkit.data.fix import fix_dataset
from detkit.data.formats import resolve_dataset
from detkit.data.image_scan import inspect_image, scan_images
from detkit.errors import DataError
from tests.data.builders import write_coco, write_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def _image(image_id: int, name: str | None = None, height: int = 40, width: int = 50) -> dict:
    return {"id": image_id, "file_name": name or f"{image_id}.png", "height": height, "width": width}


def _ann(ann_id: int, image_id: int = 1, bbox=(5, 5, 10, 10), category_id: int = 1, **extra) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox),
        "iscrowd": 0,
        "area": 1.0,
        **extra,
    }


def _check(tmp_path: Path, images, annotations, categories=CATEGORIES):
    path = write_coco(tmp_path, images, annotations, categories)
    return check_dataset(path, tmp_path)


def _codes(report) -> dict[str, int]:
    return {f.code: f.count for f in report.findings}


def test_a_clean_dataset_has_no_findings(tmp_path):
    report = _check(tmp_path, [_image(1), _image(2)], [_ann(1, 1), _ann(2, 2, category_id=2)])
    assert report.findings == () and report.errors == [] and report.warnings == []
    assert (report.num_images, report.num_annotations, report.num_categories) == (2, 2, 2)


def test_record_problems_are_errors_with_examples(tmp_path):
    images = [_image(1), _image(1, "other.png"), {"file_name": "noid.png"}, _image(2)]
    annotations = [
        _ann(1),
        _ann(1, bbox=(6, 6, 10, 10)),  # duplicate id
        _ann(0, bbox=(7, 7, 10, 10)),  # zero annotation id
        _ann(3, image_id=99),  # unknown image
        _ann(4, category_id=7),  # unknown category
        _ann(5, bbox=(1, 2, 3)),  # malformed box
        _ann(6, bbox=(1, 2, "w", 4)),
        _ann(7, bbox=(5, 5, -3, 4)),  # negative width
        _ann(8, bbox=(5, 5, 0, 4)),  # zero width
        _ann(9, bbox=(-20, 5, 30, 10)),  # negative x, 20 px out
        _ann(10, bbox=(45, 5, 30, 10)),  # 25 px past the right edge
        _ann(11, bbox=(60, 60, 10, 10)),  # entirely outside: out, and degenerate once clipped
        {"id": "x", "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ["not", "a", "record"],
        _ann(12, image_id=2, category_id=2),
    ]
    categories = CATEGORIES + [{"id": 2, "name": "again"}, {"name": "no id"}]
    path = write_coco(tmp_path, images, annotations, categories, write_images=False)
    for name in ("1.png", "2.png"):
        write_image(tmp_path / name, 40, 50)
    report = check_dataset(path, tmp_path)
    assert _codes(report) == {
        "duplicate_image_id": 1,
        "malformed_image": 1,
        "malformed_category": 1,
        "duplicate_category_id": 1,
        "malformed_annotation": 2,
        "duplicate_annotation_id": 1,
        "zero_annotation_id": 1,
        "missing_image_id": 1,
        "unknown_category": 1,
        "malformed_box": 2,
        "degenerate_box": 3,
        "box_outside_image": 3,
    }
    assert all(f.severity == "error" for f in report.findings) and report.warnings == []
    assert report.finding("box_outside_image").examples == (
        "annotation 9 in 1.png: xyxy [-20, 5, 10, 15] in 50x40",
        "annotation 10 in 1.png: xyxy [45, 5, 75, 15] in 50x40",
        "annotation 11 in 1.png: xyxy [60, 60, 70, 70] in 50x40",
    )
    assert report.finding("degenerate_box").examples == (
        "annotation 7 in 1.png: bbox [5, 5, -3, 4]",
        "annotation 8 in 1.png: xyxy [5, 5, 5, 9] in 50x40",
        "annotation 11 in 1.png: xyxy [60, 60, 70, 70] in 50x40",
    )
    assert report.finding("duplicate_image_id").examples == ("image 1: 1.png and other.png",)
    assert report.finding("duplicate_category_id").examples == ("category 2: 'dog' and 'again'",)
    assert report.finding("unknown_category").examples == ("annotation 4 in 1.png: category_id 7",)
    assert report.finding("missing_image_id").examples == ("annotation 3: image_id 99",)
    assert report.finding("malformed_box").examples == (
        "annotation 5 in 1.png: bbox [1, 2, 3]",
        "annotation 6 in 1.png: bbox [1, 2, 'w', 4]",
    )
    assert report.finding("malformed_annotation").examples == ("annotations[12]", "annotations[13]")


def test_warnings_alone_are_not_errors(tmp_path):
    images = [_image(0), _image(2), {"id": 3, "file_name": "3.png"}]
    write_image(tmp_path / "3.png", 40, 50)
    annotations = [
        _ann(1, 0, bbox=(5, 5, 1.5, 10)),  # tiny
        _ann(2, 0, bbox=(45, 5, 5.5, 10)),  # 0.5 px past the edge: rounding
        _ann(3, 3, bbox=(5, 5, 10, 10), iscrowd=1),  # crowd as a box
        _ann(4, 3, bbox=(5, 5, 10, 10)),
        _ann(5, 3, bbox=(5, 5, 10, 10)),  # the same box twice
    ]
    report = _check(tmp_path, images, annotations, [{"id": 1, "name": "cat"}, {"id": 0, "name": "unused"}])
    assert report.errors == []
    assert _codes(report) == {
        "zero_id": 2,
        "missing_image_size": 1,
        "images_without_annotations": 1,
        "crowd_without_rle": 1,
        "box_edge_overshoot": 1,
        "tiny_box": 1,
        "duplicate_box": 1,
        "unused_category": 1,
    }
    assert report.finding("images_without_annotations").examples == ("image 2: 2.png",)


def test_float_noise_past_the_edge_is_not_reported(tmp_path):
    report = _check(tmp_path, [_image(1)], [_ann(1, bbox=(40, 30, 10.0002, 10.0001))], CATEGORIES[:1])
    assert report.findings == ()
    report = _check(tmp_path, [_image(1)], [_ann(1, bbox=(40, 30, 10.02, 10.0001))], CATEGORIES[:1])
    assert [f.code for f in report.findings] == ["box_edge_overshoot"]


def test_class_imbalance_reports_the_ratio_and_the_rare_classes(tmp_path):
    annotations = [_ann(i, bbox=(i % 30, 1, 5, 5)) for i in range(1, 21)] + [_ann(100, category_id=2)]
    finding = _check(tmp_path, [_image(1)], annotations).finding("class_imbalance")
    assert finding.severity == "warning" and finding.count == 1
    assert "largest class 'cat' (20) over smallest 'dog' (1) is 20.0x" in finding.message
    assert finding.examples == ("'dog': 1",)


def test_examples_are_capped(tmp_path):
    annotations = [_ann(i, category_id=9) for i in range(1, 12)]
    finding = _check(tmp_path, [_image(1)], annotations).finding("unknown_category")
    assert finding.count == 11 and len(finding.examples) == MAX_EXAMPLES


def test_image_files_missing_unreadable_truncated_and_resized(tmp_path):
    images = [_image(1), _image(2), _image(3, "3.jpg"), _image(4), _image(5)]
    path = write_coco(tmp_path, images, [_ann(i, i) for i in range(1, 6)], CATEGORIES[:1])
    (tmp_path / "1.png").unlink()
    (tmp_path / "2.png").write_bytes(b"garbage")
    jpeg = write_image(tmp_path / "3.jpg", 40, 50, extension=".jpg").read_bytes()
    (tmp_path / "3.jpg").write_bytes(jpeg[:-2])  # only the end marker gone: OpenCV may still decode it
    write_image(tmp_path / "4.png", 50, 40)  # rotated against the json
    report = check_dataset(path, tmp_path)
    assert _codes(report) == {"missing_image": 1, "unreadable_image": 1, "truncated_image": 1, "image_size_mismatch": 1}
    assert report.finding("image_size_mismatch").examples == ("image 4: 4.png json 50x40, file 40x50",)
    assert report.finding("truncated_image").examples[0].startswith("image 3: 3.jpg (ends before")
    assert set(report.images) == {"1.png", "2.png", "3.jpg", "4.png", "5.png"}


def test_inspect_image_tolerates_zero_padding_after_the_end_marker(tmp_path):
    jpeg = write_image(tmp_path / "a.jpg", 8, 8, extension=".jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(jpeg + b"\0" * 16)
    assert inspect_image(tmp_path / "a.jpg").state == "ok"
    png = write_image(tmp_path / "a.png", 8, 8).read_bytes()
    (tmp_path / "a.png").write_bytes(png[:-12])
    assert inspect_image(tmp_path / "a.png").state == "truncated"
    assert inspect_image(tmp_path / "empty.png").state == "missing"


def test_scan_reports_progress_once_per_distinct_file(tmp_path):
    write_image(tmp_path / "a.png", 4, 4)
    calls = []
    scan = scan_images(tmp_path, ["a.png", "a.png", "b.png"], progress=lambda done, total: calls.append((done, total)))
    assert scan["a.png"].state == "ok" and scan["a.png"].size == (4, 4) and scan["b.png"].state == "missing"
    assert calls == [(1, 2), (2, 2)]


def test_unreadable_json_is_a_data_error(tmp_path):
    (tmp_path / "a.json").write_text('{"images": []')
    with pytest.raises(DataError, match="invalid JSON"):
        check_dataset(tmp_path / "a.json", tmp_path)


def test_fix_drops_clips_and_renumbers_until_no_errors_remain(tmp_path):
    images = [_image(1), _image(1), _image(1, "b.png"), _image(3), _image(4), {"id": "bad"}]
    annotations = [
        _ann(1),
        _ann(1, bbox=(1, 1, 4, 4)),
        _ann(0, bbox=(2, 2, 4, 4)),  # duplicate and zero ids
        _ann(2, bbox=(-5, 30, 20, 20)),  # clipped to [0, 30, 15, 40]
        _ann(3, bbox=(70, 5, 10, 10)),  # outside: dropped
        _ann(4, category_id=9),
        _ann(5, image_id=42),
        _ann(6, bbox=(1, 1)),
        {"id": 7},
        _ann(8, 3),
        _ann(9, 4),
    ]
    categories = CATEGORIES + [{"id": 1, "name": "cat"}, {"id": 2, "name": "not a dog"}]
    path = write_coco(tmp_path, [i for i in images if i.get("id") != "bad"], annotations, categories)
    data = json.loads(path.read_text())
    data["images"], data["info"] = images, {"description": "kept"}
    path.write_text(json.dumps(data))
    (tmp_path / "4.png").unlink()
    write_image(tmp_path / "3.png", 20, 25)
    report = check_dataset(path, tmp_path)
    result = fix_dataset(path, report.images, tmp_path / "fixed.json")
    assert dict((what, count) for count, what in result.changes) == {
        "malformed image records dropped": 1,
        "image records dropped: file missing, unreadable or truncated": 1,
        "duplicate image records (same id, same file) dropped": 1,
        "image records with a duplicated id renumbered": 1,
        "image records given their file's width/height": 1,
        "duplicate category records (same id, same name) dropped": 1,
        "category records with a duplicated id renumbered": 1,
        "malformed annotations dropped": 1,
        "annotations of missing or dropped images dropped": 2,
        "annotations of unknown categories dropped": 1,
        "annotations with a malformed or degenerate box dropped": 2,
        "boxes clipped to their image": 1,
        "annotations with a duplicated id or id 0 renumbered": 2,
    }
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    assert fixed["info"] == {"description": "kept"}
    assert [(i["id"], i["file_name"]) for i in fixed["images"]] == [(1, "1.png"), (5, "b.png"), (3, "3.png")]
    assert fixed["images"][2]["width"] == 25 and fixed["images"][2]["height"] == 20
    assert [c["id"] for c in fixed["categories"]] == [1, 2, 3]
    assert sorted(a["id"] for a in fixed["annotations"]) == [1, 2, 8, 10, 11]
    assert next(a for a in fixed["annotations"] if a["id"] == 2)["bbox"] == [0.0, 30.0, 15.0, 10.0]
    after = check_coco(fixed, tmp_path / "fixed.json", tmp_path, images=report.images)
    assert after.errors == []
    assert len(CocoDetection(tmp_path / "fixed.json", tmp_path)) == 3


def test_fix_of_a_clean_file_changes_nothing(tmp_path):
    path = write_coco(tmp_path, [_image(1)], [_ann(1)], CATEGORIES)
    result = fix_dataset(path, check_dataset(path, tmp_path).images, tmp_path / "fixed.json")
    assert result.changes == ()
    assert json.loads((tmp_path / "fixed.json").read_text()) == json.loads(path.read_text())


# --- real data --------------------------------------------------------------------------------


def test_coco128_has_only_warnings(shared_data):
    root = shared_data("coco128")
    report = check_dataset(root / "annotations" / "instances_train2017.json", root / "train2017")
    assert report.errors == [] and report.num_images == 128 and report.num_annotations == 939
    # SOURCES.md: two coco128 images have no annotations; 71 of 80 categories are used.
    assert report.finding("images_without_annotations").count == 2
    assert report.finding("unused_category").count == 9


def test_bccd_converted_to_coco_has_no_errors(shared_data, tmp_path):
    source = resolve_dataset(shared_data("bccd", "BCCD"), "val", None, cache_dir=tmp_path)
    report = check_dataset(source.annotations, source.images)
    assert report.errors == [] and report.num_images == 87 and report.num_annotations == 1138
    # One of BCCD's two 1 px "boxes" (xmin == xmax) is in val.
    assert report.finding("tiny_box").count == 1


def test_broken_tiny_coco_copy_reports_every_planted_fault(shared_data, tmp_path):
    root = tmp_path / "tiny"
    shutil.copytree(shared_data("tiny_coco", "small_coco"), root)
    path = root / "instances_train2017_small.json"
    data = json.loads(path.read_text())
    images, anns = data["images"], data["annotations"]
    (root / "train_2017_small" / images[0]["file_name"]).unlink()
    truncated = root / "train_2017_small" / images[1]["file_name"]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    anns[0]["bbox"] = [-30.0, 10.0, 50.0, 40.0]
    anns[1]["bbox"][2] = -5.0
    anns[3]["id"] = anns[2]["id"]
    anns[4]["category_id"] = 999
    path.write_text(json.dumps(data))
    report = check_dataset(path, root / "train_2017_small")
    assert {f.code for f in report.errors} == {
        "missing_image",
        "truncated_image",
        "duplicate_annotation_id",
        "unknown_category",
        "box_outside_image",
        "degenerate_box",
    }
    fixed = fix_dataset(path, report.images, tmp_path / "fixed.json")
    assert (
        check_coco(
            json.loads(fixed.output.read_text()), fixed.output, root / "train_2017_small", images=report.images
        ).errors
        == []
    )


def test_what_training_would_refuse_or_misread_is_an_error_and_fix_repairs_it(tmp_path):
    """The checks added for what training refuses (an undecodable RLE), misreads (iscrowd "no" as a crowd)
    or cannot tell apart (two categories named "cat"), ids the evaluators cannot index, and a file that
    is not in the image folder; --fix leaves none of them (and cannot invent images)."""
    huge = 2**63 + 5
    images = [_image(1), _image(huge, "2.png"), _image(3, "../outside.png")]
    annotations = [
        _ann(1, iscrowd="no"),
        _ann(2, iscrowd="yes"),
        _ann(huge, bbox=(20, 20, 8, 8)),
        _ann(4, image_id=huge, category_id=huge),
        _ann(5, segmentation={"size": [40, 50], "counts": "garbage!!"}),
        _ann(6, bbox=(25, 5, 10, 10), segmentation={"counts": 3}),
    ]
    categories = CATEGORIES + [{"id": 3, "name": "cat"}, {"id": huge, "name": "bird"}]
    path = write_coco(tmp_path, images, annotations, categories, write_images=False)
    for name in ("1.png", "2.png"):
        write_image(tmp_path / name, 40, 50)
    report = check_dataset(path, tmp_path)
    assert _codes(report) == {
        "malformed_iscrowd": 2,
        "id_out_of_range": 3,
        "duplicate_category_name": 1,
        "undecodable_segmentation": 1,
        "image_outside_folder": 1,
        "unusable_segmentation": 1,
        "unused_category": 2,
        "images_without_annotations": 1,
    }
    # Reported as outside, not as missing: the scan never looked for it.
    assert report.finding("image_outside_folder").examples == (f"image 3: ../outside.png (leads outside {tmp_path})",)

    result = fix_dataset(report.annotation_file, report.images, tmp_path / "fixed.json")
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    after = check_coco(fixed, tmp_path / "fixed.json", tmp_path, images=report.images)
    assert after.errors == []
    assert [c["name"] for c in fixed["categories"]] == ["cat", "dog", "cat_3", "bird"]
    moved = {a["id"]: (a["image_id"], a["category_id"]) for a in fixed["annotations"]}
    assert moved[4] == (4, 4) and all(0 <= i < 2**63 for i in moved)  # the image and category renumbered together
    assert "segmentation" not in next(a for a in fixed["annotations"] if a["id"] == 5)
    assert (
        dict((text, count) for count, text in result.changes)["annotations with an iscrowd other than 0 or 1 dropped"]
        == 2
    )


def test_an_empty_image_list_is_an_error(tmp_path):
    assert _codes(_check(tmp_path, [], [])) == {"no_images": 1, "unused_category": 2}


def test_an_image_over_the_pixel_limit_is_reported_without_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("DETKIT_MAX_IMAGE_PIXELS", str(40 * 50 - 1))
    report = _check(tmp_path, [_image(1)], [_ann(1)])
    assert _codes(report) == {"image_too_large": 1, "unused_category": 1}
    assert report.finding("image_too_large").examples == ("image 1: 1.png (50 x 40 pixels is over the limit of 1,999)",)
