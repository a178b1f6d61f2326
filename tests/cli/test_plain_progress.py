"""Progress outside a terminal: plain lines every few seconds (nohup, CI, a scheduler's log file)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from detkit.cli.plain_progress import INTERVAL_ENV, PlainProgressLog, log_interval_s, significant
from detkit.errors import ConfigError
from tests.cli.helpers import train_pipeline


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def log(interval_s: float) -> tuple[PlainProgressLog, Clock, io.StringIO]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, width=200, force_terminal=False)
    return PlainProgressLog(console, interval_s=interval_s, clock=clock), clock, out


def test_a_line_every_interval_with_rate_and_eta_and_a_closing_line() -> None:
    plain, clock, out = log(interval_s=10)
    plain.started("train", "epoch 1/3", total=100)
    for step in range(1, 101):
        clock.now = step * 0.5  # 2 steps/s, 8 images per step
        plain.advanced("train", step, "loss 0.912 lr 2.00e-02", images=8 * step)
    plain.finished("train")
    lines = out.getvalue().splitlines()
    assert len(lines) == 6  # at 10, 20, 30, 40 and 50 s, then done
    assert lines[0] == "epoch 1/3: 20/100 (20%)  loss 0.912 lr 2.00e-02  16.0 img/s  eta 40s"
    assert lines[-2].startswith("epoch 1/3: 100/100 (100%)") and "eta" not in lines[-2]
    assert lines[-1] == "epoch 1/3: done, 100 in 50s"


def test_a_stage_shorter_than_the_interval_prints_nothing() -> None:
    plain, clock, out = log(interval_s=30)
    plain.started("predict", "", total=3)
    for step in range(1, 4):
        clock.now = step
        plain.advanced("predict", step, "")
    plain.finished("predict")
    assert out.getvalue() == ""


def test_steps_that_are_not_batches_count_as_iterations() -> None:
    plain, clock, out = log(interval_s=0)
    plain.started("proposals", "selective search (fast)", total=1000)
    clock.now = 400.0
    plain.advanced("proposals", 1, "")
    assert out.getvalue().strip() == "selective search (fast): 1/1000 (0%)  0.0025 it/s  eta 111h00m"


@pytest.mark.parametrize(
    ("value", "text"), [(0.0412, "0.0412"), (0.213, "0.213"), (1.844, "1.84"), (21.34, "21.3"), (213.4, "213")]
)
def test_rates_keep_three_significant_digits(value: float, text: str) -> None:
    assert significant(value) == text


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "5")
    assert log_interval_s() == 5.0
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="DETKIT_LOG_INTERVAL='soon': give the seconds between progress lines"):
        log_interval_s()


def test_training_into_a_pipe_prints_progress_lines(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")  # every step
    config = (
        "solver: {epochs: 1, optimizer: adamw, lr: 0.001, warmup_iters: 1}\ndata: {batch_size: 2}\nmodel:\n"
        "  backbone: {name: resnet18, pretrained: false, norm: bn}\n"
        "  yolo: {image_size: 64, train_sizes: [64], width_multiple: 0.125}\n"
    )
    result, _ = train_pipeline(tmp_path, "yolo", config, "piped")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if line.startswith("epoch 1/1: ")]
    assert progress and progress[0].startswith("epoch 1/1: 1/2 (50%)  loss ") and " img/s" in progress[0]
    assert progress[-1].startswith("epoch 1/1: done, 2 in ")
