"""What the CLI tests share: invoking the app, and training a pipeline on a synthesized dataset."""

from pathlib import Path

from typer.testing import CliRunner

from detkit.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def synthesize(folder: Path, num_train: int, num_val: int) -> Path:
    """A 64 px synthetic dataset in ``folder``."""
    result = invoke(
        "data", "synth", "--out", str(folder), "--num-train", str(num_train), "--num-val", str(num_val), "--size", "64"
    )
    assert result.exit_code == 0, result.output
    return folder


def train_on(synthetic: Path, config: Path, output: Path, name: str, *pipeline_args: str):
    """``detkit train`` on a synthesized dataset's train/val splits (CPU), with ``config`` overrides."""
    return invoke(
        "train",
        *pipeline_args,
        "--data",
        str(synthetic / "annotations/instances_train.json"),
        "--images",
        str(synthetic / "train"),
        "--val-data",
        str(synthetic / "annotations/instances_val.json"),
        "--val-images",
        str(synthetic / "val"),
        "--config",
        str(config),
        "--output",
        str(output),
        "--name",
        name,
        "--device",
        "cpu",
    )


def train_pipeline(tmp_path: Path, pipeline: str, config_text: str, name: str):
    """``detkit train --pipeline`` with ``config_text`` on a fresh 4 + 2 image synthetic dataset under
    ``tmp_path``; the run goes to ``tmp_path / "runs" / name``. Returns (CLI result, dataset folder)."""
    synthetic = synthesize(tmp_path / "synthetic", num_train=4, num_val=2)
    config = tmp_path / f"{name}.yaml"
    config.write_text(config_text)
    return train_on(synthetic, config, tmp_path / "runs", name, "--pipeline", pipeline), synthetic
