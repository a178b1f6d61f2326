"""Runs that are stopped or killed lose nothing: Ctrl-C saves and exits, SIGKILL + --resume ends
with the weights of an uninterrupted run, a pickled checkpoint is never executed."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from detkit.checkpoint import load_checkpoint
from detkit.config import RuntimeConfig
from detkit.config.overrides import config_to_dict
from detkit.engine.events import StageAdvanced
from detkit.engine.train import train
from detkit.errors import TrainingInterrupted
from tests.engine.test_train import tiny_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from detkit.data.synthetic import generate_synthetic_coco

    return generate_synthetic_coco(
        tmp_path_factory.mktemp("faults"), num_train=6, num_val=2, image_size=(64, 64), seed=4
    )


def assert_same_weights(expected_path: Path, actual_path: Path) -> None:
    expected, actual = load_checkpoint(expected_path), load_checkpoint(actual_path)
    assert actual.training_state["step"] == expected.training_state["step"]
    for key, value in expected.model_state.items():
        torch.testing.assert_close(actual.model_state[key], value, rtol=0, atol=0, msg=key)


@pytest.fixture
def terminal_sigint():
    """SIGINT handled as in a terminal. A suite started in the background (`pytest &`) inherits it
    ignored, which StopRequest rightly leaves ignored (test_an_ignored_signal_stays_ignored_...)."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_epoch_saves_and_the_resumed_run_matches(tiny_data, tmp_path, terminal_sigint):
    cfg = replace(tiny_config(tiny_data, tmp_path / "a", epochs=2), runtime=RuntimeConfig(deterministic=True))
    straight = train(cfg)

    def press_ctrl_c(event):
        if isinstance(event, StageAdvanced) and event.stage == "train" and event.completed == 1:
            signal.raise_signal(signal.SIGINT)  # what the terminal sends; the loop stops after the next step

    stopped = replace(cfg, output_dir=str(tmp_path / "b"))
    with pytest.raises(TrainingInterrupted, match="continue with: detkit train --resume"):
        train(stopped, on_event=press_ctrl_c)
    run_dir = tmp_path / "b" / "tiny"
    saved = load_checkpoint(run_dir / "last.pt").training_state
    assert (saved["epoch"], saved["batches_done"], saved["step"]) == (0, 2, 2)  # mid-epoch 1 of 3 batches
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler there before is handed back
    resumed = train(stopped, resume_from=run_dir)
    assert_same_weights(straight.last_checkpoint, resumed.last_checkpoint)
    steps = [json.loads(line).get("iter") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if s is not None] == sorted({s for s in steps if s is not None})  # no step logged twice


class DetkitTrain:
    """``python -m detkit train`` in its own process; output goes to files (a full pipe would block it)."""

    def __init__(self, config: Path, name: str, *extra: str) -> None:
        self.stderr_path = config.parent / f"{name}.err"
        with open(config.parent / f"{name}.out", "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "detkit", "train", "--config", str(config), "--device", "cpu", *extra],
                stdout=out,
                stderr=err,
                preexec_fn=_as_a_foreground_job,
            )

    def wait(self, seconds: float = 300) -> int:
        return self.process.wait(seconds)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


def _as_a_foreground_job() -> None:
    """SIGINT as a terminal's foreground job has it: a suite started in the background (`pytest &`)
    passes it on ignored, and detkit rightly leaves an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, run: DetkitTrain, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert run.process.poll() is None, run.stderr
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "runs", epochs=2)
    cfg = replace(cfg, runtime=RuntimeConfig(deterministic=True, checkpoint_every_steps=1))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_to_dict(cfg)))
    straight = DetkitTrain(config, "straight", "--name", "straight")
    assert straight.wait() == 0, straight.stderr

    victim = DetkitTrain(config, "killed", "--name", "killed")
    run_dir = tmp_path / "runs" / "killed"
    wait_for(run_dir / "last.pt", victim)
    victim.process.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    assert load_checkpoint(run_dir / "last.pt").training_state["step"] < 6  # it died before the end
    resumed = DetkitTrain(config, "resumed", "--resume", str(run_dir))
    assert resumed.wait() == 0, resumed.stderr
    assert_same_weights(tmp_path / "runs" / "straight" / "last.pt", run_dir / "last.pt")


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_exits_130_with_a_resumable_checkpoint(tiny_data, tmp_path):
    cfg = replace(tiny_config(tiny_data, tmp_path / "runs", epochs=20), runtime=RuntimeConfig(log_every_steps=1))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_to_dict(cfg)))
    run = DetkitTrain(config, "stopped", "--name", "stopped")
    wait_for(tmp_path / "runs" / "stopped" / "metrics.jsonl", run)  # training is under way
    run.process.send_signal(signal.SIGINT)
    assert run.wait(120) == 130, run.stderr
    stderr = run.stderr
    assert "interrupted:" in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert load_checkpoint(tmp_path / "runs" / "stopped" / "last.pt").training_state["step"] >= 1
    assert not list((tmp_path / "runs").rglob("*.tmp"))


def test_an_ignored_signal_stays_ignored_and_handlers_are_restored():
    from detkit.engine.interrupt import StopRequest

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def mine(signum, frame):
        return None

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, mine)
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a background job's Ctrl-C stays ignored
            signal.raise_signal(signal.SIGTERM)
            assert stop.requested
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
