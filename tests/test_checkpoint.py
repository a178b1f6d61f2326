import collections

import pytest
import torch

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, TransformConfig
from detkit.errors import CheckpointError
from detkit.pipelines import PIPELINES


def small_config() -> ExperimentConfig:
    return ExperimentConfig(model=ModelConfig(
        num_classes=2, backbone=BackboneConfig(name="resnet18", fpn_channels=16), transform=TransformConfig(min_size=(64,), max_size=64)
    ))


def test_round_trip_is_self_describing(tmp_path):
    cfg = small_config()
    model = PIPELINES["faster_rcnn"](cfg.model)
    path = tmp_path / "model.pt"
    save_checkpoint(path, Checkpoint(cfg, model.state_dict(), ["cat", "dog"], [3, 7], metrics={"AP": 0.5}))
    loaded = load_checkpoint(path)
    assert loaded.config == cfg and loaded.class_names == ["cat", "dog"] and loaded.category_ids == [3, 7]
    assert loaded.metrics == {"AP": 0.5} and loaded.pipeline == "faster_rcnn"
    rebuilt = model_from_checkpoint(loaded)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


class Payload:
    """Any class instance: unpickling it would run code chosen by the file's author."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "detkit-checkpoint-v1", "model": collections.OrderedDict(), "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    cfg = small_config()
    path = tmp_path / "good.pt"
    save_checkpoint(path, Checkpoint(cfg, PIPELINES["faster_rcnn"](cfg.model).state_dict(), ["a", "b"], [1, 2]))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a detkit checkpoint"):
        load_checkpoint(foreign)


def test_weights_for_another_class_count_are_rejected(tmp_path):
    cfg = small_config()
    state = PIPELINES["faster_rcnn"](cfg.model).state_dict()
    wrong = ExperimentConfig(model=ModelConfig(num_classes=5, backbone=cfg.model.backbone, transform=cfg.model.transform))
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(Checkpoint(wrong, state, ["x"] * 5, [1, 2, 3, 4, 5], source="ckpt.pt"))
