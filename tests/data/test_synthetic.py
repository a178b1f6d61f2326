"""The synthetic shapes generator: determinism, exact annotations, manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detkit.data.synthetic import (
    CLASS_NAMES,
    MIN_VISIBLE_AREA,
    generate_synthetic_coco,
    render_image,
    synthetic_dataset_ready,
)

# pycocotools' decode trips numpy 2's copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

PARAMS = dict(num_train=6, num_val=3, image_size=(64, 80), seed=7)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_synthetic_coco(root, **PARAMS)


def test_layout_and_return_value(generated):
    root, paths = generated
    assert set(paths) == {"train", "val"}
    assert paths["train"] == (root / "annotations" / "instances_train.json", root / "train")
    assert paths["val"] == (root / "annotations" / "instances_val.json", root / "val")
    assert len(list((root / "train").glob("*.png"))) == 6
    assert len(list((root / "val").glob("*.png"))) == 3
    assert (root / "manifest.json").is_file()


def test_same_arguments_give_identical_bytes(generated, tmp_path):
    root, _ = generated
    generate_synthetic_coco(tmp_path, **PARAMS)
    assert _all_files(tmp_path) == _all_files(root)


def test_another_seed_gives_other_images(generated, tmp_path):
    root, _ = generated
    generate_synthetic_coco(tmp_path, **{**PARAMS, "seed": 8})
    assert (tmp_path / "train" / "000001.png").read_bytes() != (root / "train" / "000001.png").read_bytes()


def test_ids_categories_and_image_records(generated):
    _, paths = generated
    for ann_file, image_dir in paths.values():
        doc = json.loads(ann_file.read_text())
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4, 5]
        assert [c["name"] for c in doc["categories"]] == list(CLASS_NAMES)
        assert {c["supercategory"] for c in doc["categories"]} == {"shape"}
        image_ids = [im["id"] for im in doc["images"]]
        assert image_ids == list(range(1, len(image_ids) + 1))
        ann_ids = [a["id"] for a in doc["annotations"]]
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        for image in doc["images"]:
            assert (image["height"], image["width"]) == (64, 80)
            assert (image_dir / image["file_name"]).is_file()


def test_boxes_and_areas_are_those_of_the_decoded_visible_mask(generated):
    _, paths = generated
    for ann_file, _ in paths.values():
        doc = json.loads(ann_file.read_text())
        assert doc["annotations"]
        for ann in doc["annotations"]:
            assert ann["iscrowd"] == 0
            assert isinstance(ann["segmentation"]["counts"], str)
            mask = mask_utils.decode(ann["segmentation"])
            assert mask.shape == (64, 80)
            ys, xs = np.nonzero(mask)
            x, y = xs.min(), ys.min()
            assert ann["bbox"] == [x, y, xs.max() - x + 1, ys.max() - y + 1]
            assert ann["area"] == int(mask.sum()) >= MIN_VISIBLE_AREA
            assert ann["area"] == pytest.approx(float(mask_utils.area(ann["segmentation"])))


def test_masks_of_one_image_do_not_overlap():
    # Visible masks after occlusion partition the painted pixels.
    for index in range(20):
        _, instances = render_image(np.random.default_rng([0, 0, index]), 96, 96)
        coverage = np.sum([mask.astype(np.int32) for _, mask in instances], axis=0)
        assert coverage.max() <= 1


def test_rendered_images_cover_classes_counts_and_sizes():
    classes, counts, extents = Counter(), Counter(), []
    for index in range(60):
        image, instances = render_image(np.random.default_rng([1, 0, index]), 128, 128)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        counts[len(instances)] += 1
        for category_id, mask in instances:
            classes[category_id] += 1
            ys, xs = np.nonzero(mask)
            extents.append(max(np.ptp(xs), np.ptp(ys)) + 1)
    assert set(classes) == {1, 2, 3, 4, 5}
    assert min(counts) >= 1 and max(counts) <= 6 and len(counts) >= 4
    assert 0.08 * 128 <= min(extents) and max(extents) <= 0.45 * 128 + 2


def test_manifest_and_ready(generated, tmp_path):
    root, _ = generated
    assert synthetic_dataset_ready(root, **PARAMS)
    assert not synthetic_dataset_ready(root, **{**PARAMS, "num_train": 7})
    assert not synthetic_dataset_ready(root, **{**PARAMS, "seed": 0})
    assert not synthetic_dataset_ready(tmp_path, **PARAMS)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["image_size"] == [64, 80] and manifest["seed"] == 7


def test_missing_image_makes_it_not_ready_and_regeneration_resumes(tmp_path):
    params = {**PARAMS, "num_train": 3, "num_val": 1}
    generate_synthetic_coco(tmp_path, **params)
    before = _all_files(tmp_path)
    (tmp_path / "train" / "000002.png").unlink()
    assert not synthetic_dataset_ready(tmp_path, **params)
    calls = []
    generate_synthetic_coco(tmp_path, **params, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert synthetic_dataset_ready(tmp_path, **params)
    assert _all_files(tmp_path) == before


def test_regeneration_with_other_parameters_drops_the_old_manifest(tmp_path):
    params = {**PARAMS, "num_train": 2, "num_val": 1}
    generate_synthetic_coco(tmp_path, **params)

    def interrupted(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_coco(tmp_path, **{**params, "seed": 99}, progress=interrupted)
    assert not synthetic_dataset_ready(tmp_path, **params)
