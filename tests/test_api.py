"""The Python API: ``detkit.load(weights)`` and ``Detector(images)``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detkit
from detkit.api import Detector, NamedDetections
from detkit.data.synthetic import render_image
from detkit.errors import CheckpointError, DataError
from tests.torchvision_files import save_random_mobilenet_320


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_mobilenet_320(tmp_path_factory.mktemp("weights") / "coco_320.pth")


@pytest.fixture(scope="module")
def detector(weights: Path) -> Detector:
    return detkit.load(weights, device="cpu", score_thresh=0.0)  # random weights: keep every detection


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two scenes of different sizes, written as PNG (lossless: the file and the array are the same pixels)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for index, (height, width) in enumerate([(120, 160), (200, 90)]):
        rgb, _ = render_image(np.random.default_rng(index), height, width)
        path = folder / f"scene{index}.png"
        cv2.imwrite(str(path), rgb[:, :, ::-1])
        paths.append(path)
    return paths


def same(a: NamedDetections, b: NamedDetections) -> None:
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)


def test_importing_detkit_imports_no_torch() -> None:
    code = "import sys, detkit; assert 'torch' not in sys.modules, 'torch imported'; print(detkit.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == detkit.__version__


def test_a_path_an_rgb_array_a_bgr_array_and_tensors_give_the_same_detections(
    detector: Detector, photos: list[Path]
) -> None:
    path = photos[0]
    bgr = cv2.imread(str(path))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    chw = torch.from_numpy(rgb.transpose(2, 0, 1).copy())

    from_path = detector(path)
    assert isinstance(from_path, NamedDetections) and len(from_path) > 0
    same(from_path, detector(str(path)))
    same(from_path, detector(rgb))
    same(from_path, detector(bgr, bgr=True))
    same(from_path, detector(chw))  # uint8 [3, H, W]
    same(from_path, detector(chw.float() / 255))
    swapped = detector(bgr)  # BGR pixels read as RGB: other colours, other boxes
    assert not (len(swapped) == len(from_path) and torch.allclose(swapped.boxes, from_path.boxes))


def test_a_list_gives_one_result_per_image_in_its_own_frame_with_class_names(
    detector: Detector, photos: list[Path]
) -> None:
    bgr = cv2.imread(str(photos[1]))
    results = detector([photos[0], bgr, photos[1]], bgr=[False, True, False], batch_size=2)
    assert isinstance(results, list) and len(results) == 3
    same(*detector([bgr, photos[1]], bgr=[True, False], batch_size=1))  # batches pad: compare one at a time
    for result, path in zip(results, [photos[0], *photos[1:2] * 2]):
        height, width = cv2.imread(str(path)).shape[:2]
        assert len(result) > 0 and result.boxes.device.type == "cpu"
        assert float(result.boxes[:, 0::2].max()) <= width and float(result.boxes[:, 1::2].max()) <= height
        assert len(result.names) == len(result) and result.names[0] == detector.class_names[int(result.labels[0])]
    assert detector.class_names[:2] == ["person", "bicycle"]


def test_score_thresh_drops_weaker_detections(weights: Path, detector: Detector, photos: list[Path]) -> None:
    every = detector(photos[0])
    weakest, strongest = float(every.scores.min()), float(every.scores.max())
    assert len(detkit.load(weights, device="cpu", score_thresh=weakest * 0.99)(photos[0])) == len(every)
    assert len(detkit.load(weights, device="cpu", score_thresh=strongest * 1.01)(photos[0])) == 0


def test_to_moves_the_detector_and_returns_it(detector: Detector) -> None:
    assert detector.to("cpu") is detector and detector.device == torch.device("cpu")
    assert "coco_320.pth" in repr(detector) and "90 classes" in repr(detector)


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        (np.zeros((8, 8, 3), np.float32), "image 0: a float32 array; pass uint8 pixels"),
        (np.zeros((8, 8, 4), np.uint8), r"image 0: array of shape \(8, 8, 4\); pass \[H, W, 3\]"),
        (torch.zeros(1, 8, 8), r"image 0: tensor of shape \(1, 8, 8\); pass \[3, H, W\] RGB"),
        (torch.full((3, 8, 8), 255.0), "image 0: float values up to 255; divide by 255"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "image 0: a torch.int32 tensor; pass float in"),
        (b"\x89PNG", "image 0: a bytes; pass a path, a numpy array or a tensor"),
    ],
)
def test_an_unusable_image_is_one_line_naming_it(detector: Detector, image: object, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        detector(image)  # type: ignore[arg-type]


def test_grey_arrays_are_accepted_and_flag_counts_must_match(detector: Detector) -> None:
    assert isinstance(detector(np.full((40, 50), 100, np.uint8)), NamedDetections)
    with pytest.raises(ValueError, match="bgr has 1 flags for 2 images"):
        detector([np.zeros((8, 8, 3), np.uint8)] * 2, bgr=[True])


def test_a_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        detkit.load(tmp_path / "nope.pt")
