"""Checking result records over columns: the same verdict and the same message as one check per
record, for what JSON gives and what Python callers pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detkit.errors import DataError
from detkit.evaluation.results_file import read_results_file, validate_results

GOOD = {"image_id": 1, "category_id": 2, "bbox": [0.5, 1, 3, 4.25], "score": 0.5}
RLE = {"size": [4, 4], "counts": "04L4"}


def _records(count: int = 5000) -> list[dict]:
    return [{**GOOD, "image_id": 1 + k % 7} for k in range(count)]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({**GOOD, "image_id": True}, "non-integer 'image_id' (True)"),  # a bool is no id, though it is an int
        ({**GOOD, "category_id": 2.0}, "non-integer 'category_id' (2.0)"),
        ({**GOOD, "score": None}, "non-numeric or non-finite 'score' (None)"),
        ({**GOOD, "score": float("nan")}, "non-numeric or non-finite 'score' (nan)"),
        ({**GOOD, "score": 10**400}, "non-numeric or non-finite 'score'"),  # past float64: no OverflowError
        ({**GOOD, "bbox": [0, 0, True, 1]}, "malformed 'bbox'"),
        ({**GOOD, "bbox": [0, 0, float("inf"), 1]}, "malformed 'bbox'"),
        ({**GOOD, "bbox": [0, 0, 1]}, "malformed 'bbox'"),
        ({**GOOD, "bbox": [[0, 0], 1, 1, 1]}, "malformed 'bbox'"),
        ({**GOOD, "segmentation": {"size": [4], "counts": "04L4"}}, "malformed 'segmentation'"),
        ({k: v for k, v in GOOD.items() if k != "bbox"}, "has neither 'bbox' nor 'segmentation'"),
        ([1, 2], "is a list, not an object"),
    ],
)
def test_the_first_bad_record_of_many_is_named(bad, problem):
    records = json.loads(json.dumps(_records()))  # as a file gives them
    records[3217] = bad
    records[4000] = {**GOOD, "score": "high"}  # a later one is not the one named
    with pytest.raises(DataError) as info:
        validate_results(records, "results.json")
    message = str(info.value)
    assert message.startswith("results.json: record 3217 ") and problem in message and "detkit detect" in message
    assert "\n" not in message


def test_a_file_is_parsed_once_into_records_and_columns(tmp_path):
    records = _records(10)
    records[3] = {**GOOD, "segmentation": RLE}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(records))
    parsed, columns = read_results_file(path)
    assert parsed == records and len(columns) == 10
    assert columns.image_ids == [r["image_id"] for r in records] and columns.category_ids == [2] * 10
    np.testing.assert_array_equal(columns.boxes, np.array([GOOD["bbox"]] * 10))
    assert columns.has_bbox.all() and columns.has_segmentation.tolist() == [k == 3 for k in range(10)]


def test_what_json_never_gives_is_checked_record_by_record():
    """numpy scalars, tuples, polygons and ids past 64 bits are valid from Python callers."""
    records = [
        {"image_id": np.int64(3), "category_id": np.int32(1), "bbox": (1, 2, 3, 4), "score": np.float32(0.25)},
        {"image_id": 10**30, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]], "score": 1},
    ]
    columns = validate_results(records, "results")
    assert columns.image_ids == [3, 10**30] and columns.boxes is None
    assert columns.has_bbox.tolist() == [True, False] and columns.has_segmentation.tolist() == [False, True]
    with pytest.raises(DataError, match=r"^results: record 1 has a non-integer 'image_id' \('3'\)"):
        validate_results([records[0], {**records[0], "image_id": "3"}], "results")


def test_an_empty_list_is_valid_and_a_dict_is_not():
    assert len(validate_results([], "results")) == 0
    with pytest.raises(DataError, match="expected a JSON list of result records, got dict"):
        validate_results({"image_id": 1}, "results")
