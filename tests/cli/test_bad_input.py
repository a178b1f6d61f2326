"""Every command against bad input: one ``error:`` line naming the file, a non-zero exit, no
traceback, and nothing left behind in the output location.

The cases are a table (command x kind of bad input); ``world`` builds the bad files once.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from detkit.cli.main import app
from tests.cli.helpers import synthesize, train_on
from tests.cli.test_cli import TINY_CONFIG

runner = CliRunner()

TINY_YOLO_CONFIG = """
solver: {epochs: 1, warmup_iters: 1}
data: {batch_size: 2}
model:
  backbone: {name: resnet18, pretrained: false, norm: bn}
  yolo: {image_size: 64, width_multiple: 0.125, neck_channels: [16, 32, 64], head_channels: 16}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Paths of a tiny trained Faster R-CNN and YOLO, a good dataset, and a folder of bad files."""
    root = tmp_path_factory.mktemp("bad_input")
    data = synthesize(root / "synthetic", num_train=4, num_val=2)
    for name, text, pipeline in (("faster", TINY_CONFIG, "faster_rcnn"), ("yolo", TINY_YOLO_CONFIG, "yolo")):
        (root / f"{name}.yaml").write_text(text)
        result = train_on(data, root / f"{name}.yaml", root / "runs", name, "--pipeline", pipeline)
        assert result.exit_code == 0, result.output
    bad = root / "bad"
    bad.mkdir()
    _write_bad_files(bad, data)
    return {
        "data": data,
        "train": data / "annotations/instances_train.json",
        "val": data / "annotations/instances_val.json",
        "faster": root / "runs/faster/best.pt",
        "faster_run": root / "runs/faster",
        "yolo": root / "runs/yolo/best.pt",
        "yolo_run": root / "runs/yolo",
        "tiny": root / "faster.yaml",
        "bad": bad,
        "broken_images": _dataset_with(root / "broken_images", data, _corrupt),
        "truncated_images": _dataset_with(root / "truncated_images", data, _truncate),
    }


def _write_bad_files(bad: Path, data: Path) -> None:
    cv2.imwrite(str(bad / "photo.jpg"), np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    photo = (bad / "photo.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(photo[: len(photo) * 9 // 10])  # OpenCV still decodes this one
    (bad / "corrupt.jpg").write_bytes(os.urandom(600))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.txt").write_text("not an image\n")
    (bad / "table.csv").write_text("image,x,y\n")
    val = (data / "annotations/instances_val.json").read_text()
    (bad / "truncated.json").write_text(val[: len(val) // 2])
    (bad / "list.json").write_text("[1, 2, 3]")
    (bad / "no_images.json").write_text(json.dumps({"annotations": [], "categories": []}))
    (bad / "results_dict.json").write_text(json.dumps({"image_id": 1}))
    (bad / "results_no_score.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}]))
    two = json.loads((data / "annotations/instances_train.json").read_text())
    two["categories"] = two["categories"][:2]
    two["annotations"] = [a for a in two["annotations"] if a["category_id"] in {c["id"] for c in two["categories"]}]
    (bad / "two_classes.json").write_text(json.dumps(two))
    renamed = json.loads(val)
    renamed["categories"][0]["name"] = "platelet"
    (bad / "renamed.json").write_text(json.dumps(renamed))
    (bad / "garbage.pt").write_bytes(os.urandom(256))
    (bad / "image.pt").write_bytes(photo)
    (bad / "a_file").write_text("")
    _write_hostile_files(bad, data)


def _write_hostile_files(bad: Path, data: Path) -> None:
    """What a careless user or an attacker hands detkit: names leading out of the image folder, alias
    bombs, non-UTF-8 text, a decompression bomb, data with nothing to train on."""
    train = json.loads((data / "annotations/instances_train.json").read_text())
    escaping = json.loads(json.dumps(train))
    escaping["images"][0]["file_name"] = "../../../../../../etc/passwd"
    (bad / "escaping.json").write_text(json.dumps(escaping))
    (bad / "no_images_listed.json").write_text(json.dumps({**train, "images": [], "annotations": []}))
    (bad / "no_boxes.json").write_text(json.dumps({**train, "annotations": []}))
    listed = [
        {
            "image_id": 1,
            "category_id": train["categories"][0]["id"],
            "bbox": [0, 0, 4, 4],
            "score": 0.5,
            "file_name": "nowhere.png",
        }
    ]
    (bad / "results_unknown_file.json").write_text(json.dumps(listed))
    val = json.loads((data / "annotations/instances_val.json").read_text())
    ann = val["annotations"][0]
    boxes = [{"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 0.5}]
    (bad / "results_boxes.json").write_text(json.dumps(boxes))
    (bad / "results_masks.json").write_text(json.dumps([{**boxes[0], "segmentation": ann["segmentation"]}]))
    for mask_free in val["annotations"]:
        del mask_free["segmentation"]
    (bad / "val_without_masks.json").write_text(json.dumps(val))
    (bad / "latin1.yaml").write_bytes("solver: {lr: 0.01}  # d\xe9j\xe0 vu\n".encode("latin-1"))
    (bad / "nan_lr.yaml").write_text("solver: {lr: .nan}\n")
    (bad / "alias_bomb.yaml").write_text(_alias_bomb("name"))
    (bad / "yolo_bomb").mkdir()
    (bad / "yolo_bomb" / "data.yaml").write_text("names: [a]\n" + _alias_bomb("val"))
    (bad / "bomb.png").write_bytes(_png_declaring(20000, 20000))
    (bad / "users_folder").mkdir()
    (bad / "users_folder" / "thesis.tex").write_text("keep me")


def _alias_bomb(key: str) -> str:
    """Nine levels of nine YAML aliases under one key: ~1 KB of text, 9^9 items when walked."""
    lines = [f"{key}:", '  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _png_declaring(width: int, height: int) -> bytes:
    """A complete (IEND-terminated) PNG of a few bytes whose header declares ``width`` x ``height``."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _dataset_with(folder: Path, data: Path, damage) -> Path:
    shutil.copytree(data, folder)
    for split in ("train", "val"):
        damage(sorted((folder / split).iterdir())[0])
    return folder


def _corrupt(image: Path) -> None:
    image.write_bytes(os.urandom(300))


def _truncate(image: Path) -> None:
    payload = image.read_bytes()
    image.write_bytes(payload[: len(payload) * 9 // 10])


def _train_on(dataset: str) -> list[str]:
    return [
        "train",
        "--data",
        f"{{{dataset}}}/annotations/instances_train.json",
        "--images",
        f"{{{dataset}}}/train",
        "--val-data",
        f"{{{dataset}}}/annotations/instances_val.json",
        "--val-images",
        f"{{{dataset}}}/val",
        "--config",
        "{tiny}",
        "--output",
        "{out}",
    ]


@dataclass(frozen=True)
class Case:
    args: list[str]  # "{name}" is replaced by world[name], "{out}" by the case's output folder
    exit_code: int
    needle: str  # must appear in the error line


CASES = {
    # train
    "train/missing-data": Case(["train", "--data", "{bad}/nope.json", "--output", "{out}"], 2, "nope.json: not found"),
    "train/truncated-json": Case(
        ["train", "--data", "{bad}/truncated.json", "--images", "{data}/val", "--output", "{out}"], 2, "invalid JSON"
    ),
    "train/json-list": Case(
        ["train", "--data", "{bad}/list.json", "--images", "{data}/val", "--output", "{out}"], 2, "not a JSON object"
    ),
    "train/json-without-images": Case(
        ["train", "--data", "{bad}/no_images.json", "--images", "{data}/val", "--output", "{out}"], 2, "no 'images'"
    ),
    "train/csv": Case(["train", "--data", "{bad}/table.csv", "--output", "{out}"], 2, "not a dataset detkit reads"),
    "train/corrupt-image": Case(_train_on("broken_images"), 2, "not a readable image"),
    "train/corrupt-image-in-a-worker": Case(_train_on("broken_images") + ["--workers", "1"], 2, "not a readable image"),
    "train/truncated-image": Case(_train_on("truncated_images"), 2, "truncated image"),
    "train/missing-config": Case(
        ["train", "--config", "{bad}/nope.yaml", "--output", "{out}"], 3, "config file not found"
    ),
    "train/resume-as-another-pipeline": Case(
        ["train", "--resume", "{yolo_run}", "--pipeline", "faster_rcnn"], 3, "continues a yolo run"
    ),
    "train/resume-with-another-class-count": Case(
        [
            "train",
            "--resume",
            "{faster_run}",
            "--data",
            "{bad}/two_classes.json",
            "--images",
            "{data}/train",
            "--val-data",
            "{val}",
            "--val-images",
            "{data}/val",
        ],
        4,
        "with 5 classes as a faster_rcnn model with 2",
    ),
    "train/weights-of-another-pipeline": Case(
        ["train", "--weights", "{yolo}", "--pipeline", "faster_rcnn", "--data", "{train}", "--output", "{out}"],
        4,
        "holds a yolo model",
    ),
    "train/weights-not-a-checkpoint": Case(
        ["train", "--weights", "{bad}/image.pt", "--output", "{out}"], 4, "not a PyTorch checkpoint (a JPEG image)"
    ),
    # detect
    "detect/corrupt-image": Case(
        ["detect", "{bad}/corrupt.jpg", "--weights", "{faster}", "--out", "{out}"], 2, "not a readable image"
    ),
    "detect/truncated-image": Case(
        ["detect", "{bad}/truncated.jpg", "--weights", "{faster}", "--out", "{out}"], 2, "truncated image"
    ),
    "detect/empty-image": Case(
        ["detect", "{bad}/empty.jpg", "--weights", "{faster}", "--out", "{out}"], 2, "empty.jpg"
    ),
    "detect/text-file": Case(
        ["detect", "{bad}/notes.txt", "--weights", "{faster}", "--out", "{out}"], 2, "notes.txt: not a readable image"
    ),
    "detect/folder-with-a-corrupt-image": Case(
        ["detect", "{broken_images}/val", "--weights", "{faster}", "--out", "{out}"], 2, "not a readable image"
    ),
    "detect/missing-image": Case(
        ["detect", "{bad}/nope.jpg", "--weights", "{faster}", "--out", "{out}"], 2, "nope.jpg: no such file"
    ),
    "detect/garbage-weights": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{bad}/garbage.pt", "--out", "{out}"], 4, "garbage.pt"
    ),
    "detect/json-as-weights": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{val}", "--out", "{out}"],
        4,
        "not a PyTorch checkpoint (JSON or text)",
    ),
    "detect/missing-weights": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{bad}/nope.pt", "--out", "{out}"], 4, "checkpoint not found"
    ),
    # eval
    "eval/truncated-json": Case(
        [
            "eval",
            "--coco",
            "{bad}/truncated.json",
            "--weights",
            "{faster}",
            "--images",
            "{data}/val",
            "--out",
            "{out}/m.json",
        ],
        2,
        "invalid JSON",
    ),
    "eval/json-list": Case(
        [
            "eval",
            "--coco",
            "{bad}/list.json",
            "--weights",
            "{faster}",
            "--images",
            "{data}/val",
            "--out",
            "{out}/m.json",
        ],
        2,
        "not a JSON object",
    ),
    "eval/csv": Case(
        [
            "eval",
            "--coco",
            "{bad}/table.csv",
            "--weights",
            "{faster}",
            "--images",
            "{data}/val",
            "--out",
            "{out}/m.json",
        ],
        2,
        "table.csv",
    ),
    "eval/missing-json": Case(
        ["eval", "--coco", "{bad}/nope.json", "--weights", "{faster}", "--out", "{out}/m.json"], 2, "nope.json"
    ),
    "eval/corrupt-image": Case(
        [
            "eval",
            "--coco",
            "{broken_images}/annotations/instances_val.json",
            "--images",
            "{broken_images}/val",
            "--weights",
            "{faster}",
            "--out",
            "{out}/m.json",
        ],
        2,
        "not a readable image",
    ),
    "eval/truncated-image": Case(
        [
            "eval",
            "--coco",
            "{truncated_images}/annotations/instances_val.json",
            "--images",
            "{truncated_images}/val",
            "--weights",
            "{faster}",
            "--out",
            "{out}/m.json",
        ],
        2,
        "truncated image",
    ),
    "eval/categories-the-model-names-otherwise": Case(
        [
            "eval",
            "--coco",
            "{bad}/renamed.json",
            "--images",
            "{data}/val",
            "--weights",
            "{faster}",
            "--out",
            "{out}/m.json",
        ],
        2,
        "is 'platelet' here but",
    ),
    "eval/results-not-a-list": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/results_dict.json", "--out", "{out}/m.json"],
        2,
        "expected a JSON list",
    ),
    "eval/results-without-score": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/results_no_score.json", "--out", "{out}/m.json"],
        2,
        "record 0 has no 'score'",
    ),
    "eval/segm-of-results-without-masks": Case(
        [
            "eval",
            "--coco",
            "{val}",
            "--results",
            "{bad}/results_boxes.json",
            "--iou-type",
            "segm",
            "--out",
            "{out}/m.json",
        ],
        2,
        "record 0 has no 'segmentation', which segm evaluation needs",
    ),
    "eval/mask-results-on-a-ground-truth-without-masks": Case(
        [
            "eval",
            "--coco",
            "{bad}/val_without_masks.json",
            "--results",
            "{bad}/results_masks.json",
            "--out",
            "{out}/m.json",
        ],
        2,
        "val_without_masks.json: no annotation has a 'segmentation'",
    ),
    "eval/unknown-iou-type": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/results_boxes.json", "--iou-type", "keypoints"],
        3,
        "--iou-type 'keypoints': use bbox or segm",
    ),
    "eval/iou-type-with-a-model": Case(
        ["eval", "--coco", "{val}", "--weights", "{faster}", "--iou-type", "segm", "--out", "{out}/m.json"],
        3,
        "--iou-type segm applies to --results",
    ),
    "eval/negative-workers": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/results_boxes.json", "--workers", "-1"],
        3,
        "--workers -1: must be at least 0",
    ),
    "eval/workers-with-a-model": Case(
        ["eval", "--coco", "{val}", "--weights", "{faster}", "--workers", "2", "--out", "{out}/m.json"],
        3,
        "--workers 2 applies to --results",
    ),
    "eval/truncated-results": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/truncated.json", "--out", "{out}/m.json"], 2, "invalid JSON"
    ),
    "eval/garbage-weights": Case(
        ["eval", "--coco", "{val}", "--weights", "{bad}/garbage.pt", "--images", "{data}/val", "--out", "{out}/m.json"],
        4,
        "garbage.pt",
    ),
    # benchmark
    "benchmark/garbage-weights": Case(
        ["benchmark", "--weights", "{bad}/garbage.pt", "--out", "{out}/b.json"], 4, "garbage.pt"
    ),
    "benchmark/missing-data": Case(
        ["benchmark", "--weights", "{faster}", "--data", "{bad}/nope.json", "--out", "{out}/b.json"], 2, "nope.json"
    ),
    "benchmark/truncated-json": Case(
        ["benchmark", "--weights", "{faster}", "--data", "{bad}/truncated.json", "--out", "{out}/b.json"],
        2,
        "invalid JSON",
    ),
    # proposals
    "proposals/corrupt-image": Case(
        ["proposals", "{bad}/corrupt.jpg", "--out", "{out}/p.json"], 2, "not a readable image"
    ),
    "proposals/truncated-image": Case(
        ["proposals", "{bad}/truncated.jpg", "--out", "{out}/p.json"], 2, "truncated image"
    ),
    "proposals/missing-folder": Case(["proposals", "{bad}/nope", "--out", "{out}/p.json"], 2, "no such file or folder"),
    "proposals/truncated-json": Case(
        ["proposals", "{bad}/truncated.json", "--images", "{data}/val", "--out", "{out}/p.json"], 2, "invalid JSON"
    ),
    # data
    "convert/truncated-json": Case(
        ["data", "convert", "{bad}/truncated.json", "{out}/voc", "--to", "voc"], 2, "invalid JSON"
    ),
    "convert/json-list": Case(
        ["data", "convert", "{bad}/list.json", "{out}/yolo", "--to", "yolo"], 2, "not a JSON object"
    ),
    "convert/csv": Case(
        ["data", "convert", "{bad}/table.csv", "{out}/coco", "--to", "coco"], 2, "not a dataset detkit reads"
    ),
    "convert/missing": Case(["data", "convert", "{bad}/nope", "{out}/coco", "--to", "coco"], 2, "nope: not found"),
    "check/truncated-json": Case(
        ["data", "check", "{bad}/truncated.json", "--fix", "{out}/fixed.json"], 2, "invalid JSON"
    ),
    "check/json-list": Case(["data", "check", "{bad}/list.json", "--fix", "{out}/fixed.json"], 2, "not a JSON object"),
    "check/csv": Case(["data", "check", "{bad}/table.csv"], 2, "not a dataset detkit reads"),
    "synth/output-is-a-file": Case(
        ["data", "synth", "--out", "{bad}/a_file/synthetic", "--num-train", "1", "--num-val", "1"], 2, "a_file"
    ),
    # paths from data and options that place files
    "train/file-name-outside-the-image-folder": Case(
        [
            "train",
            "--data",
            "{bad}/escaping.json",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        2,
        "leads outside the image folder",
    ),
    "train/run-name-escaping-the-output": Case(
        [
            "train",
            "--name",
            "../../escaped",
            "--config",
            "{tiny}",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--output",
            "{out}",
        ],
        3,
        "name",
    ),
    "train/absolute-run-name": Case(
        [
            "train",
            "--name",
            "/tmp/escaped",
            "--config",
            "{tiny}",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--output",
            "{out}",
        ],
        3,
        "name",
    ),
    "convert/file-name-outside-the-image-folder": Case(
        ["data", "convert", "{bad}/escaping.json", "{out}/yolo", "--to", "yolo", "--images", "{data}/train"],
        2,
        "leads outside the image folder",
    ),
    "check/fix-over-the-source": Case(
        ["data", "check", "{bad}/escaping.json", "--images", "{data}/train", "--fix", "{bad}/escaping.json"],
        2,
        "is the file being checked",
    ),
    "check/fix-with-a-wrong-image-folder": Case(
        ["data", "check", "{val}", "--images", "{bad}", "--fix", "{out}/fixed.json"], 2, "none of its 2 images is in"
    ),
    "convert/overwrite-a-folder-detkit-did-not-write": Case(
        ["data", "convert", "{val}", "{bad}/users_folder", "--to", "yolo", "--images", "{data}/val", "--overwrite"],
        2,
        "was not written by `detkit data convert`",
    ),
    "detect/out-is-the-input-folder": Case(
        ["detect", "{data}/val", "--weights", "{faster}", "--out", "{data}/val"], 2, "is a folder of the input images"
    ),
    "eval/out-is-the-ground-truth": Case(
        ["eval", "--coco", "{val}", "--images", "{data}/val", "--weights", "{faster}", "--out", "{val}"],
        2,
        "which writing the metrics would replace",
    ),
    "eval/out-is-the-results": Case(
        ["eval", "--coco", "{val}", "--results", "{bad}/results_no_score.json", "--out", "{bad}/results_no_score.json"],
        2,
        "would replace",
    ),
    "eval/results-for-an-image-not-in-the-ground-truth": Case(
        ["eval", "--coco", "{train}", "--results", "{bad}/results_unknown_file.json", "--out", "{out}/m.json"],
        2,
        "which is no image of",
    ),
    # inputs that exhaust memory or time
    "detect/decompression-bomb-png": Case(
        ["detect", "{bad}/bomb.png", "--weights", "{faster}", "--out", "{out}"],
        2,
        "20000 x 20000 pixels is over the limit",
    ),
    "train/config-alias-bomb": Case(
        ["train", "--config", "{bad}/alias_bomb.yaml", "--output", "{out}"], 3, "alias_bomb.yaml"
    ),
    "check/data-yaml-alias-bomb": Case(["data", "check", "{bad}/yolo_bomb"], 2, "must be a path or a list of paths"),
    # nothing to train on
    "train/no-images": Case(
        [
            "train",
            "--data",
            "{bad}/no_images_listed.json",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        2,
        "lists no images",
    ),
    "train/no-boxes": Case(
        [
            "train",
            "--data",
            "{bad}/no_boxes.json",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        2,
        "no box to train on",
    ),
    "train/zero-epochs": Case(
        [
            "train",
            "--epochs",
            "0",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        3,
        "epochs",
    ),
    "train/resume-a-finished-run": Case(["train", "--resume", "{faster_run}"], 3, "has trained all its 1 epochs"),
    # out-of-range values
    "train/batch-size-0": Case(
        [
            "train",
            "--batch-size",
            "0",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        3,
        "batch_size",
    ),
    "train/negative-learning-rate": Case(
        [
            "train",
            "--set",
            "solver.lr=-1",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        3,
        "solver.lr",
    ),
    "train/nan-learning-rate": Case(
        [
            "train",
            "--config",
            "{bad}/nan_lr.yaml",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--output",
            "{out}",
        ],
        3,
        "solver.lr",
    ),
    "train/zero-min-size": Case(
        [
            "train",
            "--set",
            "model.transform.min_size=[0]",
            "--data",
            "{train}",
            "--images",
            "{data}/train",
            "--config",
            "{tiny}",
            "--output",
            "{out}",
        ],
        3,
        "min_size",
    ),
    "train/non-utf8-config": Case(["train", "--config", "{bad}/latin1.yaml", "--output", "{out}"], 3, "UTF-8"),
    "detect/score-thresh-over-1": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{faster}", "--score-thresh", "2", "--out", "{out}"],
        3,
        "--score-thresh 2.0: must be between 0 and 1",
    ),
    "detect/negative-batch-size": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{faster}", "--batch-size", "-1", "--out", "{out}"],
        3,
        "--batch-size -1: must be at least 1",
    ),
    "detect/batch-size-0": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{faster}", "--batch-size", "0", "--out", "{out}"],
        3,
        "--batch-size 0: must be at least 1",
    ),
    "detect/threads-0": Case(
        ["detect", "{bad}/photo.jpg", "--weights", "{faster}", "--threads", "0", "--out", "{out}"],
        3,
        "--threads 0: must be at least 1",
    ),
    "train/threads-0": Case(
        ["train", "--threads", "0", "--data", "{train}", "--images", "{data}/train", "--output", "{out}"],
        3,
        "--threads 0: must be at least 1",
    ),
    "eval/negative-score-thresh": Case(
        [
            "eval",
            "--coco",
            "{val}",
            "--images",
            "{data}/val",
            "--weights",
            "{faster}",
            "--score-thresh",
            "-0.1",
            "--out",
            "{out}/m.json",
        ],
        3,
        "--score-thresh",
    ),
    "benchmark/image-size-0": Case(
        ["benchmark", "--weights", "{faster}", "--image-size", "0", "--out", "{out}/b"],
        3,
        "--image-size 0: must be at least 32",
    ),
    "proposals/topk-0": Case(
        ["proposals", "{bad}/photo.jpg", "--topk", "0", "--out", "{out}/p.json"], 3, "--topk 0: must be at least 1"
    ),
}


@pytest.mark.parametrize("case_id", CASES)
def test_bad_input_is_one_error_line_and_leaves_nothing(case_id, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that wrongly wrote to the working folder would leave it here
    case = CASES[case_id]
    out = tmp_path / "out"
    args = [arg.format(out=out, **world) for arg in case.args]
    result = runner.invoke(app, args)

    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == case.exit_code, result.output
    assert len(errors) == 1, result.output
    assert case.needle in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    left = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert not left, f"left behind: {left}"


def test_verbose_shows_the_traceback(world):
    result = runner.invoke(
        app, ["--verbose", "detect", str(world["bad"] / "corrupt.jpg"), "--weights", str(world["faster"])]
    )
    assert result.exit_code == 2 and "Traceback" in result.output


def test_a_bug_is_one_line_too(monkeypatch, tmp_path):
    """An exception detkit did not foresee: one line, exit 70, and the way to the traceback."""
    import detkit.engine.train_request as synthesis  # where `data synth` calls the generator

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(synthesis, "generate_synthetic_coco", broken)
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--num-train", "1", "--num-val", "1"])
    assert result.exit_code == 70, result.output
    assert "internal error (ZeroDivisionError: division by zero)" in result.output and "--verbose" in result.output
    assert "Traceback" not in result.output


def test_fine_tuning_on_another_class_count_starts_those_layers_fresh(world, tmp_path):
    """A checkpoint for the 5 synthetic classes fine-tuned on data with 2: the class layers start fresh, the rest
    is copied."""
    train = json.loads(world["train"].read_text())
    kept = [category["id"] for category in train["categories"]][:2]
    for split in ("train", "val"):
        document = json.loads((world["data"] / f"annotations/instances_{split}.json").read_text())
        document["categories"] = [c for c in document["categories"] if c["id"] in kept]
        document["annotations"] = [a for a in document["annotations"] if a["category_id"] in kept]
        (tmp_path / f"{split}.json").write_text(json.dumps(document))
    result = runner.invoke(
        app,
        [
            "train",
            "--weights",
            str(world["faster"]),
            "--data",
            str(tmp_path / "train.json"),
            "--images",
            str(world["data"] / "train"),
            "--val-data",
            str(tmp_path / "val.json"),
            "--val-images",
            str(world["data"] / "val"),
            "--output",
            str(tmp_path / "runs"),
            "--name",
            "tuned",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    message = " ".join(result.output.split())
    assert f"start fresh (it has {len(train['categories'])} classes, this data 2)" in message and "cls_score" in message

    from dataclasses import replace

    import torch

    from detkit.checkpoint import load_checkpoint
    from detkit.engine.fine_tune import load_initial_weights
    from detkit.pipelines import PIPELINES

    before, after = load_checkpoint(world["faster"]), load_checkpoint(tmp_path / "runs/tuned/last.pt")
    assert after.config.model.num_classes == 2 and after.config.model.init_weights == str(world["faster"])
    name = "roi_heads.box_predictor.cls_score.weight"
    assert (
        after.model_state[name].shape[0] == 3 and before.model_state[name].shape[0] == len(train["categories"]) + 1
    )  # K + 1 logits

    fresh = PIPELINES["faster_rcnn"].build(after.config.model)
    report = load_initial_weights(
        fresh, replace(after.config, model=replace(after.config.model, init_weights=str(world["faster"])))
    )
    copied = fresh.state_dict()
    assert all(torch.equal(copied[key], before.model_state[key]) for key in copied if key not in report.fresh)
    assert len(report.fresh) == 4 and report.loaded == len(copied) - 4
