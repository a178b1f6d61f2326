import pytest
import torch

from detkit.ops.regions import dilate_for_context, warp_regions


def test_dilation_leaves_the_papers_16_pixels_of_context_at_227():
    boxes = torch.tensor([[100.0, 50.0, 295.0, 245.0]])  # 195 px square: 195 + 2 * 16 = 227
    dilated = dilate_for_context(boxes, crop_size=227, context_padding=16)
    torch.testing.assert_close(dilated, torch.tensor([[84.0, 34.0, 311.0, 261.0]]))


def test_no_context_is_the_box_itself_and_too_much_is_refused():
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    torch.testing.assert_close(dilate_for_context(boxes, 64, 0), boxes)
    with pytest.raises(ValueError, match="context_padding"):
        dilate_for_context(boxes, 64, 32)


def test_warp_of_a_flat_region_and_mean_padding_outside_the_image():
    image = torch.zeros(3, 40, 60)
    image[:, 10:30, 20:40] = 0.7  # a flat square
    crops = warp_regions(
        image, torch.tensor([[20.0, 10.0, 40.0, 30.0], [-20.0, -20.0, 0.0, 0.0]]), crop_size=16, context_padding=0
    )
    assert crops.shape == (2, 3, 16, 16)
    # bilinear sampling blends the outermost samples with the neighbouring pixels; the inside is the square
    torch.testing.assert_close(crops[0, :, 2:-2, 2:-2], torch.full((3, 12, 12), 0.7))
    assert crops[1].abs().max() == 0  # outside the image: zeros, i.e. the mean colour once normalized


def test_context_shows_the_surroundings_and_no_boxes_give_no_crops():
    image = torch.zeros(3, 40, 60)
    image[:, 10:30, 20:40] = 1.0
    crop = warp_regions(image, torch.tensor([[20.0, 10.0, 40.0, 30.0]]), crop_size=20, context_padding=5)[0]
    assert crop[:, 10, 10].min() == 1.0 and crop[:, 0, 0].max() == 0.0  # centre is the square, corners the background
    assert warp_regions(image, torch.zeros((0, 4)), 20, 5).shape == (0, 3, 20, 20)
