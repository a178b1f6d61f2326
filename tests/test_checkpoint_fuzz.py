"""Property-based fuzzing of checkpoint reading: a valid tiny checkpoint with one field damaged
either loads and builds its model, or gives one CheckpointError line naming the file, never another
exception (an internal error, or a garbage model built from cast values).

Each example damages one thing of the payload ``torch.load`` returns: a top-level field or a config
leaf (or subtree) replaced by None, a bool, an integer (up to 2**70), a float (NaN and inf included),
text with control characters, a list, a nested dict, a tensor; a weight replaced by a tensor of
another dtype or shape, or filled with NaN or inf; a key dropped from the payload, the config or the
weights; a key added. 100 examples, ``deadline=None``; the tiny MobileNetV2 model is built once.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, RoIHeadsConfig, TransformConfig
from detkit.config.overrides import config_to_dict
from detkit.errors import CheckpointError
from detkit.pipelines import PIPELINES

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def tiny_config() -> ExperimentConfig:
    """The smallest Faster R-CNN detkit builds: a 2.3M-parameter MobileNetV2 trunk, 16-channel FPN and head."""
    return ExperimentConfig(
        model=ModelConfig(
            num_classes=2,
            backbone=BackboneConfig(name="mobilenet_v2", fpn_channels=16),
            transform=TransformConfig(min_size=(64,), max_size=64),
            roi_heads=RoIHeadsConfig(representation_size=16),
        )
    )


@functools.cache
def tiny_state() -> dict[str, torch.Tensor]:
    """The tiny model's weights, built once per module (strategies draw tensor names and originals from it)."""
    torch.manual_seed(0)
    return PIPELINES["faster_rcnn"].build(tiny_config().model).state_dict()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """A valid checkpoint's payload, and the folder each damaged copy is written to."""
    folder = tmp_path_factory.mktemp("checkpoint_fuzz")
    save_checkpoint(folder / "valid.pt", Checkpoint(tiny_config(), tiny_state(), ["cat", "dog"], [3, 7]))
    model_from_checkpoint(load_checkpoint(folder / "valid.pt"))  # the undamaged file loads
    return torch.load(folder / "valid.pt", weights_only=True), folder


def _paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested dict, inner nodes (whole sections) included."""
    found = []
    for key, value in node.items():
        found.append(prefix + (key,))
        if isinstance(value, dict):
            found.extend(_paths(value, prefix + (key,)))
    return found


TOP_LEVEL = [
    "format",
    "detkit_version",
    "pipeline",
    "config",
    "class_names",
    "category_ids",
    "metrics",
    "model",
    "training_state",
]
CONFIG_PATHS = sorted(_paths(config_to_dict(tiny_config())))
DTYPES = [
    torch.int8,
    torch.uint8,
    torch.int64,
    torch.bool,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.complex64,
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 3, 2**31, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["", "\n", "\x00\r", "faster_rcnn", "yolo", "resnet18"]),
)
junk = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=4),
    st.dictionaries(st.text(max_size=6), _scalars, max_size=3),
    st.dictionaries(st.integers(0, 5), _scalars, max_size=2),
    st.recursive(
        _scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=8,
    ),
    st.builds(torch.zeros, st.integers(0, 3), st.integers(1, 3)),
)


@st.composite
def damaged_tensor(draw, original: torch.Tensor) -> torch.Tensor:
    how = draw(st.sampled_from(["dtype", "shape", "scalar", "empty", "nan", "inf", "overflow"]))
    if how == "dtype":
        return original.to(draw(st.sampled_from(DTYPES)))
    if how == "shape":
        return torch.zeros(draw(st.lists(st.integers(0, 6), min_size=1, max_size=4)))
    if how == "scalar":
        return torch.tensor(draw(st.floats(allow_nan=True)))
    if how == "empty":
        return original.new_zeros((0,))
    if how == "overflow":  # finite in float64, inf once cast to the model's float32
        return original.double().fill_(1e300)
    damaged = original.clone().view(-1) if original.is_floating_point() else original.double().view(-1)
    damaged[: draw(st.integers(1, max(1, damaged.numel())))] = float("nan") if how == "nan" else float("-inf")
    return damaged.view_as(original)


def _set_in(node: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _drop_in(node: dict, path: tuple) -> None:
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


@st.composite
def damage(draw):
    """``(apply, label)``: ``apply(payload)`` damages a copy of the payload in place; ``label`` says how."""
    kind = draw(st.sampled_from(["field", "config", "tensor", "drop_field", "drop_config", "drop_tensor", "add"]))
    if kind == "field":
        key, value = draw(st.sampled_from(TOP_LEVEL)), draw(junk)
        return (lambda payload: payload.__setitem__(key, value)), f"{key} = {value!r}"
    if kind == "config":
        path, value = draw(st.sampled_from(CONFIG_PATHS)), draw(junk)
        return (lambda payload: _set_in(payload["config"], path, value)), f"config {'.'.join(path)} = {value!r}"
    if kind == "tensor":
        name = draw(st.sampled_from(sorted(tiny_state())))
        tensor = draw(damaged_tensor(tiny_state()[name]))
        label = f"{name} = {tensor.dtype} {list(tensor.shape)}"
        return (lambda payload: payload["model"].__setitem__(name, tensor)), label
    if kind == "drop_field":
        key = draw(st.sampled_from(TOP_LEVEL))
        return (lambda payload: payload.pop(key)), f"{key} dropped"
    if kind == "drop_config":
        path = draw(st.sampled_from(CONFIG_PATHS))
        return (lambda payload: _drop_in(payload["config"], path)), f"config {'.'.join(path)} dropped"
    if kind == "drop_tensor":
        name = draw(st.sampled_from(sorted(tiny_state())))
        return (lambda payload: payload["model"].pop(name)), f"{name} dropped"
    where, key, value = draw(st.sampled_from(["config", "model", "top"])), draw(st.text(max_size=8)), draw(junk)

    def add(payload):
        (payload if where == "top" else payload[where])[key] = value

    return add, f"{where}[{key!r}] added = {value!r}"


@FUZZ
@given(damage())
def test_a_damaged_checkpoint_loads_or_gives_one_checkpoint_error_line(valid, damage_and_label):
    payload, folder = valid
    apply, label = damage_and_label
    copied = {**payload, "config": copy.deepcopy(payload["config"]), "model": dict(payload["model"])}
    apply(copied)
    path = folder / "damaged.pt"
    torch.save(copied, path)
    try:
        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint)
    except CheckpointError as error:
        message = str(error)
        assert "\n" not in message and "damaged.pt" in message, (label, message)
        return
    for name, weight in model.state_dict().items():  # what loads holds the file's values, uncast in kind, finite
        saved = checkpoint.model_state[name]
        assert saved.is_floating_point() == weight.is_floating_point() and saved.dtype.is_complex is False, (
            label,
            name,
        )
        assert torch.equal(weight, saved.to(weight.dtype)), (label, name)
        assert not weight.is_floating_point() or bool(torch.isfinite(weight).all()), (label, name)
