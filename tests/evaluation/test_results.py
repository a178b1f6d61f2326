"""Result records: xyxy -> xywh, label -> category id, masks -> RLE, json round trip and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detkit.errors import DataError
from detkit.evaluation.results import (
    detections_to_coco_results,
    ground_truth_as_results,
    masks_to_rles,
    write_results_json,
)
from detkit.evaluation.results_file import load_results_json
from detkit.structures import Detections

# pycocotools' mask.decode warns under numpy 2; the warning is the library's, not detkit's.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _detections(masks: torch.Tensor | None = None) -> Detections:
    return Detections(
        boxes=torch.tensor([[10.25, 20.5, 30.75, 60.0], [0.0, 0.0, 5.0, 8.0]]),
        scores=torch.tensor([0.9, 0.25]),
        labels=torch.tensor([1, 0]),
        masks=masks,
    )


def test_boxes_become_xywh_and_labels_become_category_ids():
    records = detections_to_coco_results([_detections(), Detections()], image_ids=[42, 7], category_ids=[3, 9])
    assert len(records) == 2
    first, second = records
    assert first == {"image_id": 42, "category_id": 9, "bbox": [10.25, 20.5, 20.5, 39.5], "score": pytest.approx(0.9)}
    assert second["category_id"] == 3 and second["bbox"] == [0.0, 0.0, 5.0, 8.0]
    assert all(type(v) is float for r in records for v in r["bbox"] + [r["score"]])
    assert "segmentation" not in first
    json.dumps(records)  # plain JSON types only


def test_box_precision_is_kept():
    dets = Detections(
        boxes=torch.tensor([[1.123456, 2.0, 3.654321, 4.0]]), scores=torch.tensor([0.5]), labels=torch.tensor([0])
    )
    (record,) = detections_to_coco_results([dets], [1], [1])
    assert record["bbox"][0] == pytest.approx(1.123456, abs=1e-6)
    assert record["bbox"][2] == pytest.approx(3.654321 - 1.123456, abs=1e-6)


def test_mismatched_lengths_and_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        detections_to_coco_results([_detections()], [1, 2], [3, 9])
    with pytest.raises(ValueError):
        detections_to_coco_results([_detections()], [1], [3])  # label 1 has no category id


def test_masks_become_rles_that_decode_to_the_thresholded_masks():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand((2, 13, 17), generator=generator)
    records = detections_to_coco_results([_detections(masks)], [5], [3, 9])
    for record, mask in zip(records, masks):
        rle = record["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == [13, 17]
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded, (mask >= 0.5).numpy().astype(np.uint8))
    json.dumps(records)


def test_masks_with_a_channel_dimension_are_accepted():
    masks = torch.zeros((1, 1, 4, 6))
    masks[0, 0, 1:3, 2:5] = 1.0
    (rle,) = masks_to_rles(masks)
    assert mask_utils.area(rle) == 6


def test_results_json_round_trip(tmp_path):
    records = detections_to_coco_results([_detections(torch.ones((2, 4, 4)))], [5], [3, 9])
    path = tmp_path / "out" / "results.json"
    write_results_json(path, records)
    assert load_results_json(path) == records
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left behind


def test_load_results_json_errors_name_file_record_and_fix(tmp_path):
    with pytest.raises(DataError, match="missing.json.*not found"):
        load_results_json(tmp_path / "missing.json")

    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DataError, match="broken.json.*JSON"):
        load_results_json(broken)

    not_list = tmp_path / "dict.json"
    not_list.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(DataError, match="dict.json.*list"):
        load_results_json(not_list)

    good = {"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5}
    cases = {
        "score": {k: v for k, v in good.items() if k != "score"},
        "image_id": {k: v for k, v in good.items() if k != "image_id"},
        "bbox": {"image_id": 1, "category_id": 2, "score": 0.5},
        "malformed 'bbox'": {**good, "bbox": [0, 0, 1]},
        "non-integer 'category_id'": {**good, "category_id": "cat"},
    }
    for problem, record in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps([good, record]))
        with pytest.raises(DataError) as info:
            load_results_json(path)
        message = str(info.value)
        assert "bad.json" in message and "record 1" in message and problem in message
        assert "detkit detect" in message  # the fix


def test_segmentation_only_records_are_valid(tmp_path):
    rle = masks_to_rles(torch.ones((1, 3, 3)))[0]
    path = tmp_path / "segm.json"
    write_results_json(path, [{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.3}])
    assert load_results_json(path)[0]["segmentation"] == rle


def _tiny_coco() -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": 20, "height": 10}],
        "categories": [{"id": 4, "name": "square"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 4,
                "bbox": [2, 2, 4, 4],
                "area": 16,
                "iscrowd": 0,
                "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 4,
                "bbox": [10, 0, 5, 5],
                "area": 25,
                "iscrowd": 1,
                "segmentation": [[10, 0, 15, 0, 15, 5, 10, 5]],
            },
        ],
    }
    coco.createIndex()
    return coco


def test_ground_truth_as_results_skips_crowd_and_scores_one(capsys):
    coco = _tiny_coco()
    capsys.readouterr()
    (record,) = ground_truth_as_results(coco)
    assert record == {"image_id": 1, "category_id": 4, "bbox": [2.0, 2.0, 4.0, 4.0], "score": 1.0}
    (with_mask,) = ground_truth_as_results(coco, include_masks=True)
    assert isinstance(with_mask["segmentation"]["counts"], str)
    assert with_mask["segmentation"]["size"] == [10, 20]
    json.dumps(with_mask)
