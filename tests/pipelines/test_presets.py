"""Every preset builds its detector, and every pipeline has a real-data preset on the MobileNetV2 trunk."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detkit.pipelines import PIPELINES, PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name):
    cfg = PRESETS[name]()
    model_cfg = replace(cfg.model, backbone=replace(cfg.model.backbone, pretrained=False), num_classes=3)
    model = PIPELINES[model_cfg.pipeline].build(model_cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_pipeline_has_a_cpu_preset_on_imagenet_mobilenet(pipeline):
    name = "yolo_mobilenet" if pipeline == "yolo" else f"{pipeline}_mobilenet"
    cfg = PRESETS[name]()
    assert cfg.model.pipeline == pipeline and name in PIPELINES[pipeline].preset_names
    assert cfg.model.backbone.name == "mobilenet_v2" and cfg.model.backbone.pretrained
