"""Pretrained detectors by name (detkit.zoo, ``detkit models``, ``--weights NAME``), with no network.

torchvision's COCO files are not obtainable here, so the path a name takes is tested with a test-only
registry entry: a seeded random ``fasterrcnn_mobilenet_v3_large_320_fpn`` state dict saved under
torch.hub's naming (``NAME-<sha256 prefix>.pth``) in a ``file://`` mirror. Everything after the
registry lookup (download, hash check, cache, import, class names) is the code a real name runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detkit
from detkit import download
from detkit.checkpoint import load_checkpoint
from detkit.errors import CheckpointError, WeightsNotFoundError
from detkit.pipelines import PIPELINES
from detkit.zoo import PretrainedModel, pretrained_models, resolve_weights
from tests.cli.helpers import invoke, synthesize
from tests.torchvision_files import save_random_mobilenet_320

TEST_NAME = "test_mobilenet_320"  # "320": imported as torchvision's 320 px variant, as the real file is
TORCHVISION_NAMES = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mirror folder holding the test model's file, named as torch.hub names published files."""
    folder = tmp_path_factory.mktemp("mirror")
    staged = save_random_mobilenet_320(folder / "staged_320.pth")
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    staged.rename(folder / f"{TEST_NAME}-{digest}.pth")
    return folder


@pytest.fixture
def registered(published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PretrainedModel:
    """The test model in the registry, downloads allowed from its mirror into an empty ``$TORCH_HOME``."""
    (file,) = published.glob(f"{TEST_NAME}-*.pth")
    entry = PretrainedModel(
        name=TEST_NAME,
        pipeline="faster_rcnn",
        backbone="mobilenet_v3_large_320_fpn",
        url=f"https://download.pytorch.org/models/{file.name}",
        box_ap=None,
        mask_ap=None,
        gflops=0.72,
        params=19386354,
        file_mib=74.2,
    )
    monkeypatch.setitem(pretrained_models(), TEST_NAME, entry)
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(download.MIRROR_ENV, published.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    return entry


def test_every_torchvision_coco_detector_that_maps_onto_a_pipeline_is_listed() -> None:
    models = pretrained_models()
    assert list(models) == TORCHVISION_NAMES
    for model in models.values():
        assert model.pipeline in PIPELINES and model.file_name.startswith(model.name)
        assert re.fullmatch(r"https://download\.pytorch\.org/models/[\w.]+-[0-9a-f]{8}\.pth", model.url), model.url
        assert model.box_ap is not None and 20 < model.box_ap < 60
        assert (model.mask_ap is not None) == (model.pipeline == "mask_rcnn")
        assert model.gflops is not None and model.gflops > 0 and model.params is not None and model.params > 1e6


def test_a_name_downloads_once_into_the_cache_and_loads_as_a_coco_detector(
    registered: PretrainedModel, published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not registered.cached
    checkpoint = load_checkpoint(TEST_NAME)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / registered.file_name
    assert registered.cached and Path(checkpoint.source) == cached
    assert (
        checkpoint.pipeline == "faster_rcnn" and len(checkpoint.class_names) == 90
    )  # COCO ids 1..90, unused ones "N/A"
    assert checkpoint.class_names[:3] == ["person", "bicycle", "car"]

    monkeypatch.setenv(download.MIRROR_ENV, (tmp_path / "nowhere").as_uri())
    download.go_offline()
    assert resolve_weights(TEST_NAME) == cached  # the second time needs neither network nor mirror


def test_a_copy_placed_by_hand_in_weights_is_used(registered: PretrainedModel, published: Path, tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    placed = tmp_path / "weights" / registered.file_name
    placed.write_bytes((published / registered.file_name).read_bytes())
    download.go_offline()
    assert resolve_weights(TEST_NAME) == placed


def test_a_name_offline_with_an_empty_cache_is_one_line_saying_where_the_file_goes(
    registered: PretrainedModel, tmp_path: Path
) -> None:
    download.go_offline()
    with pytest.raises(WeightsNotFoundError) as caught:
        load_checkpoint(TEST_NAME)
    message = str(caught.value)
    assert "\n" not in message and "offline" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / registered.file_name) in message


def test_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file nor pretrained model name.*detkit models"):
        load_checkpoint("fasterrcnn_resnet18_fpn")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 48, 3), 127, np.uint8))
    result = invoke("detect", str(photo), "--weights", "fasterrcnn_resnet18_fpn", "--out", str(tmp_path / "out"))
    assert result.exit_code == 4 and "fasterrcnn_resnet50_fpn_v2" in result.output


def test_detect_takes_a_name_as_weights(registered: PretrainedModel, tmp_path: Path) -> None:
    synthetic = synthesize(tmp_path / "synthetic", num_train=1, num_val=1)
    image = next((synthetic / "val").iterdir())
    out = tmp_path / "out"
    result = invoke(
        "detect", str(image), "--weights", TEST_NAME, "--out", str(out), "--device", "cpu", "--score-thresh", "0"
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert records, "a random model at score 0 still detects"
    coco_names = set(load_checkpoint(TEST_NAME).class_names)
    assert {d["category"] for r in records for d in r.get("detections", [r])} <= coco_names
    assert detkit.load(TEST_NAME, device="cpu").class_names[0] == "person"  # the Python API takes names too


def test_train_fine_tunes_from_a_name_with_fresh_class_layers(registered: PretrainedModel, tmp_path: Path) -> None:
    synthetic = synthesize(tmp_path / "synthetic", num_train=2, num_val=1)
    result = invoke(
        "train",
        "--weights",
        TEST_NAME,
        "--data",
        str(synthetic / "annotations/instances_train.json"),
        "--images",
        str(synthetic / "train"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--output",
        str(tmp_path / "runs"),
        "--name",
        "tuned",
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"started from {TEST_NAME}: 280 of 284 tensors; 4 start fresh (it has 90 classes, this data 5)" in output
    assert "roi_heads.box_predictor.cls_score.weight" in output
    tuned = load_checkpoint(tmp_path / "runs" / "tuned" / "last.pt")
    assert tuned.pipeline == "faster_rcnn" and len(tuned.class_names) == 5


def test_models_table_and_json_say_what_is_cached(registered: PretrainedModel) -> None:
    before = json.loads(invoke("models", "--json").output)
    row = next(r for r in before if r["name"] == TEST_NAME)
    assert row["cached"] is False and row["file"] == registered.file_name and row["pipeline"] == "faster_rcnn"
    assert Path(row["path"]).name == registered.file_name
    load_checkpoint(TEST_NAME)
    after = json.loads(invoke("models", "--json").output)
    assert next(r for r in after if r["name"] == TEST_NAME)["cached"] is True
    assert {r["name"] for r in after} == {*TORCHVISION_NAMES, TEST_NAME}

    table = invoke("models")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    v2 = next(line for line in lines if line.startswith("maskrcnn_resnet50_fpn_v2 "))
    assert v2.split()[1:3] == ["47.4", "41.8"] and v2.split()[-1] == "no"  # torchvision's stated box/mask AP
    assert next(line for line in lines if line.startswith(TEST_NAME)).split()[-1] == "yes"


def test_a_wide_terminal_shows_every_column() -> None:
    from detkit.cli.models import _table

    models = list(pretrained_models().values())
    wide = [column.header for column in _table(models, 200).columns]
    assert wide == ["name", "pipeline", "backbone", "box AP", "mask AP", "GFLOPs", "params", "MiB", "file", "here"]
    assert [column.header for column in _table(models, 80).columns] == [
        "name",
        "box AP",
        "mask AP",
        "GFLOPs",
        "MiB",
        "here",
    ]


def test_the_readme_python_example_runs_as_written(
    registered: PretrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's block, verbatim; its name is served by the test file (the real one is not here)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    real = pretrained_models()["fasterrcnn_mobilenet_v3_large_320_fpn"]
    monkeypatch.setitem(pretrained_models(), real.name, dataclasses.replace(registered, name=real.name))
    frame_bgr = np.full((48, 64, 3), (40, 90, 200), np.uint8)
    cv2.imwrite(str(tmp_path / "street.jpg"), frame_bgr)
    exec(compile(example, "README.md", "exec"), {"frame_bgr": frame_bgr})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(line.startswith("[") for line in printed)


def test_a_name_exports_as_a_file_that_detects_what_the_torchvision_model_does(
    registered: PretrainedModel, tmp_path: Path
) -> None:
    """torchvision's architecture (FrozenBN trunk, its RPN and box head, 91 COCO outputs) through
    ``detkit export``'s own check, and the file's metadata names COCO's classes."""
    from detkit.export.files import open_exported

    result = invoke(
        "export", TEST_NAME, "--format", "torchscript", "--score-thresh", "0.0", "--image-size", "96", "128",
        "--check-count", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "within tolerance" in result.output and "labels agree" in result.output
    file = tmp_path / f"{TEST_NAME}.torchscript"  # a name's file goes to the current folder
    _, metadata = open_exported(file, torch.device("cpu"))
    assert list(metadata.class_names) == load_checkpoint(TEST_NAME).class_names and metadata.pipeline == "faster_rcnn"
