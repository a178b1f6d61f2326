"""How fast ``detkit eval --results`` scores a COCO results json, next to the libraries it runs on.

Four commands score the same files, each in a fresh interpreter (wall time of the whole process:
start-up, imports, json parsing, scoring, output), run alternately so that load on a shared
machine falls on all of them alike:

    detkit      python -m detkit eval --coco GT --results RESULTS --out ...   (the defaults)
    detkit-w0   the same with --workers 0 (one process per core for 100,000+ detections; default: one)
    pycocotools a plain script: COCO(GT), loadRes(RESULTS), COCOeval evaluate/accumulate/summarize
    faster      the same script on faster-coco-eval's COCO and COCOeval_faster (its defaults)

Cases (files are generated under --workdir, never in the repository):

    coco128     the coco128 ground truth (--coco128, its instances json) x 50,000 synthetic detections
    large       a COCO-val-sized synthetic ground truth: 5,000 images, ~36,000 boxes, 80 categories,
                x 500,000 synthetic detections (100 per image)

Detections are jittered copies of ground-truth boxes (some relabelled) plus random boxes, with
random scores, so every stage of the protocol has work to do. Run from the repository root:

    python benchmarks/eval_results_speed.py --coco128 PATH/instances_train2017.json --repeats 3

It prints each command's wall and CPU seconds (user + system of the process: on a machine shared
with other work, CPU time is the steadier measure), the ratios detkit/faster and pycocotools/detkit
on both, whether the 12 numbers agree, detkit's own step timings (``--timings``), the cores and
the thread settings. None starts threads for boxes; all but detkit-w0 run in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

_LIBRARY_SCRIPT = """
import contextlib, io, sys
gt_path, results_path, library = sys.argv[1:4]
if library == "pycocotools":
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        evaluator = COCOeval(gt, gt.loadRes(results_path), "bbox")
        evaluator.evaluate(); evaluator.accumulate(); evaluator.summarize()
else:
    from faster_coco_eval import COCO, COCOeval_faster
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        evaluator = COCOeval_faster(gt, gt.loadRes(results_path), "bbox")
        evaluator.evaluate(); evaluator.accumulate(); evaluator.summarize()
print(" ".join(f"{v:.6f}" for v in evaluator.stats[:12]))
"""


# ----------------------------------------------------------------------------- synthetic files


def synthetic_ground_truth(num_images: int, boxes_per_image: float, seed: int) -> dict:
    """A COCO instances dict: ``num_images`` 640x480 images, a Poisson number of boxes each (COCO
    val's mean is 7.3), 80 categories with COCO's non-contiguous ids, box sizes spanning COCO's
    small/medium/large ranges, 1% crowd."""
    rng = np.random.default_rng(seed)
    category_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    images = [{"id": i + 1, "width": 640, "height": 480, "file_name": f"{i + 1:012d}.jpg"} for i in range(num_images)]
    annotations = []
    for image in images:
        for _ in range(rng.poisson(boxes_per_image)):
            w, h = np.exp(rng.uniform(np.log(4), np.log(400), 2))
            x, y = rng.uniform(0, 640 - min(w, 639)), rng.uniform(0, 480 - min(h, 479))
            w, h = min(w, 640 - x), min(h, 480 - y)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": int(rng.choice(category_ids)),
                    "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                    "area": round(float(w * h), 2),
                    "iscrowd": int(rng.random() < 0.01),
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in category_ids]
    return {"images": images, "annotations": annotations, "categories": categories}


def synthetic_results(ground_truth: dict, num_detections: int, seed: int) -> list[dict]:
    """``num_detections`` records spread evenly over the images: per image, a jittered copy of each
    ground-truth box (10% relabelled), then random boxes; random scores."""
    rng = np.random.default_rng(seed)
    category_ids = [c["id"] for c in ground_truth["categories"]]
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        by_image[ann["image_id"]].append(ann)
    sizes = {image["id"]: (image["width"], image["height"]) for image in ground_truth["images"]}
    per_image = num_detections // len(by_image)
    extra = num_detections - per_image * len(by_image)
    records = []
    for index, (image_id, anns) in enumerate(by_image.items()):
        count = per_image + (index < extra)
        width, height = sizes[image_id]
        for k in range(count):
            if k < len(anns):
                x, y, w, h = anns[k]["bbox"]
                x, y = x + rng.normal(0, 0.08) * w, y + rng.normal(0, 0.08) * h
                w, h = w * np.exp(rng.normal(0, 0.1)), h * np.exp(rng.normal(0, 0.1))
                category = anns[k]["category_id"] if rng.random() > 0.1 else int(rng.choice(category_ids))
            else:
                w, h = np.exp(rng.uniform(np.log(4), np.log(300), 2))
                x, y = rng.uniform(0, max(width - w, 1)), rng.uniform(0, max(height - h, 1))
                category = int(rng.choice(category_ids))
            records.append(
                {
                    "image_id": image_id,
                    "category_id": int(category),
                    "bbox": [round(float(v), 3) for v in (x, y, w, h)],
                    "score": round(float(rng.random()), 5),
                }
            )
    return records


def prepared_cases(workdir: Path, coco128: Path | None, only: list[str]) -> dict[str, tuple[Path, Path]]:
    """``{case: (ground truth json, results json)}``, written once into ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, Path]] = {}
    if "coco128" in only:
        if coco128 is None or not coco128.is_file():
            print(f"skipping coco128: pass --coco128 (its instances json); got {coco128}")
        else:
            results = workdir / "coco128_50k_results.json"
            if not results.is_file():
                _write(results, synthetic_results(json.loads(coco128.read_text()), 50_000, seed=1))
            cases["coco128"] = (coco128, results)
    if "large" in only:
        gt, results = workdir / "large_gt.json", workdir / "large_500k_results.json"
        if not gt.is_file() or not results.is_file():
            ground_truth = synthetic_ground_truth(5000, 7.3, seed=2)
            _write(gt, ground_truth)
            _write(results, synthetic_results(ground_truth, 500_000, seed=3))
        cases["large"] = (gt, results)
    return cases


def _write(path: Path, document: object) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)


# ----------------------------------------------------------------------------- timing


@dataclass
class Runs:
    """Per command: wall and CPU seconds (user + system, of the child process) of each run, and the
    12 numbers of its last run."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    stats: dict[str, list[float]] = field(default_factory=dict)


def commands(gt: Path, results: Path, out: Path) -> dict[str, list[str]]:
    detkit = [sys.executable, "-m", "detkit", "eval", "--coco", str(gt), "--results", str(results)]
    return {
        "detkit": [*detkit, "--out", str(out)],
        "detkit-w0": [*detkit, "--out", str(out), "--workers", "0"],
        "pycocotools": [sys.executable, "-c", _LIBRARY_SCRIPT, str(gt), str(results), "pycocotools"],
        "faster": [sys.executable, "-c", _LIBRARY_SCRIPT, str(gt), str(results), "faster"],
    }


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stdout of ``command``; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def measure(gt: Path, results: Path, repeats: int) -> Runs:
    """Each round runs all three commands, the order rotating between rounds."""
    runs = Runs()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "metrics.json"
        named = commands(gt, results, out)
        names = list(named)
        for round_index in range(repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu, stdout = timed(named[name])
                runs.wall.setdefault(name, []).append(wall)
                runs.cpu.setdefault(name, []).append(cpu)
                if name.startswith("detkit"):
                    document = json.loads(out.read_text())
                    runs.stats[name] = [document["stats"][key] for key in STAT_NAMES]
                else:
                    runs.stats[name] = [float(v) for v in stdout.split()]
    return runs


def detkit_steps(gt: Path, results: Path) -> str:
    """detkit's own step line (``--timings``), from one more run."""
    with tempfile.TemporaryDirectory() as scratch:
        command = commands(gt, results, Path(scratch) / "metrics.json")["detkit"] + ["--timings"]
        output = timed(command)[2]
    return next((line for line in output.splitlines() if line.startswith("timings")), "(no timings line)")


def startup_seconds(repeats: int) -> tuple[float, float]:
    """Median wall seconds of an interpreter that does nothing, and of one that imports detkit's CLI."""
    nothing = statistics.median(timed([sys.executable, "-c", "pass"])[0] for _ in range(repeats))
    cli = statistics.median(timed([sys.executable, "-c", "import detkit.cli.main"])[0] for _ in range(repeats))
    return nothing, cli


def report(case: str, runs: Runs) -> None:
    wall = {name: statistics.median(values) for name, values in runs.wall.items()}
    cpu = {name: statistics.median(values) for name, values in runs.cpu.items()}
    for name in runs.wall:
        print(
            f"  {name:12s} wall median {wall[name]:7.2f} s ({', '.join(f'{v:.2f}' for v in runs.wall[name])})  "
            f"cpu median {cpu[name]:7.2f} s"
        )
    for label, seconds in (("wall", wall), ("cpu", cpu)):
        for name in ("detkit", "detkit-w0"):
            print(
                f"  {case} {label}: {name} / faster-coco-eval = {seconds[name] / seconds['faster']:.2f}x "
                f"(goal <= 1.25x), pycocotools / {name} = {seconds['pycocotools'] / seconds[name]:.1f}x "
                "(goal >= 10x on large)"
            )
    reference = runs.stats["pycocotools"]
    agree = {name: _same(values, reference) for name, values in runs.stats.items() if name != "pycocotools"}
    print(f"  12 stats equal pycocotools' (1e-6, its printed precision): {agree}")


def _same(values: list[float], reference: list[float]) -> bool:
    return len(values) == len(reference) and all(abs(a - b) <= 1e-6 for a, b in zip(values, reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coco128", type=Path, help="coco128's annotations/instances_train2017.json")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "detkit-eval-speed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["coco128", "large"], choices=["coco128", "large"])
    args = parser.parse_args()
    threads = {key: os.environ.get(key, "unset") for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(
        f"cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}, {threads}, "
        f"python {sys.version.split()[0]}"
    )
    nothing, cli = startup_seconds(args.repeats)
    print(f"start-up: python -c pass {nothing:.2f} s, python -c 'import detkit.cli.main' {cli:.2f} s (medians)")
    for case, (gt, results) in prepared_cases(args.workdir, args.coco128, args.cases).items():
        print(f"{case}: {gt} x {results} ({results.stat().st_size / 1e6:.0f} MB)", flush=True)
        report(case, measure(gt, results, args.repeats))
        print(f"  {detkit_steps(gt, results)}", flush=True)


if __name__ == "__main__":
    main()
