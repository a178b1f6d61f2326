"""The yardstick for detkit's MobileNetV2-FPN recipes: torchvision's own Faster / Mask R-CNN, trained with
torchvision's published recipe on the same trunk, data and sizes, scored by the same evaluator.

    python benchmarks/reference_training.py --train-json A.json --train-images DIR \
        [--val-json B.json --val-images DIR2] [--mask] --trunk-weights mobilenet_v2-b0353104.pth \
        --epochs 10 --out runs/reference

The model is built to match detkit's ``faster_rcnn_mobilenet`` preset (and ``mask_rcnn_mobilenet``
with ``--mask``) part for part:

- trunk: torchvision's ``mobilenet_v2`` with ImageNet weights and frozen BatchNorm; its first stage
  (stem and first block, stride 2) frozen as detkit's ``trainable_stages=4``;
- FPN: 128 channels over the stride 8/16/32 stage ends (``features[6]``, ``[13]``, ``[18]``, detkit's
  c3-c5) plus a max-pooled stride-64 level;
- anchors: sizes (32, 45), (64, 90), (128, 181), (256, 362), one tuple per level, ratios 0.5/1/2;
- RPN: 1000/1000 proposals before/after NMS in training, 500/500 in testing;
- RoI heads: 7x7 RoIAlign over P3-P5, two fc layers of 512, 256 sampled RoIs per image (detkit 0.1's
  count, kept as the reference's; detkit's preset now samples 64, a change the README measures);
- input: shorter side 384/448/512 chosen per batch in training, 512 in testing, longer side <= 683
  (``--min-sizes`` and ``--max-size`` to match a run given other sizes; testing at the largest).

The recipe is torchvision's detection reference (references/detection/train.py, and the fine-tuning
tutorial): SGD, momentum 0.9, weight decay 1e-4, linear warm-up from 0.001x over the first
``min(1000, iterations of epoch 1 - 1)`` iterations, then the learning rate x0.1 at each of
``--lr-steps`` epochs (default: at 2/3 and 8/9 of the run, the reference's 16 and 22 of 26), lr
0.02 x batch / 16 (the reference's linear scaling rule), horizontal flips with probability 0.5.

At the end (and every ``--eval-every`` epochs) the model detects on the validation images, writes a
COCO results file, and ``detkit eval --results`` scores it: the evaluator detkit's own runs use.
``metrics.jsonl`` gets a line per evaluation, with training images/s.

Development only: outside the ``detkit`` package, and not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

RETURN_LAYERS = {"6": "c3", "13": "c4", "18": "c5"}  # detkit's c3-c5 of MobileNetV2
FROZEN_LAYERS = 2  # features[0:2]: detkit's stage 1 (stem + first inverted residual)
ANCHOR_SIZES = ((32, 45), (64, 90), (128, 181), (256, 362))
TRAIN_MIN_SIZES, MAX_SIZE = (384, 448, 512), 683  # detkit's preset; --min-sizes / --max-size change both


# ---------------------------------------------------------------------------------------------
# Data


class CocoImages(torch.utils.data.Dataset):
    """A COCO json's images with at least one usable box: ``(float [3, H, W] in [0, 1], target)``,
    target boxes xyxy pixels, labels 1..K (0 is torchvision's background), masks ``uint8 [N, H, W]``."""

    def __init__(self, json_path: Path, images: Path, masks: bool, flip: bool) -> None:
        self.coco = COCO(str(json_path))
        self.images, self.masks, self.flip = images, masks, flip
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        # Training skips images without boxes, as the reference does; scoring keeps every image.
        ids = sorted(self.coco.getImgIds())
        self.ids = [i for i in ids if self._annotations(i)] if flip else ids

    def _annotations(self, image_id: int) -> list[dict]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))
        return [a for a in anns if a["bbox"][2] > 1 and a["bbox"][3] > 1]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image_id = self.ids[index]
        info = self.coco.loadImgs(image_id)[0]
        image = torchvision.io.decode_image(str(self.images / info["file_name"]), torchvision.io.ImageReadMode.RGB)
        image = image.float() / 255
        anns = self._annotations(image_id)
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        target = {
            "boxes": boxes.reshape(-1, 4),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": torch.tensor(image_id),
        }
        if self.masks:
            target["masks"] = torch.from_numpy(
                np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, *image.shape[1:]), np.uint8)
            )
        if self.flip and random.random() < 0.5:
            image, target = _flipped(image, target)
        return image, target


def _flipped(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    flipped = {**target, "boxes": boxes}
    if "masks" in target:
        flipped["masks"] = target["masks"].flip(-1)
    return image.flip(-1), flipped


def _collate(batch: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


# ---------------------------------------------------------------------------------------------
# Model


def build_model(
    num_classes: int, masks: bool, trunk_weights: Path | None, min_sizes: tuple[int, ...], max_size: int
) -> nn.Module:
    """torchvision's Faster (or Mask) R-CNN on ImageNet MobileNetV2 + FPN, shaped as detkit's preset."""
    trunk = torchvision.models.mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d)
    if trunk_weights is not None:
        state = torch.load(trunk_weights, map_location="cpu", weights_only=True)
        trunk.load_state_dict(state)  # FrozenBatchNorm2d drops the file's num_batches_tracked itself
    features = trunk.features
    for layer in list(features)[:FROZEN_LAYERS]:
        layer.requires_grad_(False)
    channels = [_out_channels(features[int(i)]) for i in RETURN_LAYERS]
    backbone = BackboneWithFPN(
        features,  # children named "0".."18", as RETURN_LAYERS names them
        return_layers=RETURN_LAYERS,
        in_channels_list=channels,
        out_channels=128,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES))
    roi_pool = torchvision.ops.MultiScaleRoIAlign(["c3", "c4", "c5"], output_size=7, sampling_ratio=2)
    settings = dict(
        min_size=min_sizes,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=1000,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=500,
        box_roi_pool=roi_pool,
        box_head=torchvision.models.detection.faster_rcnn.TwoMLPHead(128 * 7 * 7, 512),
        box_predictor=torchvision.models.detection.faster_rcnn.FastRCNNPredictor(512, num_classes + 1),
        box_batch_size_per_image=256,
    )
    if masks:
        mask_pool = torchvision.ops.MultiScaleRoIAlign(["c3", "c4", "c5"], output_size=14, sampling_ratio=2)
        return MaskRCNN(backbone, mask_roi_pool=mask_pool, **settings)
    return FasterRCNN(backbone, **settings)


def _out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


# ---------------------------------------------------------------------------------------------
# Recipe


def lr_at(iteration: int, epoch: int, args: argparse.Namespace, iters_per_epoch: int) -> float:
    """The reference's schedule: linear warm-up in epoch 0, then x0.1 at each of ``args.lr_steps``."""
    lr = args.lr * 0.1 ** sum(epoch >= step for step in args.lr_steps)
    warmup = min(1000, iters_per_epoch - 1)
    if epoch == 0 and iteration < warmup:
        alpha = iteration / warmup
        lr *= 0.001 * (1 - alpha) + alpha
    return lr


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    data = CocoImages(args.train_json, args.train_images, args.mask, flip=True)
    val = CocoImages(args.val_json or args.train_json, args.val_images or args.train_images, args.mask, flip=False)
    if args.max_images:  # a smoke run
        data.ids, val.ids = data.ids[: args.max_images], val.ids[: args.max_images]
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, shuffle=True, collate_fn=_collate, num_workers=args.workers
    )
    sizes = tuple(args.min_sizes)
    model = build_model(len(data.category_ids), args.mask, args.trunk_weights, sizes, args.max_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "metrics.jsonl").open("a")
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        seen, epoch_start = 0, time.perf_counter()
        for iteration, (images, targets) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(iteration, epoch, args, len(loader))
            # torchvision picks one of min_size per image; the reference trains at the tuple the same way
            losses = model(images, targets)
            loss = sum(losses.values())
            if not math.isfinite(float(loss.detach())):
                sys.exit(f"epoch {epoch + 1} iteration {iteration}: loss is {float(loss)}; lower --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
            if iteration % args.print_every == 0:
                parts = " ".join(f"{k.replace('loss_', '')} {float(v):.3f}" for k, v in losses.items())
                print(f"epoch {epoch + 1} it {iteration}/{len(loader)} loss {float(loss):.3f} {parts} "
                      f"lr {optimizer.param_groups[0]['lr']:.2e}", flush=True)  # fmt: skip
        images_per_second = seen / (time.perf_counter() - epoch_start)
        record: dict[str, object] = {"epoch": epoch + 1, "train_images_per_second": images_per_second}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            record |= evaluate(model, val, args, epoch + 1)
        record["wall_seconds"] = time.perf_counter() - started
        print(json.dumps(record), flush=True)
        log.write(json.dumps(record) + "\n")
        log.flush()
    torch.save(model.state_dict(), args.out / "model.pth")


@torch.inference_mode()
def evaluate(model: nn.Module, val: CocoImages, args: argparse.Namespace, epoch: int) -> dict[str, object]:
    """Detect on ``val``, write COCO results, score them with ``detkit eval --results``."""
    model.eval()
    model.transform.min_size = (args.min_sizes[-1],)  # the largest, as detkit tests at
    records = []
    for index in range(len(val)):
        image, target = val[index]
        output = model([image])[0]
        image_id = int(target["image_id"])
        for i, (box, score, label) in enumerate(zip(output["boxes"], output["scores"], output["labels"])):
            x0, y0, x1, y1 = (float(v) for v in box)
            record = {
                "image_id": image_id,
                "category_id": val.category_ids[int(label) - 1],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            }
            if "masks" in output:
                binary = np.asfortranarray((output["masks"][i, 0] > 0.5).numpy().astype(np.uint8))
                rle = mask_utils.encode(binary)
                record["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            records.append(record)
    model.transform.min_size = tuple(args.min_sizes)
    results = args.out / f"results_epoch{epoch}.json"
    results.write_text(json.dumps(records))
    scored: dict[str, object] = {}
    for iou_type in ("bbox", "segm") if args.mask else ("bbox",):
        metrics = args.out / f"metrics_epoch{epoch}_{iou_type}.json"
        command = [sys.executable, "-m", "detkit", "eval", "--coco", str(args.val_json or args.train_json),
                   "--results", str(results), "--out", str(metrics)]  # fmt: skip
        if iou_type == "segm":
            command += ["--iou-type", "segm"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        stats = _stats(json.loads(metrics.read_text()))
        scored |= {f"{iou_type}_AP": stats.get("AP"), f"{iou_type}_AP50": stats.get("AP50")}
    return scored


def _stats(metrics: object) -> dict[str, float]:
    """The first mapping in ``metrics`` (nested anywhere) that holds an ``AP50``."""
    if isinstance(metrics, dict):
        if "AP50" in metrics:
            return metrics
        for value in metrics.values():
            found = _stats(value)
            if found:
                return found
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-json", type=Path, required=True)
    parser.add_argument("--train-images", type=Path, required=True)
    parser.add_argument("--val-json", type=Path)
    parser.add_argument("--val-images", type=Path)
    parser.add_argument("--mask", action="store_true", help="Mask R-CNN (the jsons need segmentations)")
    parser.add_argument("--trunk-weights", type=Path, help="torchvision's ImageNet mobilenet_v2 .pth")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, help="default: 0.02 x batch / 16")
    parser.add_argument("--lr-steps", type=int, nargs="*", help="epochs at which lr x0.1 (default 2/3, 8/9)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--print-every", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int, help="train and score on the first N images only (smoke runs)")
    parser.add_argument("--min-sizes", type=int, nargs="+", default=list(TRAIN_MIN_SIZES), help="shorter sides")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE)
    parser.add_argument("--out", type=Path, default=Path("runs/reference"))
    args = parser.parse_args()
    if args.lr is None:
        args.lr = 0.02 * args.batch_size / 16
    if args.lr_steps is None:
        args.lr_steps = sorted({max(1, round(args.epochs * 2 / 3)), max(1, round(args.epochs * 8 / 9))})
    train(args)


if __name__ == "__main__":
    main()
