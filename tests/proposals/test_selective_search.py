from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detkit.config import ProposalConfig
from detkit.errors import ConfigError
from detkit.proposals.selective_search import selective_search
from tests.proposals.images import object_boxes, rectangles_image


def best_iou_per_object(proposals: np.ndarray, objects: np.ndarray) -> torch.Tensor:
    return box_iou(torch.from_numpy(objects), torch.from_numpy(proposals)).amax(dim=1)


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_flat_objects_are_found_exactly(mode):
    proposals = selective_search(rectangles_image(), ProposalConfig(mode=mode))
    assert proposals.dtype == np.float32 and proposals.shape[1] == 4
    assert best_iou_per_object(proposals, object_boxes()).min() == 1.0


def test_boxes_are_unique_inside_the_image_and_not_tiny():
    cfg = ProposalConfig(min_box_size=6.0)
    proposals = selective_search(rectangles_image(96, 140), cfg)
    assert len(np.unique(proposals, axis=0)) == len(proposals)
    assert proposals[:, 0].min() >= 0 and proposals[:, 1].min() >= 0
    assert proposals[:, 2].max() <= 140 and proposals[:, 3].max() <= 96
    assert np.all(proposals[:, 2:] - proposals[:, :2] >= 6.0)


def test_topk_keeps_the_first_ranked_boxes():
    image = rectangles_image()
    every = selective_search(image, ProposalConfig(mode="quality"))
    first = selective_search(image, ProposalConfig(mode="quality", topk=5))
    np.testing.assert_array_equal(first, every[:5])


def test_large_images_are_shrunk_and_boxes_mapped_back():
    image = cv2.resize(rectangles_image(), (512, 512), interpolation=cv2.INTER_NEAREST)
    proposals = selective_search(image, ProposalConfig(max_image_size=128))
    assert best_iou_per_object(proposals, object_boxes() * 4).min() > 0.95
    assert proposals[:, 2:].max() <= 512 and proposals[:, 2:].max() > 400  # original frame, not the 128 px one


def test_same_image_same_proposals():
    image = rectangles_image()
    np.testing.assert_array_equal(
        selective_search(image, ProposalConfig()), selective_search(image.copy(), ProposalConfig())
    )


@pytest.mark.parametrize(
    "change, needle", [({"mode": "slow"}, "mode"), ({"topk": 0}, "topk"), ({"max_image_size": 8}, "max_image_size")]
)
def test_bad_parameters_are_config_errors(change, needle):
    with pytest.raises(ConfigError, match=needle):
        selective_search(rectangles_image(), replace(ProposalConfig(), **change))
