"""Which stage of a Faster R-CNN checkpoint holds it back, on a COCO json's first N images:

    python benchmarks/two_stage_diagnosis.py runs/NAME/last.pt [--json A.json --images DIR] [--count 32]

- RPN recall: the share of ground-truth boxes that some test-time proposal overlaps at IoU >= 0.5;
- the box classifier on the ground-truth boxes themselves (given as the RoIs): how often it names the
  right class, how often background, and its mean probability of the right class;
- the foreground share of a training RoI sample: candidates (training-time proposals plus the ground
  truth) at IoU >= 0.5 with some ground-truth box, per image, and the share of the RoI sample they
  could fill (at most a quarter of ``batch_size_per_image``, as the sampler takes).

This is how the coco128 plateau was found (README, BCCD and coco128 tables): the RPN found half the
objects, while the 256-RoI model classed 96-100% of the ground-truth boxes as background.

Development only (not part of the package).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from torchvision.ops import box_iou

from detkit.checkpoint import load_checkpoint, model_from_checkpoint
from detkit.data.coco import CocoDetection

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


@torch.inference_mode()
def diagnose(model: torch.nn.Module, dataset: CocoDetection, count: int, roi_sample: int) -> dict[str, float]:
    recalled = boxes = right = background = 0
    true_class_probability: list[float] = []
    foreground: list[int] = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[index]
        if len(target.boxes) == 0:
            continue
        for training in (False, True):  # test-time proposals for recall and the classifier, then training's
            model.train(training)
            batch, (resized,) = model.transform([image], [target])
            features = model.backbone(batch.tensors)
            proposals, _ = model.proposal_generator.propose(
                batch, list(features.values()), [resized] if training else None
            )
            overlaps = box_iou(resized.boxes, torch.cat([proposals[0], resized.boxes]) if training else proposals[0])
            if training:
                foreground.append(int((overlaps.max(0).values >= 0.5).sum()))
                continue
            recalled += int((overlaps.max(1).values >= 0.5).sum())
            boxes += len(resized.boxes)
            pooled = [features[name] for name in model.backbone.pooled_feature_names]
            probabilities = model.roi_heads(pooled, [resized.boxes])[0].softmax(-1)
            right += int((probabilities.argmax(1) == resized.labels).sum())
            background += int((probabilities.argmax(1) == probabilities.shape[1] - 1).sum())
            true_class_probability += probabilities[torch.arange(len(resized.labels)), resized.labels].tolist()
    model.eval()
    quota = roi_sample // 4
    return {
        "ground_truth_boxes": boxes,
        "rpn_recall_at_0.5": recalled / boxes,
        "classified_right": right / boxes,
        "classified_background": background / boxes,
        "mean_p_true_class": statistics.fmean(true_class_probability),
        "foreground_candidates_per_image": statistics.fmean(foreground),
        "foreground_share_of_sample": statistics.fmean(min(f, quota) for f in foreground) / roi_sample,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", type=Path, default=COCO128 / "annotations" / "instances_train2017.json")
    parser.add_argument("--images", type=Path, default=COCO128 / "train2017")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint).eval()
    dataset = CocoDetection(args.json, args.images, category_ids=checkpoint.category_ids)
    roi_sample = checkpoint.config.model.roi_heads.batch_size_per_image
    for name, value in diagnose(model, dataset, args.count, roi_sample).items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")


if __name__ == "__main__":
    main()
