import torch
from torchvision.ops import box_iou

from detkit.ops.boxes import boxes_to_rois, clip_boxes, nonempty_boxes, scale_boxes, xywh_to_xyxy, xyxy_to_xywh


def test_xywh_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    assert xywh_to_xyxy(xywh).tolist() == [[10.0, 20.0, 40.0, 60.0]]
    assert xyxy_to_xywh(xywh_to_xyxy(xywh)).tolist() == xywh.tolist()


def test_iou_by_hand():
    # Two 10x10 squares overlapping in a 5x10 strip: IoU = 50 / (100 + 100 - 50) = 1/3.
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    assert torch.isclose(box_iou(a, b), torch.tensor([[1 / 3]])).all()


def test_clip_and_nonempty():
    boxes = torch.tensor([[-5.0, -5.0, 50.0, 20.0], [10.0, 10.0, 10.5, 30.0]])
    clipped = clip_boxes(boxes, (15, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 15.0], [10.0, 10.0, 10.5, 15.0]]
    assert nonempty_boxes(clipped, 1.0).tolist() == [True, False]


def test_scale_boxes_halves():
    boxes = torch.tensor([[2.0, 4.0, 6.0, 8.0]])
    assert scale_boxes(boxes, (100, 200), (50, 100)).tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_boxes_to_rois_batch_index_and_empty():
    rois = boxes_to_rois([torch.ones(2, 4), torch.zeros(0, 4), torch.ones(1, 4)])
    assert rois.shape == (3, 5)
    assert rois[:, 0].tolist() == [0.0, 0.0, 2.0]
