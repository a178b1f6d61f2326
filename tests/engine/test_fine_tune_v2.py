"""Fine-tuning (``detkit train --weights FILE``) from torchvision's ``*_v2`` detectors: every tensor but the
class-dependent ones is copied, the class layers start fresh for the new class count, and the run
keeps torchvision's trainable layout (BatchNorm everywhere, conv1 and layer1 frozen)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torchvision
from torch import nn

from detkit.engine.fine_tune import fine_tune_config, load_initial_weights
from detkit.modeling.torchvision_import import convert_torchvision_detector
from detkit.pipelines import PIPELINES

PARAMS = ("weight", "bias")
BOX_CLASS_LAYERS = {f"roi_heads.box_predictor.{layer}.{p}" for layer in ("cls_score", "bbox_pred") for p in PARAMS}
MASK_CLASS_LAYERS = {f"roi_heads.mask_branch.predictor.{p}" for p in PARAMS}


@pytest.mark.parametrize(
    ("name", "fresh"),
    [
        ("fasterrcnn_resnet50_fpn_v2", BOX_CLASS_LAYERS),
        ("maskrcnn_resnet50_fpn_v2", BOX_CLASS_LAYERS | MASK_CLASS_LAYERS),
    ],
)
def test_a_v2_file_fine_tunes_for_three_classes(name, fresh, tmp_path):
    torch.manual_seed(0)
    reference = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / f"{name}_coco.pth"
    torch.save(reference.state_dict(), path)

    cfg = fine_tune_config(path, None, None)
    assert cfg.model.init_weights == str(path) and cfg.model.num_classes == 0  # the class count is the new data's
    assert (cfg.model.roi_heads.box_head_convs, cfg.model.rpn.head_convs, cfg.model.backbone.fpn_norm) == (4, 2, "bn")
    cfg = replace(cfg, model=replace(cfg.model, num_classes=3))
    torch.manual_seed(1)
    model = PIPELINES[cfg.model.pipeline].build(cfg.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    report = load_initial_weights(model, cfg)

    assert set(report.fresh) == fresh and report.checkpoint_classes == 90
    assert report.loaded == len(initial) - len(fresh)
    assert "(it has 90 classes, this data 3)" in report.describe(str(path), 3)
    converted = convert_torchvision_detector(reference.state_dict(), "resnet50_fpn_v2")
    for key, tensor in model.state_dict().items():
        if key in fresh:  # another class count: the model's own initialization, untouched
            assert tensor.shape != converted[key].shape and torch.equal(tensor, initial[key]), key
        else:
            assert torch.equal(tensor, converted[key]), key
    assert model.state_dict()["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)
    frozen = {k.split(".")[2] for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "bn1", "layer1"}  # torchvision's trainable_backbone_layers=3
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
