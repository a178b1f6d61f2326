"""Training curves: a readable PNG of the expected size for full, single-point and degenerate logs."""

from __future__ import annotations

import math

import cv2
import numpy as np

from detkit.viz.curves import PANEL_SIZE, TITLE_HEIGHT, _val_panel, plot_training_curves, render_training_curves

EXPECTED_SHAPE = (TITLE_HEIGHT + PANEL_SIZE[0], 2 * PANEL_SIZE[1], 3)


def _log(epochs: int = 3, steps_per_epoch: int = 40) -> list[dict]:
    records, iteration = [], 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            iteration += 10
            loss = 2.0 * math.exp(-iteration / 500) + 0.1
            records.append(
                {
                    "epoch": epoch,
                    "iter": iteration,
                    "lr": 0.01,
                    "loss": loss,
                    "loss_rpn_cls": loss / 4,
                    "loss_box": loss / 3,
                }
            )
        records.append({"epoch": epoch, "val": {"AP": 0.1 * epoch, "AP50": 0.25 * epoch}})
    return records


def _read(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image


def test_curves_png_is_written_with_the_expected_size(tmp_path):
    path = tmp_path / "plots" / "curves.png"
    plot_training_curves(_log(), path)
    image = _read(path)
    assert image.shape == EXPECTED_SHAPE
    assert (image != 255).any(axis=2).mean() > 0.01  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]


def test_single_record_and_empty_log(tmp_path):
    plot_training_curves([{"epoch": 1, "iter": 120, "lr": 0.01, "loss": 1.2}], tmp_path / "one.png")
    assert _read(tmp_path / "one.png").shape == EXPECTED_SHAPE
    plot_training_curves([{"epoch": 1, "val": {"AP": 0.2, "AP50": 0.5}}], tmp_path / "val.png")
    assert _read(tmp_path / "val.png").shape == EXPECTED_SHAPE
    plot_training_curves([], tmp_path / "empty.png")
    assert _read(tmp_path / "empty.png").shape == EXPECTED_SHAPE


def test_non_finite_values_are_skipped():
    records = _log(epochs=1)
    records[5]["loss"] = float("nan")
    records[6]["loss_box"] = float("inf")
    records.append({"epoch": 2, "val": {"AP": float("nan"), "AP50": None}})
    records.append({"epoch": 3, "iter": 999, "loss": float("nan")})  # a step with nothing finite
    image = render_training_curves(records)
    assert image.shape == EXPECTED_SHAPE and image.dtype == np.uint8


def test_restarting_iteration_counter_and_nested_validation():
    records = [{"epoch": e, "iter": i, "loss": 1.0 / (e + i)} for e in (1, 2) for i in range(1, 30)]
    records.append({"epoch": 2, "val": {"bbox": {"AP": 0.3, "AP50": 0.6}, "segm": {"AP": 0.25, "AP50": 0.5}}})
    assert render_training_curves(records).shape == EXPECTED_SHAPE


def test_validation_sentinels_are_not_plotted():
    records = [
        {"epoch": 1, "val": {"AP": -1.0, "AP50": float("nan")}},  # -1: pycocotools' "no ground truth"
        {"epoch": 2, "val": {"AP": 0.4, "AP50": 0.7}},
    ]
    series = {s.name: (s.xs, s.ys) for s in _val_panel(records).series}
    assert series == {"AP": ([2.0], [0.4]), "AP50": ([2.0], [0.7])}
