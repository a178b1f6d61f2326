import collections
import copy
import errno
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision

from detkit.checkpoint import (
    LOCATION_FIELDS,
    Checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, TransformConfig
from detkit.config.overrides import config_to_dict
from detkit.errors import CheckpointError, StorageError
from detkit.pipelines import PIPELINES


def small_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(
            num_classes=2,
            backbone=BackboneConfig(name="resnet18", fpn_channels=16),
            transform=TransformConfig(min_size=(64,), max_size=64),
        )
    )


def test_round_trip_is_self_describing(tmp_path):
    cfg = small_config()
    model = PIPELINES["faster_rcnn"].build(cfg.model)
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
    save_checkpoint(path, Checkpoint(cfg, PIPELINES["faster_rcnn"].build(cfg.model).state_dict(), ["a", "b"], [1, 2]))
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
    state = PIPELINES["faster_rcnn"].build(cfg.model).state_dict()
    wrong = ExperimentConfig(
        model=ModelConfig(num_classes=5, backbone=cfg.model.backbone, transform=cfg.model.transform)
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(Checkpoint(wrong, state, ["x"] * 5, [1, 2, 3, 4, 5], source="ckpt.pt"))


# ---------------------------------------------------------------------------------------------
# Damaged files: every problem is one CheckpointError line naming the file


@pytest.fixture(scope="module")
def valid_payload(tmp_path_factory) -> dict:
    """What ``torch.load`` returns for a valid tiny checkpoint (the model is built once per module)."""
    cfg = small_config()
    path = tmp_path_factory.mktemp("valid") / "valid.pt"
    save_checkpoint(
        path, Checkpoint(cfg, PIPELINES["faster_rcnn"].build(cfg.model).state_dict(), ["cat", "dog"], [3, 7])
    )
    return torch.load(path, weights_only=True)


def damaged_file(tmp_path, payload: dict, damage) -> Path:
    """``payload`` with ``damage(copy)`` applied, saved as tmp_path/damaged.pt (tensors are shared, not copied:
    a damage replaces a tensor rather than writing into it)."""
    copied = {**payload, "config": copy.deepcopy(payload["config"]), "model": dict(payload["model"])}
    damage(copied)
    path = tmp_path / "damaged.pt"
    torch.save(copied, path)
    return path


def refusal(path: Path) -> str:
    """The one-line CheckpointError that reading ``path`` and building its model gives."""
    with pytest.raises(CheckpointError) as caught:
        model_from_checkpoint(load_checkpoint(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    return message


CLS = "roi_heads.box_predictor.cls_score.weight"


def replace_tensor(name: str, make):
    return lambda payload: payload["model"].__setitem__(name, make(payload["model"][name]))


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64, torch.complex64])
def test_integer_bool_or_complex_values_in_a_float_parameter_are_refused(tmp_path, valid_payload, dtype):
    path = damaged_file(tmp_path, valid_payload, replace_tensor(CLS, lambda t: t.to(dtype)))
    message = refusal(path)
    assert CLS in message and str(dtype).removeprefix("torch.") in message and "float32" in message


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_floating_point_weights_of_another_width_load_as_float32(tmp_path, valid_payload, dtype):
    """float16/bfloat16 widen to float32 exactly, float64 rounds to what the model computes in: allowed."""
    path = damaged_file(tmp_path, valid_payload, replace_tensor(CLS, lambda t: t.to(dtype)))
    model = model_from_checkpoint(load_checkpoint(path))
    weight = model.state_dict()[CLS]
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, valid_payload["model"][CLS].to(dtype).float(), rtol=0, atol=0)


def test_nonfinite_weights_name_the_first_tensor_and_how_many(tmp_path, valid_payload):
    first, second = "backbone.body.conv1.weight", CLS

    def poison(payload):
        payload["model"][first] = payload["model"][first].clone().view(-1).index_fill(0, torch.arange(5), float("nan"))
        payload["model"][first] = payload["model"][first].view_as(valid_payload["model"][first])
        payload["model"][second] = payload["model"][second].clone().fill_(float("inf"))

    message = refusal(damaged_file(tmp_path, valid_payload, poison))
    assert f"{first!r} holds 5 non-finite values" in message and "1 more tensor has some" in message


def test_float64_values_beyond_float32_range_count_as_inf(tmp_path, valid_payload):
    path = damaged_file(tmp_path, valid_payload, replace_tensor(CLS, lambda t: t.double().fill_(1e300)))
    assert "non-finite" in refusal(path)


def test_large_finite_weights_whose_sum_overflows_are_accepted(tmp_path, valid_payload):
    """The fast finiteness test sums a tensor; an overflowing sum of finite values must not refuse it."""
    path = damaged_file(tmp_path, valid_payload, replace_tensor(CLS, lambda t: torch.full_like(t, 3e38)))
    assert model_from_checkpoint(load_checkpoint(path)).state_dict()[CLS].max() == torch.tensor(3e38)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("class_names", 5, "class_names is an int"),
        ("class_names", [1, 2], "class_names[0] is 1, not text"),
        ("class_names", ["cat", {"a": 1}], "class_names[1] is a dict"),
        ("class_names", [], "not a non-empty list"),
        ("category_ids", ["a", "b"], "category_ids[0] is 'a', not an integer"),
        ("category_ids", [3, True], "category_ids[1] is True"),
        ("category_ids", [3, 3], "category id 3 appears twice"),
        ("category_ids", [3], "1 category_ids for 2 class_names"),
        ("model", [1, 2], "model is a list, not a mapping"),
        ("model", {"backbone.body.conv1.weight": [1.0]}, "model['backbone.body.conv1.weight'] is a list, not a tensor"),
        ("model", {3: torch.zeros(1)}, "model has the key 3"),
        ("config", "x", "config is a str, not a mapping"),
        ("metrics", [0.5], "metrics is a list"),
        ("training_state", "resume", "training_state is a str"),
        ("detkit_version", 2, "detkit_version is 2, not text"),
    ],
)
def test_payload_fields_of_the_wrong_type_are_named(tmp_path, valid_payload, field, value, needle):
    assert needle in refusal(damaged_file(tmp_path, valid_payload, lambda payload: payload.__setitem__(field, value)))


@pytest.mark.parametrize("field", ["config", "model", "class_names", "category_ids"])
def test_a_missing_payload_field_is_named(tmp_path, valid_payload, field):
    assert f"lacks {field!r}" in refusal(damaged_file(tmp_path, valid_payload, lambda payload: payload.pop(field)))


def test_an_unknown_config_key_may_come_from_a_newer_detkit(tmp_path, valid_payload):
    import detkit

    path = damaged_file(tmp_path, valid_payload, lambda payload: payload["config"]["model"].update(future_option=1))
    message = refusal(path)
    assert "model.future_option" in message and f"newer detkit than this one ({detkit.__version__})" in message


@pytest.mark.parametrize(
    ("leaf", "value", "needle"),
    [
        (("model", "rpn", "nms_thresh"), "high", "model.rpn.nms_thresh"),
        (("model", "num_classes"), 3, "model.num_classes=3 but it names 2 classes"),
        (("model", "rpn", "nms_thresh"), torch.zeros(2, 2), "config.model.rpn.nms_thresh is a Tensor"),
        (("model",), [1, 2], "model"),
        (("seed",), 10**40, "config.seed is"),
    ],
)
def test_a_wrongly_typed_config_value_names_the_file_and_the_key(tmp_path, valid_payload, leaf, value, needle):
    def damage(payload):
        node = payload["config"]
        for key in leaf[:-1]:
            node = node[key]
        node[leaf[-1]] = value

    assert needle in refusal(damaged_file(tmp_path, valid_payload, damage))


def test_a_tensor_of_the_wrong_shape_is_named_with_both_shapes(tmp_path, valid_payload):
    path = damaged_file(tmp_path, valid_payload, replace_tensor(CLS, lambda t: torch.zeros(5, 7)))
    message = refusal(path)
    assert f"tensor {CLS!r} has shape [5, 7], the model expects [3, 1024]" in message


def test_missing_and_unexpected_tensors_are_counted_and_the_first_named(tmp_path, valid_payload):
    def damage(payload):
        del payload["model"][CLS], payload["model"]["roi_heads.box_predictor.cls_score.bias"]
        payload["model"]["extra.weight"] = torch.zeros(1)

    message = refusal(damaged_file(tmp_path, valid_payload, damage))
    assert f"2 tensors missing (first: {CLS!r})" in message and "tensor 'extra.weight' unexpected" in message


def test_weights_for_another_class_count_name_the_tensor_and_shapes():
    cfg = small_config()
    state = PIPELINES["faster_rcnn"].build(cfg.model).state_dict()
    wrong = ExperimentConfig(model=replace(cfg.model, num_classes=5))
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: weights do not fit a faster_rcnn model with 5 cl") as caught:
        model_from_checkpoint(Checkpoint(wrong, state, ["x"] * 5, [1, 2, 3, 4, 5], source="ckpt.pt"))
    assert f"{CLS!r} has shape [3, 1024], the model expects [6, 1024] (3 more tensors differ)" in str(caught.value)


def test_a_config_that_builds_no_model_is_a_checkpoint_error(tmp_path, valid_payload):
    """Values no detkit writes fail inside torch's layers (here: a storage size that overflows), on the meta
    device, so a damaged config cannot make detkit allocate a model of terabytes."""
    huge = lambda payload: payload["config"]["model"]["backbone"].update(fpn_channels=10**12)  # noqa: E731
    path = damaged_file(tmp_path, valid_payload, huge)
    assert "does not build a faster_rcnn model" in refusal(path)


# ---------------------------------------------------------------------------------------------
# torchvision state dicts: nothing is dropped silently


@pytest.fixture(scope="module")
def keypoint_rcnn_state() -> dict:
    torch.manual_seed(0)
    return torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()


def test_a_keypoint_rcnn_state_dict_is_refused_naming_the_keypoint_keys(tmp_path, keypoint_rcnn_state):
    path = tmp_path / "keypointrcnn_resnet50_fpn.pth"
    torch.save(keypoint_rcnn_state, path)
    message = refusal(path)
    assert "'roi_heads.keypoint_head.0.weight' belongs to a Keypoint R-CNN's keypoint branch" in message
    assert "detkit has no keypoint pipeline" in message


def test_unmapped_torchvision_keys_are_refused_and_the_rest_imports(tmp_path, keypoint_rcnn_state):
    boxes_only = {k: v for k, v in keypoint_rcnn_state.items() if not k.startswith("roi_heads.keypoint_")}
    path = tmp_path / "fasterrcnn.pth"
    torch.save(boxes_only, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.pipeline == "faster_rcnn" and checkpoint.class_names == ["class_1"]
    model_from_checkpoint(checkpoint)  # the same state without the keypoint keys is a whole Faster R-CNN
    v2_head = {**boxes_only, "roi_heads.box_head.0.0.weight": torch.zeros(256, 256, 3, 3)}
    torch.save(v2_head, path)
    assert "'roi_heads.box_head.0.0.weight' belongs to the box head" in refusal(path)
    without_bias = {k: v for k, v in boxes_only.items() if k != "roi_heads.box_predictor.bbox_pred.bias"}
    torch.save(without_bias, path)
    assert "no 'roi_heads.box_predictor.bbox_pred.bias' in the state dict" in refusal(path)


# ---------------------------------------------------------------------------------------------
# A checkpoint never chooses a location


def test_a_checkpoint_chooses_no_location(tmp_path):
    cfg = small_config()
    elsewhere = str(tmp_path / "elsewhere")
    placed = replace(
        cfg,
        output_dir=elsewhere,
        name="their_run",
        model=replace(
            cfg.model,
            init_weights=f"{elsewhere}/init.pt",
            rpn=replace(cfg.model.rpn, nms_thresh=0.6),
            backbone=replace(cfg.model.backbone, weights_path=f"{elsewhere}/trunk.pth"),
            proposals=replace(cfg.model.proposals, cache_dir=f"{elsewhere}/cache", topk=500),
        ),
        data=replace(
            cfg.data,
            train_annotations=f"{elsewhere}/t.json",
            train_images=f"{elsewhere}/t",
            val_annotations=f"{elsewhere}/v.json",
            val_images=f"{elsewhere}/v",
            batch_size=7,
        ),
    )
    path = tmp_path / "placed.pt"
    save_checkpoint(
        path, Checkpoint(placed, PIPELINES["faster_rcnn"].build(cfg.model).state_dict(), ["cat", "dog"], [3, 7])
    )
    loaded = load_checkpoint(path).config
    # init_weights stays, as the record of what the run started from: no command reads it from a checkpoint.
    assert loaded.model.init_weights == f"{elsewhere}/init.pt"
    loaded_without_record = replace(loaded, model=replace(loaded.model, init_weights=""))
    assert elsewhere not in json.dumps(config_to_dict(loaded_without_record))
    defaults = ExperimentConfig()
    assert (loaded.output_dir, loaded.name, loaded.data.train_images) == (defaults.output_dir, "faster_rcnn", "")
    assert loaded.model.proposals.cache_dir == loaded.model.backbone.weights_path == ""
    # everything else is kept
    assert (loaded.model.rpn.nms_thresh, loaded.model.proposals.topk, loaded.data.batch_size) == (0.6, 500, 7)
    # A location no command will use does not make the file unreadable: older detkits allowed '../x' names.
    save_checkpoint(
        path,
        Checkpoint(
            replace(placed, name="../../x"),
            PIPELINES["faster_rcnn"].build(cfg.model).state_dict(),
            ["cat", "dog"],
            [3, 7],
        ),
    )
    assert load_checkpoint(path).config == loaded
    assert set(LOCATION_FIELDS) >= {"output_dir", "name", "model.proposals.cache_dir", "data.val_images"}


def test_fine_tuning_takes_no_location_from_the_checkpoint(tmp_path):
    from detkit.engine.fine_tune import fine_tune_config

    cfg = small_config()
    theirs = replace(cfg.data, train_images="/their/images")
    placed = replace(cfg, output_dir=str(tmp_path / "theirs"), name="their_run", data=theirs)
    path = tmp_path / "placed.pt"
    save_checkpoint(
        path, Checkpoint(placed, PIPELINES["faster_rcnn"].build(cfg.model).state_dict(), ["cat", "dog"], [3, 7])
    )
    tuned = fine_tune_config(path, None, None)
    chosen = (tuned.output_dir, tuned.name, tuned.data.train_images, tuned.model.init_weights)
    assert chosen == ("runs", "faster_rcnn", "", str(path))


# ---------------------------------------------------------------------------------------------
# Writing: a full disk is a StorageError, and leaves no partial file


def _small_checkpoint() -> Checkpoint:
    cfg = small_config()
    return Checkpoint(cfg, {"weight": torch.zeros(64, 64)}, ["cat", "dog"], [3, 7])


def test_a_full_disk_while_saving_is_a_storage_error_that_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, _small_checkpoint())
    before = path.read_bytes()
    real_save = torch.save

    def save_until_full(obj, handle):
        handle.write(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 66880 vs 66776")

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(StorageError) as caught:
        save_checkpoint(path, _small_checkpoint())
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and "the disk is likely full" in message
    assert f"free in {path.parent}" in message and "--output" in message and "unexpected pos" in message
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"] and path.read_bytes() == before
    monkeypatch.setattr(torch, "save", real_save)
    load_checkpoint(path)


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only filesystem"),
        (errno.EIO, "Input/output error"),
    ],
)
def test_an_os_error_while_saving_is_a_storage_error_that_leaves_no_file(tmp_path, monkeypatch, code, needle):
    def writer_refused(obj, handle):
        handle.write(b"PK\x03\x04 partial")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", writer_refused)
    path = tmp_path / "best.pt"
    with pytest.raises(StorageError) as caught:
        save_checkpoint(path, _small_checkpoint())
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: cannot write the checkpoint") and needle in message
    assert "--output" in message and list(tmp_path.iterdir()) == []
    if code == errno.ENOSPC:
        assert f"free in {tmp_path}" in message


# ---------------------------------------------------------------------------------------------
# --resume with a damaged training_state


def _training_parts(cfg: ExperimentConfig) -> dict:
    from detkit.engine.solver import build_optimizer, build_scheduler

    model = PIPELINES["faster_rcnn"].build(cfg.model)
    optimizer = build_optimizer(model, cfg.solver)
    scheduler = build_scheduler(optimizer, cfg.solver, iters_per_epoch=4)
    return {
        "model": model,
        "ema": None,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": torch.amp.GradScaler("cpu", enabled=False),
    }


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A last.pt after one optimizer step (momentum buffers exist), and the config it resumes with."""
    from detkit.engine.training_state import TrainingState, training_checkpoint

    cfg = small_config()
    parts = _training_parts(cfg)
    for parameter in parts["model"].parameters():
        parameter.grad = torch.ones_like(parameter)
    parts["optimizer"].step()
    parts["scheduler"].step()

    class Data:
        class_names, category_ids = ["cat", "dog"], [3, 7]

    state = TrainingState(epoch=1, batches_done=0, step=4, best_ap=0.25, best_metrics={"AP": 0.25})
    path = tmp_path_factory.mktemp("resume") / "run" / "last.pt"
    save_checkpoint(path, training_checkpoint(cfg, parts["model"], Data(), {}, parts, state, world_size=1))
    return cfg, torch.load(path, weights_only=True)


def _resume(cfg, path: Path):
    from detkit.engine.distributed import Rank
    from detkit.engine.events import ignore_events
    from detkit.engine.training_state import TrainingState, resume_into

    state = TrainingState()
    run_dir = resume_into(load_checkpoint(path), cfg, _training_parts(cfg), state, Rank(), ignore_events)
    return run_dir, state


def test_a_valid_training_state_resumes(tmp_path, resumable):
    cfg, payload = resumable
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    run_dir, state = _resume(cfg, path)
    assert run_dir == tmp_path and (state.epoch, state.step, state.best_ap) == (1, 4, 0.25)


def _set(*keys, value):
    def damage(payload):
        node = payload["training_state"]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value(node[keys[-1]]) if callable(value) else value

    return damage


def _drop(key):
    return lambda payload: payload["training_state"].pop(key)


MOMENTUM, MOMENTUM_FIELD = ("optimizer", "state", 0, "momentum_buffer"), "optimizer.state[0]['momentum_buffer']"


@pytest.mark.parametrize(
    ("damage", "field", "needle"),
    [
        (_drop("epoch"), "epoch", "is missing"),
        (_drop("optimizer"), "optimizer", "not an optimizer state"),
        (_drop("scheduler"), "scheduler", "is missing"),
        (_set("step", value="4"), "step", "is '4', not a whole number >= 0"),
        (_set("epoch", value=-1), "epoch", "not a whole number >= 0"),
        (_set("world_size", value=0), "world_size", "not a whole number >= 1"),
        (_set("best_ap", value=float("nan")), "best_ap", "not a finite number"),
        (_set("best_metrics", value=[1]), "best_metrics", "not a mapping"),
        (_set(*MOMENTUM, value=lambda t: torch.zeros(3)), MOMENTUM_FIELD, "has shape [3], its parameter"),
        (_set(*MOMENTUM, value=lambda t: torch.full_like(t, float("nan"))), MOMENTUM_FIELD, "NaN or inf"),
        (_set(*MOMENTUM, value=lambda t: t.to(torch.int8)), MOMENTUM_FIELD, "not a floating-point tensor"),
        (_set("optimizer", "state", 10**6, value={}), "optimizer.state[1000000]", "not the state of one of the"),
        (
            _set("optimizer", "param_groups", value=lambda g: g[:1]),
            "optimizer.param_groups",
            "1 groups, the optimizer 2",
        ),
        (_set("optimizer", "param_groups", 0, "lr", value="fast"), "optimizer.param_groups[0].lr", "not a number"),
        (
            _set("optimizer", "param_groups", 1, "params", value=lambda ids: ids[:-1]),
            "optimizer.param_groups[1].params",
            "parameter indices",
        ),
        (_set("scheduler", "last_epoch", value=[1]), "scheduler.last_epoch", "not a number"),
        (_set("scheduler", "lr_lambdas", value=[None]), "scheduler.lr_lambdas", "not a list of 2 values"),
        (
            _set("scheduler", "base_lrs", value=lambda lrs: [float("inf")] * len(lrs)),
            "scheduler.base_lrs[0]",
            "a number",
        ),
    ],
)
def test_a_damaged_training_state_is_named_with_the_fix(tmp_path, resumable, damage, field, needle):
    cfg, payload = resumable
    damaged = {**payload, "training_state": copy.deepcopy(payload["training_state"])}
    damage(damaged)
    path = tmp_path / "last.pt"
    torch.save(damaged, path)
    with pytest.raises(CheckpointError) as caught:
        _resume(cfg, path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: training_state.{field} ") and needle in message, message
    assert "resume from an earlier last.pt, or start a new run from its weights with --weights" in message


def test_damaged_raw_weights_in_the_training_state_are_refused(tmp_path, resumable):
    cfg, payload = resumable
    raw = {name: tensor.clone() for name, tensor in payload["model"].items()}
    raw[CLS].fill_(float("nan"))
    path = tmp_path / "last.pt"
    torch.save({**payload, "training_state": {**payload["training_state"], "model": raw}}, path)
    with pytest.raises(CheckpointError, match=rf"training_state\.model\).*{CLS}.* non-finite.*--weights"):
        _resume(cfg, path)


# ---------------------------------------------------------------------------------------------
# Fine-tuning applies the same rules to the tensors it copies


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda t: t.to(torch.int8), "holds int8 values"),
        (lambda t: t * float("nan"), "non-finite"),
    ],
)
def test_fine_tuning_refuses_damaged_tensors(tmp_path, valid_payload, make, needle):
    from detkit.engine.fine_tune import load_initial_weights

    path = damaged_file(tmp_path, valid_payload, replace_tensor("backbone.body.conv1.weight", make))
    cfg = small_config()
    cfg = replace(cfg, model=replace(cfg.model, init_weights=str(path)))
    with pytest.raises(CheckpointError) as caught:
        load_initial_weights(PIPELINES["faster_rcnn"].build(cfg.model), cfg)
    assert str(caught.value).startswith(f"{path}: tensor 'backbone.body.conv1.weight' ") and needle in str(caught.value)
