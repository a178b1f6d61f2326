"""Data-parallel training on 2 gloo processes (CPU): the same steps as one process, every pipeline."""

import json
from dataclasses import replace

import pytest
import torch

from detkit.checkpoint import load_checkpoint
from detkit.config import (
    BackboneConfig,
    MaskHeadConfig,
    ModelConfig,
    ProposalConfig,
    RCNNConfig,
    RuntimeConfig,
    YOLOConfig,
)
from detkit.data.synthetic import generate_synthetic_coco
from detkit.engine.train import train
from detkit.errors import ConfigError
from detkit.pipelines.rcnn.features import SHARD_IMAGES
from tests.engine.test_train import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return generate_synthetic_coco(
        tmp_path_factory.mktemp("synth8"), num_train=8, num_val=4, image_size=(64, 64), seed=5
    )


def logged_steps(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "iter" in r], [r["val"] for r in records if "val" in r]


def exact_sampling(cfg):
    """Settings under which one process and two compute the same losses: every anchor and RoI is
    sampled (no random subset), one image scale, frozen BatchNorm (per-process batch statistics differ)."""
    model = cfg.model
    return replace(
        cfg,
        model=replace(
            model,
            backbone=replace(model.backbone, norm="frozen_bn"),
            transform=replace(model.transform, min_size=(64,)),
            rpn=replace(model.rpn, batch_size_per_image=10**6),
            roi_heads=replace(model.roi_heads, batch_size_per_image=10**6),
        ),
    )


def on_processes(cfg, devices: int, global_batch: int):
    return replace(
        cfg,
        runtime=RuntimeConfig(devices=devices, log_every_steps=1, deterministic=True),
        data=replace(cfg.data, batch_size=global_batch // devices),
    )


def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(data8, tmp_path):
    cfg = exact_sampling(tiny_config(data8, tmp_path, epochs=1))
    single = train(on_processes(replace(cfg, name="one"), devices=1, global_batch=4))
    double = train(on_processes(replace(cfg, name="two"), devices=2, global_batch=4))
    (single_steps, single_val), (double_steps, double_val) = logged_steps(single.run_dir), logged_steps(double.run_dir)
    assert len(single_steps) == len(double_steps) == 2
    for one, two in zip(single_steps, double_steps):  # step 2's losses also check step 1's averaged gradients
        for key in ("loss", "loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), (one["iter"], key)
    assert double_val[0]["AP"] == pytest.approx(single_val[0]["AP"], abs=1e-4)  # evaluated on 2 shards, scored once
    one_weights, two_weights = (
        load_checkpoint(single.last_checkpoint).model_state,
        load_checkpoint(double.last_checkpoint).model_state,
    )
    for key, value in one_weights.items():
        torch.testing.assert_close(two_weights[key], value, rtol=1e-4, atol=1e-6, msg=key)


def model_for(pipeline: str) -> ModelConfig:
    """The tiny Faster R-CNN of test_train turned into ``pipeline``."""
    resnet = BackboneConfig(name="resnet18", fpn=False)
    tiny = tiny_config({"train": ("", ""), "val": ("", "")}, "", 1).model  # only its model settings are used
    return {
        "fast_rcnn": replace(
            tiny, pipeline="fast_rcnn", backbone=resnet, roi_heads=replace(tiny.roi_heads, pooler="roi_pool")
        ),
        "mask_rcnn": replace(tiny, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=8, num_convs=1)),
        "yolo": ModelConfig(pipeline="yolo", backbone=resnet, yolo=YOLOConfig(image_size=64, width_multiple=0.125)),
        "rcnn": ModelConfig(
            pipeline="rcnn",
            backbone=replace(resnet, returned_stages=(5,)),
            proposals=ProposalConfig(),
            rcnn=RCNNConfig(crop_size=32, context_padding=3, finetune_iters=2, svm_steps=20, svm_initial_negatives=20),
        ),
    }[pipeline]


@pytest.mark.parametrize("pipeline", ["fast_rcnn", "mask_rcnn", "yolo"])
def test_every_gradient_pipeline_trains_and_evaluates_on_two_processes(pipeline, data8, tmp_path):
    cfg = replace(tiny_config(data8, tmp_path, epochs=1), name=pipeline, model=model_for(pipeline))
    result = train(on_processes(cfg, devices=2, global_batch=4))
    steps, val = logged_steps(result.run_dir)
    assert [s["iter"] for s in steps] == [1, 2] and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    assert len(val) == 1 and 0 <= val[0]["AP"] <= 1
    checkpoint = load_checkpoint(result.last_checkpoint)
    assert checkpoint.training_state["world_size"] == 2 and checkpoint.training_state["step"] == 2


def test_rcnn_shares_feature_extraction_between_processes(tmp_path):
    paths = generate_synthetic_coco(
        tmp_path / "data", num_train=SHARD_IMAGES + 4, num_val=2, image_size=(64, 64), seed=6
    )
    cfg = replace(tiny_config(paths, tmp_path / "runs", epochs=1), name="rcnn", model=model_for("rcnn"))
    result = train(on_processes(cfg, devices=2, global_batch=4))
    shards = sorted(p.name for p in (result.run_dir / "features").glob("*/shard-*.pt"))
    assert shards == ["shard-00000.pt", "shard-00001.pt"]  # shard 0 from rank 0, shard 1 from rank 1
    stages = json.loads((result.run_dir / "stages.json").read_text())
    assert stages["features"]["regions"] > 0 and {"finetune", "svms", "regressors", "evaluate"} <= set(stages)
    assert 0 <= result.metrics["AP"] <= 1


def test_sync_bn_on_cpu_processes_is_refused_in_one_line(data8, tmp_path):
    cfg = on_processes(tiny_config(data8, tmp_path, epochs=1), devices=2, global_batch=4)
    with pytest.raises(ConfigError, match="sync-bn needs CUDA"):
        train(replace(cfg, runtime=replace(cfg.runtime, sync_bn=True)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_with_amp_and_channels_last_on_one_gpu(data8, tmp_path, monkeypatch):
    cfg = replace(tiny_config(data8, tmp_path, epochs=1), device="cuda")
    cfg = replace(
        cfg,
        solver=replace(cfg.solver, amp=True, amp_dtype="fp16", channels_last=True),
        runtime=RuntimeConfig(devices=1, backend="nccl", sync_bn=True, log_every_steps=1),
    )
    torchrun_environment = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29531",
    }
    for key, value in torchrun_environment.items():
        monkeypatch.setenv(key, value)  # what torchrun --nproc-per-node 1 sets: a process group of one, under DDP
    result = train(cfg)
    steps, val = logged_steps(result.run_dir)
    assert len(steps) == 2 and 0 <= val[0]["AP"] <= 1
