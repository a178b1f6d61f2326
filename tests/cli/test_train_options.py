"""``detkit train``'s scale and fault options as a user types them."""

import json

import pytest
import torch
from typer.testing import CliRunner

from detkit.cli.main import app
from tests.cli.helpers import synthesize, train_on
from tests.cli.test_cli import TINY_CONFIG

runner = CliRunner()


@pytest.fixture(scope="module")
def data_and_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_options")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    return synthesize(root / "synthetic", num_train=4, num_val=2), config


def epoch_records(run_dir):
    return [
        r
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "train_images_per_second" in r
    ]


@pytest.mark.slow
def test_two_processes_from_the_command_line(data_and_config, tmp_path):
    data, config = data_and_config
    result = train_on(
        data, config, tmp_path, "ddp", "--devices", "2", "--seed", "3", "--deterministic", "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    assert "x 2 processes" in result.output and "img/s" in result.output
    (record,) = epoch_records(tmp_path / "ddp")
    assert record["train_images_per_second"] > 0 and 0 <= record["val"]["AP"] <= 1
    saved = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert saved["seed"] == 3 and saved["runtime"]["devices"] == 2 and saved["data"]["num_workers"] == 1


@pytest.mark.parametrize("precision", [["--amp", "--amp-dtype", "bf16"], ["--amp", "--amp-dtype", "fp16"]])
def test_mixed_precision_channels_last_and_accumulation_train_on_cpu(precision, data_and_config, tmp_path):
    data, config = data_and_config
    result = train_on(
        data,
        config,
        tmp_path,
        "amp",
        *precision,
        "--channels-last",
        "--accumulate",
        "2",
        "--set",
        "runtime.log_every_steps=1",
    )
    assert result.exit_code == 0, result.output
    steps = [r for r in map(json.loads, (tmp_path / "amp" / "metrics.jsonl").read_text().splitlines()) if "iter" in r]
    assert [s["iter"] for s in steps] == [1]  # 2 batches of 2 images, summed into one optimizer step
    assert torch.isfinite(torch.tensor(steps[0]["loss"]))
    saved = json.loads((tmp_path / "amp" / "config.json").read_text())["solver"]
    assert saved["amp"] and saved["channels_last"] and saved["accumulate_steps"] == 2


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if it were ever unpickled


@pytest.mark.parametrize(
    ("args", "exit_code", "needle"),
    [
        (["--devices", "0"], 3, "--devices 0"),
        (["--amp", "--amp-dtype", "fp8"], 3, "amp_dtype='fp8'"),
        (["--accumulate", "0"], 3, "accumulate_steps=0"),
        (["--workers", "-1"], 3, "--workers -1"),
        (["--devices", "2", "--sync-bn", "--device", "cpu"], 3, "sync-bn needs CUDA"),
        (["--set", "runtime.backend=mpi", "--device", "cpu"], 3, "runtime.backend='mpi'"),
    ],
)
def test_bad_scale_options_are_one_line(args, exit_code, needle, data_and_config, tmp_path, monkeypatch):
    data, config = data_and_config
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data / "annotations/instances_train.json"),
            "--images",
            str(data / "train"),
            "--config",
            str(config),
            *args,
        ],
    )
    assert result.exit_code == exit_code, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_resuming_from_a_malicious_checkpoint_runs_none_of_its_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "last.pt"
    torch.save({"format": "detkit-checkpoint-v1", "model": {}, "training_state": _Payload(marker)}, evil)
    (tmp_path / "config.json").write_text("{}")
    result = runner.invoke(app, ["train", "--resume", str(evil), "--device", "cpu"])
    assert result.exit_code == 4, result.output
    assert "refused" in result.output and "last.pt" in result.output and "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["voc", "yolo"])
def test_train_takes_a_voc_or_yolo_folder_directly(layout, data_and_config, tmp_path):
    from tests.cli.helpers import invoke

    data, config = data_and_config
    folder = tmp_path / layout
    converted = invoke(
        "data",
        "convert",
        str(data / "annotations/instances_train.json"),
        str(folder),
        "--to",
        layout,
        "--split",
        "train",
        "--images",
        str(data / "train"),
    )
    assert converted.exit_code == 0, converted.output
    source = folder / "data.yaml" if layout == "yolo" else folder
    result = invoke(
        "train",
        "--data",
        str(source),
        "--val-split",
        "train",
        "--config",
        str(config),
        "--output",
        str(tmp_path / "runs"),
        "--name",
        layout,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / layout
    saved = json.loads((run_dir / "config.json").read_text())
    categories = json.loads((data / "annotations/instances_train.json").read_text())["categories"]
    assert saved["model"]["num_classes"] == len(categories) and saved["data"]["train_annotations"].endswith(
        "instances_train.json"
    )
    (record,) = epoch_records(run_dir)
    assert 0 <= record["val"]["AP"] <= 1

    # eval reads the same folder; the split converted for it gets the model's category ids, so it scores the same AP
    metrics = tmp_path / f"{layout}_metrics.json"
    result = invoke(
        "eval",
        "--data",
        str(source),
        "--split",
        "train",
        "--weights",
        str(run_dir / "best.pt"),
        "--out",
        str(metrics),
        "--device",
        "cpu",
        "--score-thresh",
        "0.0",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(metrics.read_text())["stats"]["AP"] == pytest.approx(record["val"]["AP"], abs=1e-6)
