"""The on-disk feature cache (engine/rcnn/features.py) and the stages' typed context."""

from dataclasses import fields

import pytest
import torch

import detkit.engine.rcnn.features as feature_cache
from detkit.engine.rcnn.features import (
    SHARD_IMAGES,
    read_feature_shards,
    shard_bytes,
    write_feature_shards,
)
from detkit.engine.rcnn.stages import features_key, features_stage
from detkit.pipelines.rcnn.features import RegionSet, image_regions
from tests.engine.rcnn.conftest import MakeContext


def test_shards_hold_every_region_of_every_image_as_computed_in_memory(make_context: MakeContext):
    context, _ = make_context()
    model, dataset, folder = context.model.eval(), context.train_set, context.run_dir / "features" / "k"
    write_feature_shards(model, dataset, folder)
    assert len(dataset) <= SHARD_IMAGES and [p.name for p in folder.iterdir()] == ["shard-00000.pt"]
    regions = read_feature_shards(folder, len(dataset))
    expected = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        target = target.without_crowd()
        expected.append(image_regions(model, image, target.boxes, target.labels, target.proposals, index))
    merged = RegionSet.concat(expected)
    for field in fields(RegionSet):
        assert torch.equal(getattr(regions, field.name), getattr(merged, field.name)), field.name
    assert regions.features.dtype == torch.float16 and shard_bytes(folder) > 0


def test_existing_shards_are_kept_and_missing_ones_are_named(make_context: MakeContext, monkeypatch):
    context, _ = make_context()
    folder = context.run_dir / "features" / "k"
    write_feature_shards(context.model, context.train_set, folder)

    def never(*args: object) -> RegionSet:
        raise AssertionError("a current shard was computed again")

    monkeypatch.setattr(feature_cache, "image_regions", never)
    progress: list[int] = []
    write_feature_shards(context.model, context.train_set, folder, on_progress=progress.append)
    assert progress == [len(context.train_set)]
    (folder / "shard-00000.pt").unlink()
    with pytest.raises(FileNotFoundError, match="shard-00000.pt"):
        read_feature_shards(folder, len(context.train_set))


def test_the_features_stage_keys_its_folder_and_removes_stale_ones(make_context: MakeContext):
    context, _ = make_context()
    stale = context.run_dir / "features" / "0123456789abcdef"
    stale.mkdir(parents=True)
    key = features_key(context, "data")
    regions = features_stage(context, key)
    assert regions is not None and len(regions) == context.log.entries["features"]["regions"]
    assert [p.name for p in (context.run_dir / "features").iterdir()] == [key[:16]] and not stale.exists()
    assert context.log.entries["features"]["key"] == key
    assert features_key(context, "other data") != key
    context.model.cnn.classifier.bias.data += 1  # other CNN weights: other features
    assert features_key(context, "data") != key
