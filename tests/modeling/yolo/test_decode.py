import math

import torch

from detkit.modeling.yolo.decode import decode_boxes, grid_points, select_detections


def test_grid_points_are_cell_centres_row_major_finest_first():
    points, strides = grid_points([(2, 3), (1, 1)], [8, 16], torch.device("cpu"))
    assert points.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]]
    assert strides.tolist() == [8, 8, 8, 8, 8, 8, 16]


def test_decode_boxes_by_hand():
    points = torch.tensor([[4.0, 4.0], [8.0, 8.0]])
    strides = torch.tensor([8.0, 16.0])
    deltas = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.5, -0.25, math.log(2.0), 0.0]]])
    boxes = decode_boxes(deltas, points, strides)
    # point 0: an 8x8 box centred on (4, 4); point 1: centre (16, 4), 32 wide, 16 high
    assert torch.allclose(boxes, torch.tensor([[[0.0, 0.0, 8.0, 8.0], [0.0, -4.0, 32.0, 12.0]]]))


def test_decode_survives_huge_log_sizes():
    boxes = decode_boxes(torch.full((1, 1, 4), 1e4), torch.zeros(1, 2), torch.ones(1))
    assert torch.isfinite(boxes).all()


def logits(p):
    return torch.logit(torch.tensor(p))


def test_select_detections_thresholds_nms_per_class_and_per_image():
    boxes = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [50.0, 50.0, 60.0, 60.0]],
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [50.0, 50.0, 60.0, 60.0]],
        ]
    )
    cls = torch.full((2, 3, 2), -20.0)
    cls[0, 0, 0], cls[0, 1, 0], cls[0, 1, 1] = (
        logits(0.9),
        logits(0.8),
        logits(0.7),
    )  # overlapping: class 0 twice, class 1 once
    cls[1, 2, 1] = logits(0.6)
    obj = torch.full((2, 3), 20.0)
    detections = select_detections(
        boxes,
        cls,
        obj,
        [(40, 40), (40, 40)],
        score_thresh=0.05,
        nms_thresh=0.5,
        pre_nms_topk=100,
        detections_per_image=300,
    )
    first, second = detections
    assert first.labels.tolist() == [0, 1]  # the 0.8 duplicate of class 0 is suppressed, class 1 is not
    assert torch.allclose(first.scores, torch.tensor([0.9, 0.7]), atol=1e-4)
    # boxes are clipped to the image: the second image's box at (50, 50) ends up empty at the border
    assert second.labels.tolist() == [1] and second.boxes.tolist() == [[40.0, 40.0, 40.0, 40.0]]


def test_select_detections_caps_the_count_and_handles_nothing_above_threshold():
    boxes = torch.rand(1, 50, 2) * 50
    boxes = torch.cat([boxes, boxes + 5], dim=-1)
    cls = torch.zeros(1, 50, 4)
    obj = torch.zeros(1, 50)
    kept = select_detections(
        boxes, cls, obj, [(100, 100)], score_thresh=0.1, nms_thresh=1.0, pre_nms_topk=1000, detections_per_image=7
    )
    assert len(kept[0]) == 7
    none = select_detections(
        boxes, cls, obj, [(100, 100)], score_thresh=0.9, nms_thresh=0.5, pre_nms_topk=10, detections_per_image=7
    )
    assert none[0].boxes.shape == (0, 4) and none[0].labels.dtype == torch.int64
