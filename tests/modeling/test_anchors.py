import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.models.detection.image_list import ImageList

from detkit.modeling.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_by_hand():
    anchors = cell_anchors((32,), (1.0, 4.0))
    # ratio 1: 32x32; ratio 4 (h/w): w = 32/2 = 16, h = 32*2 = 64
    assert anchors.tolist() == [[-16.0, -16.0, 16.0, 16.0], [-8.0, -32.0, 8.0, 32.0]]


def test_grid_anchors_order_and_stride():
    generator = AnchorGenerator(((16,),), ((1.0,),))
    (anchors,) = generator((64, 96), [(4, 6)], torch.device("cpu"))
    assert anchors.shape == (4 * 6, 4)
    assert anchors[0].tolist() == [-8.0, -8.0, 8.0, 8.0]
    assert anchors[1].tolist() == [8.0, -8.0, 24.0, 8.0]  # next column: +16 px in x
    assert anchors[6].tolist() == [-8.0, 8.0, 8.0, 24.0]  # next row


def test_matches_torchvision_anchor_generator():
    sizes, ratios = ((32,), (64,), (128, 256)), ((0.5, 1.0, 2.0),) * 3
    feature_maps = [torch.zeros(1, 8, 25, 34), torch.zeros(1, 8, 13, 17), torch.zeros(1, 8, 7, 9)]
    padded = (100, 136)
    reference = TorchvisionAnchors(sizes, ratios)(ImageList(torch.zeros(1, 3, *padded), [padded]), feature_maps)[0]
    ours = torch.cat(
        AnchorGenerator(sizes, ratios)(padded, [tuple(f.shape[-2:]) for f in feature_maps], torch.device("cpu"))
    )
    assert torch.equal(ours, reference)
