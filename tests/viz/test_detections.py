"""Drawing detections: a new image, changed where boxes, tags and masks are, untouched elsewhere."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detkit.errors import DetkitError
from detkit.structures import Detections
from detkit.viz.detections import class_color, draw_detections, save_image_rgb

H, W = 240, 320


def _image() -> np.ndarray:
    return np.full((H, W, 3), 120, dtype=np.uint8)


def _one_box(score: float = 0.87, masks: torch.Tensor | None = None) -> Detections:
    return Detections(
        boxes=torch.tensor([[40.0, 60.0, 120.0, 140.0]]),
        scores=torch.tensor([score]),
        labels=torch.tensor([1]),
        masks=masks,
    )


def test_box_and_tag_are_drawn_and_far_pixels_are_untouched():
    image = _image()
    before = image.copy()
    out = draw_detections(image, _one_box(), ["cat", "dog"])
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)  # the input is not drawn on
    assert (out[60, 40:121] != 120).any() and (out[60:141, 40] != 120).any()  # box edges
    assert (out[45:60, 40:100] != 120).any()  # the tag above the box
    np.testing.assert_array_equal(out[170:, :], before[170:, :])
    np.testing.assert_array_equal(out[:, 200:], before[:, 200:])
    np.testing.assert_array_equal(out[90:110, 70:90], before[90:110, 70:90])  # no mask: inside untouched


def test_detections_below_score_thresh_and_empty_detections_draw_nothing():
    image = _image()
    np.testing.assert_array_equal(draw_detections(image, _one_box(0.2), ["cat", "dog"], score_thresh=0.5), image)
    np.testing.assert_array_equal(draw_detections(image, Detections(), ["cat"]), image)


def test_masks_are_blended_in_the_class_colour():
    masks = torch.zeros((1, H, W))
    masks[0, 80:120, 60:100] = 0.9
    masks[0, 200:230, 250:300] = 0.3  # below 0.5: not part of the mask
    out = draw_detections(_image(), _one_box(masks=masks), ["cat", "dog"])
    expected = np.round(0.55 * 120 + 0.45 * np.array(class_color(1))).astype(int)
    np.testing.assert_allclose(out[100, 80].astype(int), expected, atol=1)
    np.testing.assert_array_equal(out[200:230, 250:300], 120)


def test_tag_stays_inside_the_image_for_a_box_at_the_top_edge():
    dets = Detections(
        boxes=torch.tensor([[0.0, 0.0, 50.0, 40.0]]), scores=torch.tensor([0.5]), labels=torch.tensor([0])
    )
    out = draw_detections(_image(), dets, ["person"])
    assert (out[2:15, 2:40] != 120).any()


def test_class_colours_are_stable_and_distinct():
    assert class_color(3) == class_color(3)
    assert len({class_color(k) for k in range(20)}) == 20


def test_bad_image_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        draw_detections(np.zeros((H, W, 3), dtype=np.float32), _one_box(), ["cat", "dog"])


def test_save_image_rgb_round_trip(tmp_path):
    image = draw_detections(_image(), _one_box(), ["cat", "dog"])
    path = tmp_path / "vis" / "out.png"
    save_image_rgb(path, image)
    read = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(cv2.cvtColor(read, cv2.COLOR_BGR2RGB), image)
    save_image_rgb(tmp_path / "out.jpg", image)
    assert cv2.imread(str(tmp_path / "out.jpg")).shape == (H, W, 3)
    with pytest.raises(DetkitError, match="xyz"):
        save_image_rgb(tmp_path / "out.xyz", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "vis"]
