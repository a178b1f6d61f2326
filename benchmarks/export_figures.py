"""The figures of `detkit export`: what each export costs and how close it stays, and how fast it runs.

    python benchmarks/export_figures.py check CHECKPOINT... --images DIR [--count 16]
        every checkpoint to ONNX and TorchScript, in float32 and with --half: export seconds, file
        MiB, the largest box and score difference against eager on DIR's images (export's own check),
        and what the check said
    python benchmarks/export_figures.py latency [--long-side 640] [--threads 1 2] [--images 8]
        Faster R-CNN (MobileNetV2-FPN trunk) and yolo at 640 px as checkpoints of random weights at the
        full-load thresholds (score 0: every image gives the most detections there can be), exported to
        both formats, then `detkit benchmark` on the checkpoint and its two files: its runtime table
        times them image by image in turn, so the ratios are of the same moments

Development only (not part of the package): it writes under --work (default /tmp/detkit_export_figures).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.engine.benchmark.models import random_model
from detkit.engine.export import ExportRequest, run_export
from detkit.errors import DetkitError

LATENCY_MODELS = (("faster_rcnn", "mobilenet_v2"), ("yolo", None))


def check(checkpoints: list[Path], images: str, count: int, work: Path) -> None:
    print("| checkpoint | format | precision | export s | MiB | max box px | max score | check |")
    print("|---|---|---|---|---|---|---|---|")
    for checkpoint in checkpoints:
        for fmt in ("onnx", "torchscript"):
            for half in (False, True):
                out = work / f"{checkpoint.parent.name}_{checkpoint.stem}{'_fp16' if half else ''}.{fmt}"
                request = ExportRequest(
                    weights=checkpoint, format=fmt, half=half, out=out, check_images=(images,), check_count=count
                )
                name, precision = f"{checkpoint.parent.name}/{checkpoint.name}", "fp16" if half else "fp32"
                try:
                    report = run_export(request)
                except DetkitError as error:
                    print(f"| {name} | {fmt} | {precision} | - | - | - | - | FAILED: {error} |")
                    continue
                agreement = report.agreement
                assert agreement is not None
                print(
                    f"| {name} | {fmt} | {precision} | {report.export_seconds:.1f} | {report.bytes / 2**20:.1f} "
                    f"| {agreement.max_box_diff:.2e} | {agreement.max_score_diff:.2e} | {agreement.summary()} |"
                )


def latency(long_side: int, threads: list[int], images: int, runs: int, work: Path) -> None:
    weights = []
    for pipeline_name, backbone in LATENCY_MODELS:
        entry = random_model(pipeline_name, backbone, long_side)
        checkpoint = work / f"{pipeline_name}_{long_side}.pt"
        names = [f"class{i}" for i in range(entry.config.model.num_classes)]
        save_checkpoint(
            checkpoint, Checkpoint(entry.config, entry.model.state_dict(), names, list(range(1, len(names) + 1)))
        )
        weights.append(checkpoint)
        for fmt in ("onnx", "torchscript"):
            out = checkpoint.with_suffix(f".{fmt}")
            report = run_export(ExportRequest(weights=checkpoint, format=fmt, out=out, check_count=2))
            weights.append(out)
            print(f"{out.name}: exported in {report.export_seconds:.1f} s, {report.bytes / 2**20:.1f} MiB")
    for count in threads:
        out = work / f"benchmark_{count}_threads"
        command = [sys.executable, "-m", "detkit", "benchmark", "--device", "cpu", "--threads", str(count),
                   "--images", str(images), "--runs", str(runs), "--out", str(out)]  # fmt: skip
        for path in weights:
            command += ["--weights", str(path)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        for group in json.loads((out / "benchmark.json").read_text())["runtimes"]:
            for model in group["models"]:
                print(
                    f"{count} threads | {group['pipeline']} | {Path(model['weights']).name} | {model['runtime']} "
                    f"| {model['median_ms_per_image']:.1f} ms/img | x eager {model['ratio_to_eager']:.3f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/detkit_export_figures"))
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check")
    checking.add_argument("checkpoints", type=Path, nargs="+")
    checking.add_argument("--images", required=True)
    checking.add_argument("--count", type=int, default=16)
    timing = commands.add_parser("latency")
    timing.add_argument("--long-side", type=int, default=640)
    timing.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    timing.add_argument("--images", type=int, default=8)
    timing.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "check":
        check(args.checkpoints, args.images, args.count, args.work)
    else:
        latency(args.long_side, args.threads, args.images, args.runs, args.work)


if __name__ == "__main__":
    main()
