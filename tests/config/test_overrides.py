import pytest

from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides, config_from_dict, config_to_dict, load_config_file
from detkit.config.presets import PRESETS, default_preset, preset
from detkit.errors import ConfigError


def test_set_parses_types():
    cfg = apply_overrides(ExperimentConfig(), [
        "model.rpn.nms_thresh=0.6", "model.transform.min_size=[96, 128]", "solver.amp=true",
        "model.anchors.sizes=((16,), (32,))", "solver.epochs=3", "model.backbone.name=resnet18",
    ])
    assert cfg.model.rpn.nms_thresh == 0.6
    assert cfg.model.transform.min_size == (96, 128)
    assert cfg.solver.amp is True and cfg.solver.epochs == 3
    assert cfg.model.anchors.sizes == ((16,), (32,))
    assert cfg.model.backbone.name == "resnet18"


def test_unknown_key_names_nearest():
    with pytest.raises(ConfigError, match="did you mean 'model.rpn.nms_thresh'"):
        apply_overrides(ExperimentConfig(), ["model.rpn.nms_tresh=0.6"])


@pytest.mark.parametrize("assignment", ["solver.lr=fast", "solver.epochs=2.5", "solver.amp=3", "solver.lr", "model.rpn=1"])
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
        default_preset("detr", synthetic=True)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")
