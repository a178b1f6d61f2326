"""The training loop: complete runs, exact resume, non-finite losses, the schedule."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from detkit.checkpoint import load_checkpoint
from detkit.config import (
    AnchorConfig,
    BackboneConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    SolverConfig,
    TransformConfig,
    YOLOConfig,
)
from detkit.data.synthetic import generate_synthetic_coco
from detkit.engine.events import EpochFinished
from detkit.engine.solver import lr_factor
from detkit.engine.train import train
from detkit.errors import TrainingError
from detkit.structures import Detections, DetectorOutput


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return generate_synthetic_coco(root, num_train=4, num_val=2, image_size=(64, 64), seed=3)


def tiny_config(paths, output_dir, epochs: int) -> ExperimentConfig:
    (train_json, train_dir), (val_json, val_dir) = paths["train"], paths["val"]
    return ExperimentConfig(
        name="tiny",
        model=ModelConfig(
            backbone=BackboneConfig(name="resnet18", fpn_channels=16, fpn_extra_pool=False),
            transform=TransformConfig(min_size=(56, 64), max_size=64),
            anchors=AnchorConfig(sizes=((8,), (16,), (32,), (64,)), aspect_ratios=((1.0,),) * 4),
            rpn=RPNConfig(pre_nms_topk_train=50, post_nms_topk_train=30, pre_nms_topk_test=30, post_nms_topk_test=20),
            roi_heads=RoIHeadsConfig(representation_size=16, batch_size_per_image=8),
        ),
        data=DataConfig(str(train_json), str(train_dir), str(val_json), str(val_dir), batch_size=2),
        solver=SolverConfig(lr=0.01, epochs=epochs, warmup_iters=2),
        eval=EvalConfig(every_epochs=1),
        output_dir=str(output_dir),
        seed=7,
    )


class _Killed(Exception):
    pass


def _kill_after_first_epoch(event) -> None:
    if isinstance(event, EpochFinished) and event.epoch == 1:
        raise _Killed  # as if the process died right after epoch 1's checkpoint was written


def test_resume_after_an_epoch_matches_an_uninterrupted_run(tiny_data, tmp_path):
    straight = train(tiny_config(tiny_data, tmp_path / "a", epochs=2))
    with pytest.raises(_Killed):
        train(tiny_config(tiny_data, tmp_path / "b", epochs=2), on_event=_kill_after_first_epoch)
    interrupted_run = tmp_path / "b" / "tiny"
    resumed = train(tiny_config(tiny_data, tmp_path / "b", epochs=2), resume_from=interrupted_run)
    assert resumed.run_dir == interrupted_run
    expected = load_checkpoint(straight.last_checkpoint)
    actual = load_checkpoint(resumed.last_checkpoint)
    assert actual.training_state["epoch"] == 2 and actual.training_state["step"] == expected.training_state["step"]
    for key, value in expected.model_state.items():
        torch.testing.assert_close(actual.model_state[key], value, rtol=0, atol=0, msg=key)


def tiny_yolo_config(paths, output_dir, epochs: int) -> ExperimentConfig:
    """The tiny run as a YOLO with every stateful extra on: EMA weights, mosaic, colour jitter."""
    cfg = tiny_config(paths, output_dir, epochs)
    return replace(
        cfg,
        model=ModelConfig(
            pipeline="yolo",
            backbone=BackboneConfig(name="resnet18", fpn=False),
            yolo=YOLOConfig(image_size=64, train_sizes=(64, 96), width_multiple=0.125),
        ),
        data=replace(cfg.data, mosaic_prob=0.5, mosaic_off_epochs=1, color_jitter=0.2),
        solver=replace(cfg.solver, optimizer="adamw", lr=1e-3, ema_decay=0.99, ema_ramp_steps=2),
    )


def test_yolo_with_ema_and_mosaic_resumes_exactly(tiny_data, tmp_path):
    straight = train(tiny_yolo_config(tiny_data, tmp_path / "a", epochs=2))
    with pytest.raises(_Killed):
        train(tiny_yolo_config(tiny_data, tmp_path / "b", epochs=2), on_event=_kill_after_first_epoch)
    resumed = train(tiny_yolo_config(tiny_data, tmp_path / "b", epochs=2), resume_from=tmp_path / "b" / "tiny")
    expected, actual = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert actual.training_state["ema_updates"] == expected.training_state["ema_updates"] == 4
    for states in ("model_state", "training_state"):
        reference = getattr(expected, states) if states == "model_state" else expected.training_state["model"]
        resumed_state = getattr(actual, states) if states == "model_state" else actual.training_state["model"]
        for key, value in reference.items():
            torch.testing.assert_close(resumed_state[key], value, rtol=0, atol=0, msg=key)
    # the checkpoint holds the average, not the raw weights
    raw, averaged = expected.training_state["model"], expected.model_state
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].dtype.is_floating_point)


class _NaNDetector(nn.Module):
    """Produces a NaN loss on every training step."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, images, targets=None):
        losses = {"loss_cls": self.weight.sum() * float("nan")} if targets is not None else {}
        detections = None if self.training else [Detections() for _ in images]
        return DetectorOutput(losses, detections)


def test_repeated_nonfinite_losses_stop_with_advice(tiny_data, tmp_path, monkeypatch):
    from detkit.pipelines import PIPELINES

    monkeypatch.setitem(PIPELINES, "faster_rcnn", replace(PIPELINES["faster_rcnn"], build=lambda cfg: _NaNDetector()))
    cfg = tiny_config(tiny_data, tmp_path, epochs=3)
    cfg = replace(cfg, solver=replace(cfg.solver, max_nonfinite_steps=3))
    notices = []
    with pytest.raises(TrainingError, match="learning rate"):
        train(cfg, on_event=notices.append)
    skipped = [e for e in notices if type(e).__name__ == "Notice" and "skipped" in e.message]
    assert len(skipped) == 2  # the first two are skipped with a warning, the third stops the run


def test_schedule_warms_up_then_decays():
    cfg = SolverConfig(epochs=2, warmup_iters=10, warmup_factor=0.1, schedule="cosine")
    assert lr_factor(0, cfg, iters_per_epoch=50) == pytest.approx(0.1)
    assert lr_factor(10, cfg, 50) == pytest.approx(1.0)  # the nominal rate, where the decay starts
    assert lr_factor(55, cfg, 50) == pytest.approx(0.5)  # half-way through the 90 decay iterations
    assert lr_factor(99, cfg, 50) < 0.01
    step = replace(cfg, schedule="step", step_epochs=(1,), gamma=0.1)
    assert lr_factor(49, step, 50) == pytest.approx(1.0)
    assert lr_factor(50, step, 50) == pytest.approx(0.1)


@pytest.mark.parametrize("epochs", [1, 50])
def test_schedule_reaches_the_nominal_rate_in_short_and_long_runs(epochs):
    # A warm-up of 500 iterations in a 1-epoch run of 40 iterations is capped at 8 (a fifth).
    cfg = SolverConfig(epochs=epochs, warmup_iters=500, warmup_factor=0.001, schedule="cosine")
    factors = [lr_factor(it, cfg, iters_per_epoch=40) for it in range(epochs * 40)]
    assert max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) <= 0.2 * len(factors)


class _TrunkAndHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 4, 3)
        self.backbone.fpn = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_trunk_learns_at_its_factor_of_the_rate_and_the_scheduler_scales_both(optimizer):
    from detkit.engine.solver import build_optimizer, build_scheduler

    model = _TrunkAndHead()
    cfg = SolverConfig(optimizer=optimizer, lr=0.01, trunk_lr_factor=0.1, epochs=1, warmup_iters=0)
    opt = build_optimizer(model, cfg)
    rate = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    assert rate[id(model.backbone.body.weight)] == rate[id(model.backbone.body.bias)] == pytest.approx(0.001)
    assert rate[id(model.backbone.fpn.weight)] == rate[id(model.head.bias)] == pytest.approx(0.01)
    assert opt.param_groups[0]["lr"] == 0.01  # the first group carries the nominal rate the logs print
    decay = {id(p): group["weight_decay"] for group in opt.param_groups for p in group["params"]}
    assert decay[id(model.backbone.body.bias)] == 0.0 and decay[id(model.backbone.body.weight)] == cfg.weight_decay
    scheduler = build_scheduler(opt, replace(cfg, epochs=2), iters_per_epoch=4)
    for _ in range(4):
        opt.step()
        scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.005, 0.0005, 0.0005])  # cosine half-way
    assert len(build_optimizer(model, replace(cfg, trunk_lr_factor=1.0)).param_groups) == 2  # the old layout
