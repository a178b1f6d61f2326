"""detkit's `yolo` preset against Ultralytics' YOLOv8n as a peer, on the CPU, calls alternated.

Ultralytics is AGPL-3.0: never a detkit dependency. Run this in a separate virtual environment that
has ultralytics and sees detkit's source (it is not part of the package and skips without ultralytics):

    python3 -m venv /work/ultra-venv && /work/ultra-venv/bin/pip install ultralytics
    PYTHONPATH=. /work/ultra-venv/bin/python benchmarks/yolo_vs_ultralytics.py --threads 1 2

Both models are built from their configs with random weights (80 classes) and timed on the same
inputs, one call of each in turn (A, B, A, B, ...) so that load from other processes falls on both;
medians and ratios (detkit / YOLOv8n) are reported, both the ratio of the medians and the median of
each round's ratio. What is measured:

- params and FLOPs (``torch.utils.flop_counter``: a multiply-add counts 2) of the network at 640x640;
- forward: a ``[1, 3, S, S]`` tensor through the network and the box decode (what Ultralytics'
  ``Detect`` does in eval mode), at S = 320 and 640;
- forward + postprocess at 640: detkit's whole ``model([image])`` (letterbox, network, decode, score
  threshold, top-k, NMS, boxes back to the image) against Ultralytics' network, ``non_max_suppression``
  and ``scale_boxes``; score threshold 0 in both so that every candidate reaches NMS (random weights
  score below any real threshold), each library's own candidate caps;
- training images/s: one optimizer step (AdamW) of a batch of 8 images at 320x320 with 4 boxes each,
  loss and backward included, no data loading, in each library's own loss.

Ultralytics fuses Conv+BN in place for prediction; both are timed unfused and fused (detkit's
Conv2d+BatchNorm2d pairs folded here by ``torch.nn.utils.fusion.fuse_conv_bn_eval``). ``--profile``
prints which ATen convolution kernels each model's forward runs (oneDNN ``mkldnn_convolution`` or the
``_slow_conv2d_forward`` fallback) and their share of the time.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

try:
    import ultralytics  # noqa: F401
except ImportError:
    print("skipped: ultralytics is not importable (run this in its own venv, see the docstring)")
    sys.exit(0)

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.flop_counter import FlopCounterMode
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.nms import non_max_suppression
from ultralytics.utils.ops import scale_boxes

from detkit.modeling.yolo.decode import decode_boxes, grid_points
from detkit.pipelines import PIPELINES, PRESETS
from detkit.structures import Target

NUM_CLASSES = 80
TRAIN_BATCH, TRAIN_SIDE, BOXES_PER_IMAGE = 8, 320, 4


# ---------------------------------------------------------------------------------------------
# Models


def detkit_model(preset: str, overrides: dict[str, object] | None = None) -> nn.Module:
    cfg = PRESETS[preset]()
    model_cfg = cfg.model
    yolo = replace(model_cfg.yolo, score_thresh=0.0, **(overrides or {}))
    backbone = replace(model_cfg.backbone, pretrained=False)
    torch.manual_seed(0)
    model: nn.Module = PIPELINES["yolo"].build(
        replace(model_cfg, num_classes=NUM_CLASSES, backbone=backbone, yolo=yolo)
    )
    return model.eval()


def ultralytics_model() -> DetectionModel:
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=NUM_CLASSES, verbose=False)
    model.args = get_cfg()  # the loss reads its gains (box 7.5, cls 0.5, dfl 1.5) from here
    return model.eval()


def fold_detkit_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``Conv2d`` directly followed by a ``BatchNorm2d`` in a Sequential
    folded into it (the BN replaced by an identity): what a generic folding pass does at inference."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, norm)
                module[i + 1] = nn.Identity()
    return folded.to(memory_format=torch.channels_last)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# What is timed


def detkit_forward(model: nn.Module) -> Callable[[torch.Tensor], object]:
    """Network and box decode on a ready ``[N, 3, S, S]`` tensor (the letterbox not included)."""

    def run(x: torch.Tensor) -> object:
        x = x.contiguous(memory_format=torch.channels_last)
        predictions = model.head(model.neck(list(model.trunk(x).values())))
        points, strides = grid_points(predictions.feature_sizes, model.strides, x.device)
        boxes = decode_boxes(predictions.box_deltas, points, strides)
        return boxes, predictions.cls_logits.sigmoid(), predictions.obj_logits.sigmoid()

    return run


def ultralytics_forward(model: DetectionModel) -> Callable[[torch.Tensor], object]:
    return lambda x: model(x)


def detkit_end_to_end(model: nn.Module) -> Callable[[torch.Tensor], object]:
    return lambda x: model(list(x)).detections


def ultralytics_end_to_end(model: DetectionModel) -> Callable[[torch.Tensor], object]:
    def run(x: torch.Tensor) -> object:
        predictions = model(x)
        kept = non_max_suppression(predictions, conf_thres=0.0, iou_thres=0.65, max_det=300)
        for det in kept:
            det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], x.shape[2:])
        return kept

    return run


def training_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``[B, 3, S, S]``, boxes ``[B, n, 4]`` xyxy pixels, labels ``[B, n]``: the same for both."""
    images = torch.rand(TRAIN_BATCH, 3, TRAIN_SIDE, TRAIN_SIDE, generator=generator)
    corner = torch.rand(TRAIN_BATCH, BOXES_PER_IMAGE, 2, generator=generator) * TRAIN_SIDE * 0.6
    size = 16 + torch.rand(TRAIN_BATCH, BOXES_PER_IMAGE, 2, generator=generator) * TRAIN_SIDE * 0.35
    boxes = torch.cat([corner, (corner + size).clamp(max=TRAIN_SIDE)], dim=2)
    labels = torch.randint(NUM_CLASSES, (TRAIN_BATCH, BOXES_PER_IMAGE), generator=generator)
    return images, boxes, labels


def detkit_train_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    images, boxes, labels = batch
    targets = [Target(boxes=b, labels=lab, image_id=i) for i, (b, lab) in enumerate(zip(boxes, labels))]
    weights = PRESETS["yolo"]().solver.loss_weights
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> object:
        model.train()
        losses = model(list(images), targets).losses
        loss = sum(getattr(weights, name) * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def ultralytics_train_step(model: DetectionModel, batch: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    images, boxes, labels = batch
    xywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1) / TRAIN_SIDE
    targets = {
        "img": images,
        "batch_idx": torch.arange(TRAIN_BATCH).repeat_interleave(BOXES_PER_IMAGE).float(),
        "cls": labels.reshape(-1, 1).float(),
        "bboxes": xywh.reshape(-1, 4),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> object:
        model.train()
        loss, _ = model.loss(targets)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        return loss.sum().item()

    return step


# ---------------------------------------------------------------------------------------------
# Alternated timing


def alternate(calls: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call per round, calls run in turn within a round; warm-up rounds dropped."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def ratio_line(times: dict[str, list[float]], mine: str, peer: str) -> str:
    paired = statistics.median(a / b for a, b in zip(times[mine], times[peer]))
    of_medians = statistics.median(times[mine]) / statistics.median(times[peer])
    return f"{mine} / {peer}: {of_medians:.3f} (median of per-round ratios {paired:.3f})"


def report(title: str, times: dict[str, list[float]], pairs: list[tuple[str, str]], per_second: int = 0) -> None:
    print(f"\n{title}")
    for name, values in times.items():
        median = statistics.median(values)
        rate = f", {per_second / median:.2f} img/s" if per_second else ""
        print(f"  {name:28s} {median * 1000:8.1f} ms (min {min(values) * 1000:.1f}, n={len(values)}){rate}")
    for mine, peer in pairs:
        print("  " + ratio_line(times, mine, peer))


def flops(call: Callable[[], object]) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        call()
    return counter.get_total_flops() / 1e9


def profile_convolutions(name: str, call: Callable[[], object]) -> None:
    """Which ATen kernels the convolutions of one forward pass run, and their share of its CPU time."""
    with torch.no_grad():
        call()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            call()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kernels = ("mkldnn_convolution", "_slow_conv2d_forward", "thnn_conv", "_nnpack", "batch_norm", "silu")
    print(f"\n  {name}: self CPU time by op (of {total / 1000:.1f} ms)")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        marker = " <-" if any(k in event.key for k in kernels) else ""
        share = 100 * event.self_cpu_time_total / total
        print(f"    {event.key:42s} {event.count:5d} calls {share:5.1f}%{marker}")


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per measurement (latency)")
    parser.add_argument("--train-rounds", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="print the ATen kernels of each forward at 640")
    parser.add_argument(
        "--mobilenet", action="store_true", help="also time the yolo_mobilenet preset at width 0.25 (the old yolo)"
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()

    mine, peer = detkit_model("yolo"), ultralytics_model()
    models = {"detkit yolo (csp_n)": mine, "YOLOv8n": peer}
    fused = {"detkit yolo fused": fold_detkit_batchnorm(mine), "YOLOv8n fused": copy.deepcopy(peer).fuse(verbose=False)}
    forwards: dict[str, Callable[[torch.Tensor], object]] = {
        "detkit yolo (csp_n)": detkit_forward(mine),
        "YOLOv8n": ultralytics_forward(peer),
        "detkit yolo fused": detkit_forward(fused["detkit yolo fused"]),
        "YOLOv8n fused": ultralytics_forward(fused["YOLOv8n fused"]),
    }
    pairs = [("detkit yolo (csp_n)", "YOLOv8n"), ("detkit yolo fused", "YOLOv8n fused")]
    if args.mobilenet:
        old = detkit_model("yolo_mobilenet", {"width_multiple": 0.25})
        forwards["detkit yolo_mobilenet w0.25"] = detkit_forward(old)
        models["detkit yolo_mobilenet w0.25"] = old
        pairs.append(("detkit yolo_mobilenet w0.25", "YOLOv8n"))

    print(f"torch {torch.__version__}, ultralytics {ultralytics.__version__}, {os.cpu_count()} CPUs")
    print(f"load average at start: {os.getloadavg()}")
    x640 = torch.rand(1, 3, 640, 640)
    print("\nparams (M) and GFLOPs at 640x640 (network + decode)")
    for name, model in models.items():
        network = count_params(model) / 1e6
        print(f"  {name:28s} {network:6.3f} M  {flops(lambda f=forwards[name]: f(x640)):6.2f} GFLOPs")

    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n=== {threads} thread(s) ===")
        with torch.no_grad():
            for side in () if args.skip_latency else (320, 640):
                x = torch.rand(1, 3, side, side)
                calls = {name: (lambda f=f, x=x: f(x)) for name, f in forwards.items()}
                report(f"forward {side}x{side}, batch 1", alternate(calls, args.rounds, warmup=3), pairs)
            end_to_end = {
                "detkit yolo (csp_n)": detkit_end_to_end(mine),
                "YOLOv8n": ultralytics_end_to_end(peer),
                "detkit yolo fused": detkit_end_to_end(fused["detkit yolo fused"]),
                "YOLOv8n fused": ultralytics_end_to_end(fused["YOLOv8n fused"]),
            }
            calls = {name: (lambda f=f: f(x640)) for name, f in end_to_end.items()}
            if not args.skip_latency:
                title = "forward + postprocess 640x640 (score threshold 0)"
                report(title, alternate(calls, args.rounds, warmup=3), pairs[:2])
        if not args.skip_train:
            batch = training_batch(torch.Generator().manual_seed(0))
            # Trained at TRAIN_SIDE itself: the preset's multi-scale sides (512-704) would resize the batch.
            at_train_side = detkit_model("yolo", {"image_size": TRAIN_SIDE, "train_sizes": (TRAIN_SIDE,)})
            steps = {
                "detkit yolo (csp_n)": detkit_train_step(at_train_side, batch),
                "YOLOv8n": ultralytics_train_step(copy.deepcopy(peer), batch),
            }
            if args.mobilenet:
                old_at_train_side = detkit_model(
                    "yolo_mobilenet", {"width_multiple": 0.25, "image_size": TRAIN_SIDE, "train_sizes": (TRAIN_SIDE,)}
                )
                steps["detkit yolo_mobilenet w0.25"] = detkit_train_step(old_at_train_side, batch)
            title = f"training step, batch {TRAIN_BATCH} at {TRAIN_SIDE}x{TRAIN_SIDE} (AdamW)"
            train_pairs = [pair for pair in pairs if pair[0] in steps]
            report(title, alternate(steps, args.train_rounds, warmup=2), train_pairs, per_second=TRAIN_BATCH)
        if args.profile:
            for name, f in forwards.items():
                profile_convolutions(name, lambda f=f: f(x640))
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
