"""Every field's declared constraint is enforced, values inside it are taken, and hostile files are refused fast."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import threading
import time
import typing
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detkit.config import ExperimentConfig, schema
from detkit.config.constraints import Choice, Flag, MultipleOf, Pattern, Range, field_hints, split_annotation
from detkit.config.overrides import MAX_CONFIG_BYTES, check_config, config_from_dict, load_config_file, update_config
from detkit.errors import ConfigError
from detkit.pipelines import PRESETS

FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def leaf_fields(cls: type = ExperimentConfig, where: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, annotation) of every non-dataclass field under ``cls``."""
    found = []
    for name, annotation in field_hints(cls).items():
        path = f"{where}.{name}" if where else name
        base, _ = split_annotation(annotation)
        found += leaf_fields(base, path) if dataclasses.is_dataclass(base) else [(path, annotation)]
    return found


def element(annotation) -> tuple[typing.Any, tuple, str]:
    """The scalar type at the bottom of a (nested) tuple annotation, its metadata, and the index suffix."""
    base, metadata = split_annotation(annotation)
    if typing.get_origin(base) is tuple:
        inner, inner_metadata, suffix = element(typing.get_args(base)[0])
        return inner, inner_metadata, "[0]" + suffix
    return base, metadata, ""


def fill(annotation, scalar):
    """A value of ``annotation``'s shape whose every scalar is ``scalar`` (one element per variadic tuple)."""
    base, _ = split_annotation(annotation)
    if typing.get_origin(base) is not tuple:
        return scalar
    args = typing.get_args(base)
    if len(args) == 2 and args[1] is Ellipsis:
        return [fill(args[0], scalar)]
    return [fill(arg, scalar) for arg in args]


def nested(path: str, value) -> dict:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def setting(path: str, value) -> ExperimentConfig:
    return config_from_dict(ExperimentConfig, nested(path, value))


def get(cfg, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


LEAVES = leaf_fields()
RANGED = [(path, hint) for path, hint in LEAVES if any(isinstance(m, Range) for m in element(hint)[1])]
FLOATS = [(path, hint) for path, hint in LEAVES if element(hint)[0] is float]
CHOICES = [(path, hint) for path, hint in LEAVES if any(isinstance(m, Choice) for m in element(hint)[1])]


def _range(annotation) -> tuple[Range, typing.Any, int | None]:
    base, metadata, _ = element(annotation)
    multiple = next((m.factor for m in metadata if isinstance(m, MultipleOf)), None)
    return next(m for m in metadata if isinstance(m, Range)), base, multiple


def just_outside(annotation) -> list:
    bounds, base, _ = _range(annotation)
    values = []
    if base is int:
        values += [] if bounds.ge is None else [bounds.ge - 1]
        values += [] if bounds.le is None else [bounds.le + 1]
    else:
        values += [] if bounds.ge is None else [math.nextafter(bounds.ge, -math.inf)]
        values += [] if bounds.le is None else [math.nextafter(bounds.le, math.inf)]
    values += [v for v in (bounds.gt, bounds.lt) if v is not None]
    return values


def inside(annotation) -> st.SearchStrategy:
    bounds, base, multiple = _range(annotation)
    if base is int:
        low = bounds.ge if bounds.ge is not None else bounds.gt + 1
        high = bounds.le if bounds.le is not None else bounds.lt - 1 if bounds.lt is not None else low + 10**6
        if multiple:
            return st.integers(-(-low // multiple), high // multiple).map(lambda k: k * multiple)
        return st.integers(low, high)
    low = bounds.ge if bounds.ge is not None else bounds.gt
    high = bounds.le if bounds.le is not None else bounds.lt if bounds.lt is not None else 1e12
    return st.floats(low, high, exclude_min=bounds.gt is not None, exclude_max=bounds.lt is not None)


def test_the_walk_sees_the_constrained_fields():
    paths = {path for path, _ in RANGED}
    assert {"solver.lr", "solver.epochs", "model.transform.min_size", "model.anchors.sizes", "seed"} <= paths
    assert {"model.yolo.width_multiple", "data.mosaic_scale", "model.transform.image_mean"} <= {p for p, _ in FLOATS}
    assert len(RANGED) > 90 and len(CHOICES) == 13  # model.pipeline is checked by the pipeline table


@pytest.mark.parametrize(("path", "annotation"), RANGED, ids=[p for p, _ in RANGED])
def test_just_outside_the_range_is_refused_naming_the_key(path, annotation):
    suffix = element(annotation)[2]
    for value in just_outside(annotation):
        with pytest.raises(ConfigError, match="out of range") as raised:
            setting(path, fill(annotation, value))
        assert any(f"{path}{suffix}={shown!r}" in str(raised.value) for shown in (value, float(value)))


@pytest.mark.parametrize(("path", "annotation"), RANGED, ids=[p for p, _ in RANGED])
@FEW
@given(data=st.data())
def test_values_inside_the_range_are_taken(path, annotation, data):
    value = data.draw(inside(annotation))
    cfg = setting(path, fill(annotation, value))
    assert get(cfg, path) == (value if not element(annotation)[2] else _as_tuples(fill(annotation, value)))


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


@pytest.mark.parametrize(("path", "annotation"), FLOATS, ids=[p for p, _ in FLOATS])
def test_non_finite_floats_are_refused_everywhere(path, annotation):
    for value in (math.nan, math.inf, -math.inf, 10**400):
        with pytest.raises(ConfigError, match="is not a finite number") as raised:
            setting(path, fill(annotation, value))
        assert f"{path}{element(annotation)[2]}=" in str(raised.value)


@pytest.mark.parametrize(("path", "annotation"), CHOICES, ids=[p for p, _ in CHOICES])
@FEW
@given(text=st.text(max_size=12))
def test_choices_take_their_names_only(path, annotation, text):
    options = next(m for m in split_annotation(annotation)[1] if isinstance(m, Choice)).options
    for option in options:
        assert get(setting(path, option), path) == option
    if text not in options:
        with pytest.raises(ConfigError, match=f"is not one of {', '.join(options)}") as raised:
            setting(path, text)
        assert f"{path}=" in str(raised.value) and "\n" not in str(raised.value)


def test_yolo_sides_are_multiples_of_the_coarsest_stride():
    for bad in (100, 33, 48):
        with pytest.raises(ConfigError, match="model.yolo.image_size=.* is not a multiple of 32"):
            setting("model.yolo.image_size", bad)
    with pytest.raises(ConfigError, match=r"model.yolo.train_sizes\[1\]=90 is not a multiple of 32"):
        setting("model.yolo.train_sizes", [64, 90])
    assert setting("model.yolo.train_sizes", [32, 64]).model.yolo.train_sizes == (32, 64)


def test_whole_value_constraints():
    with pytest.raises(ConfigError, match=r"data.mosaic_scale=\(1.5, 0.5\) is not in ascending order"):
        setting("data.mosaic_scale", [1.5, 0.5])
    empty = [("model.transform.min_size", []), ("model.anchors.sizes", []), ("model.anchors.sizes", [[16], []])]
    for path, value in empty:
        with pytest.raises(ConfigError, match="is empty"):
            setting(path, value)
    assert setting("model.backbone.returned_stages", []).model.backbone.returned_stages == ()  # () = the default stages


# ---- names and devices --------------------------------------------------------------------------------

NAME_CHARS = st.characters(codec="utf-8", exclude_characters="/\\", exclude_categories=["Cc", "Cs"])
ORDINARY_NAMES = st.text(NAME_CHARS, min_size=1, max_size=60).filter(lambda s: s not in (".", ".."))


@FEW
@given(name=ORDINARY_NAMES)
def test_ordinary_run_names_are_taken(name):
    assert setting("name", name).name == name


@st.composite
def bad_names(draw):
    head, tail = draw(st.text(NAME_CHARS, max_size=8)), draw(st.text(NAME_CHARS, max_size=8))
    kind = draw(st.sampled_from(["slash", "backslash", "dots", "nul", "control", "empty", "long"]))
    if kind == "dots":
        return draw(st.sampled_from([".", ".."]))
    if kind == "empty":
        return ""
    if kind == "long":
        return "é" * 128  # 256 bytes of UTF-8
    middle = {"slash": draw(st.sampled_from(["/", "../", "/.."])), "backslash": "\\", "nul": "\0"}.get(kind)
    return head + (middle or chr(draw(st.sampled_from([*range(1, 32), 127, 133])))) + tail


@settings(max_examples=40, deadline=None)
@given(name=bad_names())
def test_names_that_are_not_one_folder_are_refused(name):
    with pytest.raises(ConfigError, match="is not a single folder name") as raised:
        setting("name", name)
    assert str(raised.value).startswith("name=") and "\n" not in str(raised.value)


def test_run_name_escapes_and_limits():
    for name in ("../../x", "/etc/cron.d", "..", "a\\b", "a\0b", "a\nb", ""):
        with pytest.raises(ConfigError, match="--name"):
            update_config(ExperimentConfig(), {"name": name})  # what `detkit train --name` does
    assert setting("name", "é" * 127 + "a").name.endswith("a")  # 255 bytes is a file name's limit, not 255 characters
    assert setting("name", "run.v2 (final)").name == "run.v2 (final)"


def test_devices_are_what_resolve_device_takes():
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:127"):
        assert setting("device", device).device == device
    for device in ("gpu", "CPU", " cpu", "cuda:", "cuda:01", "cuda:-1", "cuda:128", "cuda:0 ", "mps", "cuda:1:2"):
        with pytest.raises(ConfigError, match="device=.* use auto, cpu, cuda or cuda:N"):
            setting("device", device)


@FEW
@given(index=st.integers(0, 10**4).map(str) | st.from_regex(r"\A[0-9+-]{1,4}\Z"))
def test_an_accepted_cuda_index_is_the_index_torch_parses(index):
    torch = pytest.importorskip("torch")
    pattern = next(m for m in split_annotation(field_hints(ExperimentConfig)["device"])[1] if isinstance(m, Pattern))
    name = f"cuda:{index}"
    if pattern.problem(name) is None:
        assert torch.device(name).index == int(index)  # torch wraps 128 to -128: refused above


def test_seed_is_what_every_generator_takes():
    torch = pytest.importorskip("torch")
    for seed in (-1, 2**63):
        with pytest.raises(ConfigError, match=r"seed=.* must be in \[0, 2\*\*63\)"):
            setting("seed", seed)
    assert setting("seed", 2**63 - 1).seed == 2**63 - 1
    torch.Generator().manual_seed(2**63 - 1)


# ---- check_config: configs built in code ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_passes(name):
    check_config(PRESETS[name]())


def test_every_default_passes():
    check_config(ExperimentConfig())
    for cls in (getattr(schema, n) for n in dir(schema) if n.endswith("Config")):
        assert all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(cls)
        )
    check_config(schema.ModelConfig(), "model")


def test_check_config_finds_bad_values_anywhere():
    cfg = ExperimentConfig()
    bad = [
        (replace(cfg, solver=replace(cfg.solver, lr=-1.0)), "solver.lr=-1.0 is out of range; must be > 0"),
        (replace(cfg, solver=replace(cfg.solver, epochs=0)), "solver.epochs=0"),
        (
            replace(cfg, model=replace(cfg.model, yolo=replace(cfg.model.yolo, train_sizes=(64, 90)))),
            r"train_sizes\[1\]=90",
        ),
        (replace(cfg, data=replace(cfg.data, hflip_prob=math.nan)), "data.hflip_prob=nan is not a finite number"),
        (replace(cfg, name="../x"), "not a single folder name"),
        (replace(cfg, name=None), "name: expected a string"),
        (
            replace(cfg, model=replace(cfg.model, rcnn=schema.RCNNConfig(crop_size=32, context_padding=16))),
            r"model.rcnn.context_padding=16 is too large; 2 x it must be < crop_size \(32\)",
        ),
        (replace(cfg, model=replace(cfg.model, rpn=None)), "model.rpn: expected a RPNConfig"),
    ]
    for config, message in bad:
        with pytest.raises(ConfigError, match=message):
            check_config(config)
    check_config(replace(cfg, model=replace(cfg.model, rcnn=schema.RCNNConfig(crop_size=33, context_padding=16))))


# ---- names the rest of detkit dispatches on ----------------------------------------------------------------


def test_choices_are_the_names_the_code_dispatches_on():
    pytest.importorskip("torch")
    from detkit.engine.distributed import BACKENDS
    from detkit.engine.precision import AMP_DTYPES
    from detkit.engine.solver import build_optimizer, lr_factor
    from detkit.modeling.backbones.build import NORM_LAYERS
    from detkit.modeling.backbones.trunks import TRUNKS
    from detkit.modeling.conv_blocks import CONV_NORMS
    from detkit.modeling.poolers import POOLERS
    from detkit.modeling.yolo.loss import BOX_LOSSES
    from detkit.pipelines import PIPELINES
    from detkit.pipelines.yolo import NECKS
    from detkit.proposals.selective_search import MODES

    assert schema.BACKBONE_NAMES == tuple(TRUNKS) and schema.NORM_LAYERS == tuple(NORM_LAYERS)
    assert schema.CONV_NORMS == tuple(CONV_NORMS) and schema.YOLO_NECKS == tuple(NECKS)
    assert schema.POOLERS == POOLERS and schema.PROPOSAL_MODES == MODES and schema.BOX_LOSSES == tuple(BOX_LOSSES)
    assert schema.AMP_DTYPES == tuple(AMP_DTYPES) and schema.BACKENDS == BACKENDS
    # Pipeline names are the table's own, refused where a name is used (the config is below the table).
    with pytest.raises(
        ConfigError, match="unknown pipeline 'ssd'; choose one of rcnn, fast_rcnn, faster_rcnn, mask_rcnn, yolo"
    ):
        from detkit.engine.precision import check_runtime

        check_runtime(schema.ExperimentConfig(model=schema.ModelConfig(pipeline="ssd")))
    assert set(PIPELINES) == {"rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn", "yolo"}
    import torch

    for optimizer in schema.OPTIMIZERS:
        build_optimizer(torch.nn.Linear(2, 2), schema.SolverConfig(optimizer=optimizer))
    for schedule in schema.SCHEDULES:
        lr_factor(0, schema.SolverConfig(schedule=schedule), 10)


def test_flags_are_the_train_options_that_set_the_field():
    from detkit.cli.train import OPTION_KEYS

    flagged = {path: m.name for path, a in LEAVES for m in split_annotation(a)[1] if isinstance(m, Flag)}
    assert len(flagged) >= 10
    for path, flag in flagged.items():
        assert OPTION_KEYS[flag.removeprefix("--").replace("-", "_")] == path


def test_config_imports_nothing_above_it():
    code = (
        "import sys, detkit.config.overrides, detkit.config.synthetic, detkit.config.legacy; "
        "print([m for m in sys.modules if m.startswith(('detkit.pipelines', 'detkit.modeling', 'detkit.engine'))])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- hostile config files ---------------------------------------------------------------------------------------


def load_in_thread(path, timeout: float, unblock=None) -> BaseException | None:
    """What ``load_config_file(path)`` raised, run in a thread given ``timeout`` seconds; a test
    failure, not a hung suite, when it takes longer (``unblock`` then lets a blocked read end)."""
    outcome: list = [None]

    def load() -> None:
        try:
            load_config_file(ExperimentConfig(), path)
        except Exception as error:  # noqa: BLE001 - the caller's assertions say which
            outcome[0] = error

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=timeout)
    if thread.is_alive():
        if unblock is not None:
            unblock()
            thread.join(timeout=timeout)
        pytest.fail(f"load_config_file({path.name}) did not return within {timeout} s")
    return outcome[0]


def alias_bomb(use: str) -> str:
    """~1 KB of YAML that is 9**9 strings when walked."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join([*lines, use, ""])


INLINE_BOMB = (
    "[&b0 ["
    + ", ".join(["lol"] * 9)
    + "]"
    + "".join(f", &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, 9))
    + "]"
)


@pytest.mark.parametrize(
    "text",
    [
        alias_bomb("name: *a8"),
        f"name: {INLINE_BOMB}\n",  # every anchor inside the one string field: nothing before it fails first
        f"model: {{backbone: {{weights_path: {INLINE_BOMB}}}}}\n",
        f"model: {{transform: {{min_size: {INLINE_BOMB}}}}}\n",
        f"model: {{anchors: {{sizes: {INLINE_BOMB}}}}}\n",
        "model: {anchors: {sizes: &s [*s]}}\n",  # a list that holds itself
    ],
)
def test_an_alias_bomb_is_refused_at_once(text, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text) < 1500
    started = time.perf_counter()
    error = load_in_thread(path, timeout=5)  # walking the aliases would take minutes: fail, do not hang
    assert time.perf_counter() - started < 1.0
    message = str(error)
    assert isinstance(error, ConfigError) and message.startswith(str(path))
    assert len(message) < 300 and "\n" not in message


def test_a_long_list_of_aliases_is_refused_before_it_is_walked(tmp_path):
    row = "[" + ", ".join(["8"] * 200) + "]"
    path = tmp_path / "wide.yaml"
    path.write_text("model: {anchors: {sizes: [&r " + row + ", " + ", ".join(["*r"] * 5000) + "]}}\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="model.anchors.sizes: 5001 values is too many"):
        load_config_file(ExperimentConfig(), path)
    assert time.perf_counter() - started < 1.0


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at offset 9\); save it as UTF-8"):
        load_config_file(ExperimentConfig(), path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    error = load_in_thread(path, timeout=5, unblock=lambda: os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))
    assert isinstance(error, ConfigError) and "pipe.yaml: not a regular file (a FIFO)" in str(error)


def test_an_oversize_file_or_a_folder_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("#" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"huge.yaml: 1048577 bytes is too large for a config file \(at most 1 MiB\)"):
        load_config_file(ExperimentConfig(), path)
    path.write_text("#" * (MAX_CONFIG_BYTES - 1) + "\n")
    assert load_config_file(ExperimentConfig(), path) == ExperimentConfig()  # at the cap: read
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="folder.yaml: not a regular file"):
        load_config_file(ExperimentConfig(), tmp_path / "folder.yaml")


@pytest.mark.parametrize(
    ("section", "name"),
    [("rpn", "head_convs"), ("roi_heads", "box_head_convs"), ("mask", "num_convs"), ("yolo", "head_convs")],
)
def test_head_layer_counts_are_bounded_so_a_damaged_config_cannot_build_for_minutes(section, name):
    cfg = ExperimentConfig()
    damaged = replace(cfg.model, **{section: replace(getattr(cfg.model, section), **{name: 10_000})})
    with pytest.raises(ConfigError, match=rf"model\.{section}\.{name}=10000 is out of range; must be in [01]\.\.16"):
        check_config(replace(cfg, model=damaged))
