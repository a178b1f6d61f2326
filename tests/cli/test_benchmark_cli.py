import json

import pytest

from tests.cli.helpers import invoke


def test_benchmark_writes_its_table_and_files(tmp_path):
    out = tmp_path / "bench"
    result = invoke(
        "benchmark",
        "--pipelines",
        "yolo",
        "--backbone",
        "resnet18",
        "--image-size",
        "64",
        "--images",
        "1",
        "--runs",
        "2",
        "--device",
        "cpu",
        "--set",
        "model.yolo.width_multiple=0.25",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "ms per image by stage" in result.output and "yolo" in result.output
    record = json.loads((out / "benchmark.json").read_text())
    assert (
        record["results"][0]["pipeline"] == "yolo" and record["environment"]["input"] == "1 synthetic scenes of 48x64"
    )
    assert {p.name for p in out.iterdir()} == {"benchmark.json", "benchmark.md", "stages.png", "accuracy_latency.png"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pipelines", "yolo,ssd"], "--pipelines 'yolo,ssd': choose from all"),
        (["--pipelines", "yolo", "--image-size", "100"], "yolo needs a multiple of 32"),
        (["--compare", "detectron2"], "choose torchvision or ultralytics"),
        (["--images", "0"], "--images 0: must be at least 1"),
        (["--amp", "--amp-dtype", "fp8"], "choose bf16 or fp16"),
        (["--weights", "missing.pt"], "missing.pt"),
        (["--pipelines", "yolo", "--data", "missing.json"], "missing.json"),
        (["--pipelines", "yolo", "--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_options_fail_with_one_line_and_no_output(tmp_path, args, message):
    out = tmp_path / "bench"
    result = invoke("benchmark", *args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
