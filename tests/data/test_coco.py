"""CocoDetection: item contracts, sanitizing of bad records, label mapping, errors, real COCO."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from detkit.data.coco import CocoDetection, SanitizeReport
from detkit.data.synthetic import generate_synthetic_coco
from detkit.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

REAL_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiny_coco" / "small_coco"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic_coco")
    return generate_synthetic_coco(root, num_train=6, num_val=2, image_size=(64, 64), seed=1)["train"]


def _write_dataset(root: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    """Write a json and a blank PNG of the declared size for each image record."""
    for image in images:
        cv2.imwrite(str(root / image["file_name"]), np.full((image["height"], image["width"], 3), 90, np.uint8))
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def _image(image_id: int, height: int = 40, width: int = 50) -> dict:
    return {"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width}


def _ann(ann_id: int, image_id: int = 1, bbox=(5, 6, 10, 12), category_id: int = 3, **extra) -> dict:
    record = {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0, "area": 1.0}
    if bbox is not None:
        record["bbox"] = list(bbox)
    record.update(extra)
    return record


# --- on the synthetic dataset -------------------------------------------------------------


def test_items_follow_the_target_contract(synthetic):
    ann_file, image_dir = synthetic
    dataset = CocoDetection(ann_file, image_dir, with_masks=True)
    assert len(dataset) == 6 and dataset.image_ids == [1, 2, 3, 4, 5, 6]
    assert dataset.category_ids == [1, 2, 3, 4, 5]
    assert dataset.class_names == ["circle", "triangle", "square", "star", "cross"]
    assert dataset.num_classes == 5
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert target.image_id == dataset.image_ids[index]
        assert target.boxes.dtype == torch.float32 and target.boxes.shape == (len(target), 4)
        assert target.labels.dtype == torch.int64 and bool(((target.labels >= 0) & (target.labels < 5)).all())
        assert target.iscrowd.dtype == torch.bool and not bool(target.iscrowd.any())
        assert target.masks.dtype == torch.uint8 and target.masks.shape == (len(target), 64, 64)
        # Synthetic boxes are the tight pixel boxes of the masks: x2 = x_max + 1.
        for box, mask in zip(target.boxes, target.masks):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.equal(box, expected)


def test_boxes_are_coco_xywh_converted_to_xyxy(synthetic):
    ann_file, image_dir = synthetic
    dataset = CocoDetection(ann_file, image_dir)
    image_id = dataset.image_ids[0]
    anns = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=[image_id]))
    expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
    _, target = dataset[0]
    assert torch.equal(target.boxes, expected)
    assert target.masks is None
    assert dataset.report.num_annotations == len(dataset.coco.anns)


def test_category_mapping_round_trip_and_a_given_mapping(synthetic):
    ann_file, image_dir = synthetic
    dataset = CocoDetection(ann_file, image_dir)
    for label, category_id in enumerate(dataset.category_ids):
        assert dataset.category_id_to_label(category_id) == label
        assert dataset.label_to_category_id(label) == category_id
    with pytest.raises(KeyError):
        dataset.category_id_to_label(99)

    reversed_ids = [5, 4, 3, 2, 1]
    remapped = CocoDetection(ann_file, image_dir, category_ids=reversed_ids)
    assert remapped.category_ids == reversed_ids
    assert remapped.class_names == ["cross", "star", "square", "triangle", "circle"]
    _, default_target = dataset[0]
    _, remapped_target = remapped[0]
    assert torch.equal(remapped_target.labels, 4 - default_target.labels)

    subset = CocoDetection(ann_file, image_dir, category_ids=[2])
    assert subset.report.num_unknown_category == sum(1 for a in subset.coco.anns.values() if a["category_id"] != 2)
    # A model's mapping may hold classes the dataset never uses: they get a placeholder name.
    wider = CocoDetection(ann_file, image_dir, category_ids=[1, 6])
    assert wider.class_names == ["circle", "category_6"]


# --- hand-written records ------------------------------------------------------------------


def test_clipping_dropping_crowd_unknown_and_malformed_records_are_counted(tmp_path):
    crowd_rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((4, 6), np.uint8), ((2, 34), (3, 41)))))
    crowd_rle["counts"] = crowd_rle["counts"].decode("ascii")
    annotations = [
        _ann(1, bbox=(5, 6, 10, 12)),  # kept as is
        _ann(2, bbox=(-4, 30, 20, 20), category_id=7),  # clipped to x1=0, y2=40
        _ann(3, bbox=(60, 5, 10, 10)),  # entirely right of the image: dropped when the 50 px image is read
        _ann(4, bbox=(10, 10, 0, 5)),  # zero width: degenerate
        _ann(5, bbox=(49.5, 10, 8, 5)),  # half a pixel left after clipping: dropped when the image is read
        _ann(6, bbox=None),  # no bbox: dropped
        _ann(7, bbox=("a", 1, 2, 3)),  # unusable bbox: dropped
        _ann(8, bbox=(3, 2, 6, 4), iscrowd=1, segmentation=crowd_rle),  # crowd: kept
        _ann(9, category_id=42),  # unknown category
        _ann(10, image_id=999),  # unknown image: malformed
        {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]},  # no id: malformed
        _ann(1, bbox=(1, 1, 5, 5)),  # duplicate id: malformed
        _ann(11, image_id=3, category_id=42),  # image 3 holds only an unknown category
    ]
    path = _write_dataset(tmp_path, [_image(1), _image(2), _image(3)], annotations, CATEGORIES)
    dataset = CocoDetection(path, tmp_path)
    assert dataset.report == SanitizeReport(
        num_annotations=13,
        num_clipped=1,
        num_dropped_degenerate=3,  # 4, 6, 7: no box whatever the image's size
        num_outside_json_frame=2,  # 3, 5: the image file's size decides (test_json_size_never_drops_boxes)
        num_crowd=1,
        num_unknown_category=2,
        num_images_without_annotations=2,
        num_dropped_malformed=3,
        num_without_segmentation=4,  # records 1, 2, 3 and 5 carry no segmentation
    )
    assert dataset.image_ids == [1, 2, 3]
    # Records evaluation could trip on are gone from the COCO object; valid ground truth stays.
    assert sorted(dataset.coco.anns) == [1, 2, 3, 4, 5, 8, 9, 11]

    _, target = dataset[0]
    assert target.image_id == 1
    assert torch.equal(target.boxes, torch.tensor([[5, 6, 15, 18], [0, 30, 16, 40], [3, 2, 9, 6]], dtype=torch.float32))
    assert target.labels.tolist() == [0, 1, 0]
    assert target.iscrowd.tolist() == [False, False, True]
    assert len(target.without_crowd()) == 2


@pytest.mark.parametrize("with_masks", [False, True])
def test_images_without_annotations_give_empty_targets(tmp_path, with_masks):
    path = _write_dataset(
        tmp_path,
        [_image(1), _image(2, 30, 20), _image(3)],
        [_ann(1, image_id=1), _ann(2, 3, category_id=8)],
        CATEGORIES,
    )
    dataset = CocoDetection(path, tmp_path, with_masks=with_masks)
    assert dataset.image_ids == [1, 2, 3]
    for index in (1, 2):
        image, target = dataset[index]
        assert len(target) == 0
        assert target.boxes.shape == (0, 4) and target.boxes.dtype == torch.float32
        assert target.labels.shape == (0,) and target.labels.dtype == torch.int64
        assert target.iscrowd.shape == (0,) and target.iscrowd.dtype == torch.bool
        if with_masks:
            assert target.masks.shape == (0, *image.shape[1:]) and target.masks.dtype == torch.uint8
        else:
            assert target.masks is None
    assert dataset[1][0].shape == (3, 30, 20)


def test_masks_from_polygons_rle_and_missing_segmentations(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 5:25] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # Uncompressed RLE: column-major run lengths starting with zeros.
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    uncompressed = {"size": [40, 50], "counts": np.diff(np.concatenate([[0], changes])).tolist()}
    assert mask_utils.area(mask_utils.frPyObjects(uncompressed, 40, 50)) == 200
    annotations = [
        _ann(1, bbox=(5, 10, 20, 10), segmentation=[[5, 10, 25, 10, 25, 20, 5, 20]]),
        _ann(2, bbox=(5, 10, 20, 10), segmentation=compressed),
        _ann(3, bbox=(5, 10, 20, 10), segmentation=uncompressed, iscrowd=1),
        _ann(4, bbox=(5, 10, 20, 10)),  # no segmentation: the box becomes the mask
        _ann(5, bbox=(5, 10, 20, 10), segmentation=[[5, 10, 25, 10]]),  # 2-point polygon: unusable
    ]
    path = _write_dataset(tmp_path, [_image(1)], annotations, CATEGORIES)
    dataset = CocoDetection(path, tmp_path, with_masks=True)
    assert dataset.report.num_without_segmentation == 2
    _, target = dataset[0]
    assert target.masks.shape == (5, 40, 50)
    for index in (1, 2, 3, 4):
        assert torch.equal(target.masks[index], torch.from_numpy(mask)), index
    # Polygon rasterization covers the pixel-centre area, give or take the border row/column.
    assert abs(int(target.masks[0].sum()) - 200) <= 30


def test_boxes_are_clipped_to_the_real_image_when_the_json_size_is_wrong(tmp_path):
    path = _write_dataset(tmp_path, [_image(1, 40, 50)], [_ann(1, bbox=(10, 10, 35, 25))], CATEGORIES)
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((30, 40, 3), np.uint8))
    image, target = CocoDetection(path, tmp_path)[0]
    assert image.shape == (3, 30, 40)
    assert target.boxes.tolist() == [[10.0, 10.0, 40.0, 30.0]]


# --- errors --------------------------------------------------------------------------------


def test_missing_annotation_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        CocoDetection(tmp_path / "nope.json", tmp_path)
    assert "nope.json" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "top level is not a JSON object"),
        ('{"images": [], "categories": []}', "has no 'annotations'"),
        ('{"images": {}, "annotations": [], "categories": []}', "has a non-list 'images'"),
        (
            '{"images": [{"file_name": "a.png"}], "annotations": [], "categories": []}',
            r"images\[0\] needs an integer 'id'",
        ),
        ('{"images": [], "annotations": [], "categories": [{"name": "x"}]}', r"categories\[0\] has no integer 'id'"),
    ],
)
def test_malformed_files_are_data_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        CocoDetection(path, tmp_path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_image_is_a_data_error_at_load(tmp_path):
    path = _write_dataset(tmp_path, [_image(1)], [], CATEGORIES)
    (tmp_path / "1.png").unlink()
    dataset = CocoDetection(path, tmp_path)
    with pytest.raises(DataError, match="1.png: image not found"):
        dataset[0]


def test_unreadable_image_is_a_data_error(tmp_path):
    path = _write_dataset(tmp_path, [_image(1)], [], CATEGORIES)
    (tmp_path / "1.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not a readable image"):
        CocoDetection(path, tmp_path)[0]


# --- real COCO -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_coco() -> CocoDetection:
    ann_file = REAL_ROOT / "instances_train2017_small.json"
    if not ann_file.is_file():
        pytest.skip(f"{ann_file} is absent")
    return CocoDetection(ann_file, REAL_ROOT / "train_2017_small", with_masks=True)


def test_real_coco_loads_every_image_with_masks(real_coco):
    assert len(real_coco) == 16 and real_coco.num_classes == 80
    assert real_coco.report.num_annotations == 197 and real_coco.report.num_crowd == 1
    total, crowd_seen = 0, False
    for index in range(len(real_coco)):
        image, target = real_coco[index]
        height, width = image.shape[1:]
        info = real_coco.coco.imgs[target.image_id]
        assert (height, width) == (info["height"], info["width"])
        assert target.masks.shape == (len(target), height, width) and target.masks.dtype == torch.uint8
        assert bool((target.masks.flatten(1).sum(1) > 0).all())
        assert bool((target.boxes[:, 2] <= width).all() and (target.boxes[:, 3] <= height).all())
        total += len(target)
        if target.iscrowd.any():
            crowd_seen = True
            crowd_mask = target.masks[target.iscrowd][0]
            ann = next(a for a in real_coco.coco.imgToAnns[target.image_id] if a["iscrowd"])
            assert torch.equal(crowd_mask, torch.from_numpy(real_coco.coco.annToMask(ann)))
    assert crowd_seen
    expected = real_coco.report.num_annotations - real_coco.report.num_dropped_degenerate
    assert total == expected


def test_proposals_are_attached_before_the_transforms(synthetic):
    from detkit.data.transforms import hflip

    annotations, images = synthetic
    seen = []

    def lookup(image: np.ndarray) -> np.ndarray:
        seen.append(image.shape)
        return np.array([[1.0, 2.0, 11.0, 12.0]], dtype=np.float32)

    dataset = CocoDetection(annotations, images, proposals=lookup, transforms=hflip)
    image, target = dataset[0]
    width = image.shape[-1]
    assert seen == [(image.shape[1], width, 3)]  # the decoded uint8 [H, W, 3] pixels were looked up
    torch.testing.assert_close(target.proposals, torch.tensor([[width - 11.0, 2.0, width - 1.0, 12.0]]))
    assert CocoDetection(annotations, images)[0][1].proposals is None


def test_json_size_never_drops_boxes(tmp_path):
    """A json whose width/height disagree with the file (16 x 16 for a 40 x 50 image): the file's size
    decides, so boxes beyond the json's frame but inside the image are kept, and clipped to the image."""
    path = _write_dataset(
        tmp_path, [_image(1)], [_ann(1, bbox=(20, 20, 10, 10)), _ann(2, bbox=(45, 30, 20, 20))], CATEGORIES
    )
    document = json.loads(path.read_text())
    document["images"][0].update(width=16, height=16)
    path.write_text(json.dumps(document))
    dataset = CocoDetection(path, tmp_path)
    assert dataset.report.num_outside_json_frame == 2 and dataset.report.num_dropped_degenerate == 0
    _, target = dataset[0]
    assert target.boxes.tolist() == [[20, 20, 30, 30], [45, 30, 50, 40]]


@pytest.mark.parametrize(
    "flag, kept",
    [
        (0, True),
        (1, True),
        (True, True),
        (False, True),
        (None, True),
        (0.0, True),
        ("yes", False),
        ("no", False),
        ("1", False),
        (2, False),
        ([1], False),
    ],
)
def test_iscrowd_must_be_0_or_1(tmp_path, flag, kept):
    """The string "no" is truthy: reading any true-ish value as a crowd would turn objects into ignore regions."""
    record = _ann(1)
    record["iscrowd"] = flag
    dataset = CocoDetection(_write_dataset(tmp_path, [_image(1)], [record], CATEGORIES), tmp_path)
    assert (dataset.report.num_dropped_malformed == 0) is kept
    assert len(dataset[0][1].boxes) == int(kept)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(
        ["../1.png", "../../../etc/passwd", "/etc/passwd", "a/../../1.png", "sub/../..", ".", "", "x\0.png"]
    )
    | st.builds("/".join, st.lists(st.sampled_from(["..", ".", "a", "b.png"]), min_size=1, max_size=6))
)
def test_file_names_leading_outside_the_image_folder_are_refused(tmp_path_factory, name):
    """Any file_name that resolves (lexically) outside the image folder is a DataError naming the record,
    unless --allow-outside-images ($DETKIT_ALLOW_OUTSIDE_IMAGES=1) opts in."""
    import os

    from detkit.data.image_paths import ALLOW_OUTSIDE_ENV, leads_outside

    root = tmp_path_factory.mktemp("outside")
    folder = root / "images"
    folder.mkdir()
    path = _write_dataset(folder, [_image(1)], [_ann(1)], CATEGORIES)
    document = json.loads(path.read_text())
    document["images"][0]["file_name"] = name
    path.write_text(json.dumps(document))
    inside = os.path.commonpath([str(folder), os.path.abspath(os.path.join(folder, name))]) == str(folder)
    if "\0" in name or not inside or os.path.abspath(os.path.join(folder, name)) == str(folder):
        assert leads_outside(folder, name)
        with pytest.raises(DataError, match="leads outside the image folder.*--allow-outside-images"):
            CocoDetection(path, folder)
        if "\0" not in name:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(ALLOW_OUTSIDE_ENV, "1")
                assert CocoDetection(path, folder).image_path(0) == folder / name
    else:
        assert not leads_outside(folder, name)
        assert CocoDetection(path, folder).image_path(0) == folder / name
