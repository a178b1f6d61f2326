"""`detkit benchmark --weights FILE`: exported files are rows beside the eager model, on the same images."""

from __future__ import annotations

import json

from tests.cli.helpers import invoke


def test_exported_files_are_timed_beside_the_checkpoint(exported, tmp_path):
    onnx, torchscript = exported("yolo", "onnx"), exported("yolo", "torchscript")
    out = tmp_path / "bench"
    result = invoke(
        "benchmark", "--weights", str(onnx.weights), "--weights", str(onnx.path), "--weights", str(torchscript.path),
        "--images", "1", "--runs", "2", "--device", "cpu", "--no-isolate", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads((out / "benchmark.json").read_text())
    rows = written["results"]
    assert [r["runtime"] for r in rows] == ["eager", "onnxruntime", "torchscript"]
    assert [r["weights"] for r in rows] == [str(onnx.weights), str(onnx.path), str(torchscript.path)]
    assert all(r["pipeline"] == "yolo" and r["ms_per_image"] > 0 for r in rows)
    assert rows[0]["params"] > 0 and rows[1]["params"] is None and rows[2]["gflops"] is None
    assert "runtime" in result.output and "onnxruntime" in result.output
    assert "| yolo.onnx |" in (out / "benchmark.md").read_text()
    # ... and the three again in one pass, image by image in turn: the ratios are of the same moments
    (runtimes,) = written["runtimes"]
    models = runtimes["models"]
    assert [m["runtime"] for m in models] == ["eager", "onnxruntime", "torchscript"] and models[0][
        "ratio_to_eager"
    ] == 1
    assert [len(ms) for ms in runtimes["pass_ms_per_image"]] == [2, 2, 2] and all(
        m["median_ms_per_image"] > 0 for m in models
    )
    assert "x eager" in result.output
