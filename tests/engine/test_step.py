"""The shared training step: the engine weighs the detectors' raw losses, and moved config keys still load."""

from __future__ import annotations

import pytest
import torch

from detkit.config import ExperimentConfig, LossWeights
from detkit.config.legacy import upgrade
from detkit.config.overrides import apply_overrides, config_from_dict, config_to_dict
from detkit.engine.step import reweighted, weighted_total
from detkit.errors import ConfigError
from detkit.pipelines import preset


def test_the_total_is_the_weighted_sum_of_the_raw_losses():
    losses = {"loss_box": torch.tensor(2.0), "loss_cls": torch.tensor(3.0), "loss_extra": torch.tensor(7.0)}
    weights = LossWeights(loss_box=5.0, loss_cls=0.5)
    assert weighted_total(losses, weights).item() == pytest.approx(5 * 2 + 0.5 * 3 + 7)  # an unnamed loss counts once
    assert reweighted({"loss_box": 2.0, "loss_cls": 3.0, "loss_obj": 1.0}, weights) == {
        "loss_box": 10.0,
        "loss_cls": 1.5,
    }


def test_yolo_weighs_its_box_loss_five_times_as_before_the_move():
    """YOLOX's 5x on the IoU loss used to live in the head (model.yolo.box_loss_weight); the presets now
    give the engine the same weight, and every other pipeline weighs its terms equally."""
    for name in ("yolo", "yolo_synthetic"):
        assert preset(name).solver.loss_weights == LossWeights(loss_box=5.0)
    assert preset("faster_rcnn").solver.loss_weights == LossWeights()
    assert (
        apply_overrides(preset("faster_rcnn"), ["solver.loss_weights.loss_mask=2"]).solver.loss_weights.loss_mask == 2.0
    )


def test_a_stored_config_with_the_old_key_loads_under_the_new_one():
    stored = config_to_dict(preset("yolo_synthetic"))
    del stored["solver"]["loss_weights"]
    stored["model"]["yolo"]["box_loss_weight"] = 3.0  # what detkit 0.1.0 checkpoints hold
    cfg = config_from_dict(ExperimentConfig, upgrade(stored))
    assert cfg.solver.loss_weights.loss_box == 3.0 and "box_loss_weight" not in config_to_dict(cfg)["model"]["yolo"]
    with pytest.raises(ConfigError, match="it moved to 'solver.loss_weights.loss_box'"):
        apply_overrides(preset("yolo"), ["model.yolo.box_loss_weight=5"])
