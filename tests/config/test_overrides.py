import pytest

from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides, config_from_dict, config_to_dict, load_config_file
from detkit.errors import ConfigError
from detkit.pipelines import PRESETS, preset, preset_for


def test_set_parses_types():
    cfg = apply_overrides(
        ExperimentConfig(),
        [
            "model.rpn.nms_thresh=0.6",
            "model.transform.min_size=[96, 128]",
            "solver.amp=true",
            "model.anchors.sizes=((16,), (32,))",
            "solver.epochs=3",
            "model.backbone.name=resnet18",
        ],
    )
    assert cfg.model.rpn.nms_thresh == 0.6
    assert cfg.model.transform.min_size == (96, 128)
    assert cfg.solver.amp is True and cfg.solver.epochs == 3
    assert cfg.model.anchors.sizes == ((16,), (32,))
    assert cfg.model.backbone.name == "resnet18"


def test_unknown_key_names_nearest():
    with pytest.raises(ConfigError, match="did you mean 'model.rpn.nms_thresh'"):
        apply_overrides(ExperimentConfig(), ["model.rpn.nms_tresh=0.6"])


@pytest.mark.parametrize(
    "assignment", ["solver.lr=fast", "solver.epochs=2.5", "solver.amp=3", "solver.lr", "model.rpn=1"]
)
def test_bad_values_rejected(assignment):
    with pytest.raises(ConfigError):
        apply_overrides(ExperimentConfig(), [assignment])


def test_dict_round_trip_every_preset():
    for name in PRESETS:
        cfg = preset(name)
        assert config_from_dict(ExperimentConfig, config_to_dict(cfg)) == cfg


def test_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("solver:\n  lr: 0.5\nmodel:\n  rpn:\n    nms_thresh: 0.65\n")
    cfg = load_config_file(ExperimentConfig(), path)
    assert cfg.solver.lr == 0.5 and cfg.model.rpn.nms_thresh == 0.65
    (tmp_path / "bad.yaml").write_text("solver: [")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config_file(ExperimentConfig(), tmp_path / "bad.yaml")


def test_unknown_pipeline_and_preset():
    with pytest.raises(ConfigError, match="unknown pipeline"):
        preset_for("detr", None, synthetic=True)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")


# ---- values outside what a field takes, strings, files ---------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("solver.lr=-1", "solver.lr=-1.0 is out of range; must be > 0"),
        ("solver.optimizer=sgdd", "solver.optimizer='sgdd' is not one of sgd, adamw; did you mean 'sgd'?"),
        ("model.transform.min_size=[0]", "model.transform.min_size[0]=0 is out of range; must be >= 1"),
        ("solver.epochs=0", "solver.epochs=0 (--epochs 0) is out of range; must be >= 1"),
        ("solver.lr=1e999", "solver.lr=inf is not a finite number"),
        ("model.rpn.nms_thresh=1.5", "model.rpn.nms_thresh=1.5 is out of range; must be in [0, 1]"),
        ("data.color_jitter=1", "data.color_jitter=1.0 is out of range; must be in [0, 1)"),
        ("model.backbone.trainable_stages=6", "model.backbone.trainable_stages=6 is out of range; must be in 0..5"),
        ("name=../../x", "name='../../x' (--name '../../x') is not a single folder name (it contains '/')"),
    ],
)
def test_out_of_range_values_are_one_line_naming_key_value_and_bound(assignment, message):
    with pytest.raises(ConfigError) as raised:
        apply_overrides(ExperimentConfig(), [assignment])
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_string_fields_take_strings_and_numbers_typed_on_set():
    cfg = apply_overrides(ExperimentConfig(), ["name=2024", "output_dir=1e3", "model.backbone.weights_path=0x10"])
    assert (cfg.name, cfg.output_dir, cfg.model.backbone.weights_path) == ("2024", "1e3", "0x10")  # the text typed
    for values in ({"name": 2024}, {"name": True}, {"output_dir": None}):
        with pytest.raises(ConfigError, match="expected a string, got .*; quote it"):
            config_from_dict(ExperimentConfig, values)
    for values in ({"name": ["a", "b"]}, {"name": {"a": 1}}):
        with pytest.raises(ConfigError, match="expected a string, got .*[]}]$"):
            config_from_dict(ExperimentConfig, values)
    with pytest.raises(ConfigError, match="expected a string"):
        apply_overrides(ExperimentConfig(), ["name=[1, 2]"])


def test_messages_quote_values_briefly():
    with pytest.raises(ConfigError) as raised:
        config_from_dict(ExperimentConfig, {"solver": {"lr": "x" * 10_000}})
    assert len(str(raised.value)) < 100
    with pytest.raises(ConfigError) as raised:
        config_from_dict(ExperimentConfig, {"solver": {"optimizer": "a\nb" * 1000}})
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 150
    with pytest.raises(ConfigError, match="key 3 is not a name"):
        config_from_dict(ExperimentConfig, {3: 1})
    with pytest.raises(ConfigError, match="too many"):
        config_from_dict(ExperimentConfig, {"solver": {"step_epochs": list(range(1, 10_000))}})


def test_non_finite_numbers_from_yaml_and_json(tmp_path):
    for name, text in [
        ("a.yaml", "solver: {lr: .nan}"),
        ("b.yaml", "solver: {momentum: -.inf}"),
        ("c.json", '{"solver": {"lr": Infinity}}'),
        ("d.json", '{"data": {"mosaic_scale": [NaN, 1]}}'),
        ("e.json", '{"solver": {"weight_decay": 1' + "0" * 400 + "}}"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=f"{name}: .* is not a finite number"):
            load_config_file(ExperimentConfig(), tmp_path / name)


def test_parse_errors_are_one_line_and_a_byte_order_mark_is_not_content(tmp_path):
    (tmp_path / "tab.yaml").write_text("solver:\n\t lr: 1\nmodel: [\n")
    with pytest.raises(ConfigError) as raised:
        load_config_file(ExperimentConfig(), tmp_path / "tab.yaml")
    assert "tab.yaml: cannot parse config" in str(raised.value) and "line 2" in str(raised.value)
    assert "\n" not in str(raised.value)
    (tmp_path / "bom.json").write_text('\ufeff{"solver": {"lr": 0.5}}', encoding="utf-8")
    assert load_config_file(ExperimentConfig(), tmp_path / "bom.json").solver.lr == 0.5


def test_valid_values_load_as_before(tmp_path):
    path = tmp_path / "edges.yaml"
    path.write_text(
        "solver: {lr: 1, momentum: 0, epochs: 1.0, warmup_factor: 1}\n"
        "model: {rpn: {nms_thresh: 1.0}, transform: {min_size: 1}}\n"
        "data: {mosaic_scale: [1, 1], num_workers: 0}\nseed: 0\ndevice: cuda:3\n"
    )
    cfg = load_config_file(ExperimentConfig(), path)
    assert cfg.solver.lr == 1.0 and isinstance(cfg.solver.lr, float) and cfg.solver.epochs == 1
    assert cfg.model.transform.min_size == (1,) and cfg.data.mosaic_scale == (1.0, 1.0) and cfg.device == "cuda:3"
