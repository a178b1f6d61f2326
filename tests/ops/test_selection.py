import torch

from detkit.ops.selection import MIN_DETECTION_SIZE, select_detections
from detkit.structures import Detections

# Candidates (box, score, label), by hand:
#   0  [0, 0, 10, 10]      0.9  class 0   kept: the best of class 0
#   1  [1, 0, 11, 10]      0.8  class 0   IoU 9/11 with 0, same class: suppressed
#   2  [1, 0, 11, 10]      0.7  class 1   the same box as 1 but of class 1: kept
#   3  [50, 50, 60, 60]    0.04 class 0   under the score threshold
#   4  [20, 20, 20.005, 30] 0.95 class 2  narrower than MIN_DETECTION_SIZE: dropped, best score or not
#   5  [30, 30, 40, 40]    0.6  class 2   kept
#   6  [70, 0, 80, 10]     0.5  class 1   kept unless the cap cuts it
BOXES = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 0.0, 11.0, 10.0],
        [1.0, 0.0, 11.0, 10.0],
        [50.0, 50.0, 60.0, 60.0],
        [20.0, 20.0, 20.005, 30.0],
        [30.0, 30.0, 40.0, 40.0],
        [70.0, 0.0, 80.0, 10.0],
    ]
)
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.04, 0.95, 0.6, 0.5])
LABELS = torch.tensor([0, 0, 1, 0, 2, 2, 1])


def select(detections_per_image: int = 100, **overrides: float) -> Detections:
    settings = {"score_thresh": 0.05, "nms_thresh": 0.5, **overrides}
    return select_detections(BOXES, SCORES, LABELS, detections_per_image=detections_per_image, **settings)


def test_threshold_tiny_boxes_and_nms_within_each_class_best_first():
    detections = select()
    assert detections.scores.tolist() == torch.tensor([0.9, 0.7, 0.6, 0.5]).tolist()  # descending
    assert detections.labels.tolist() == [0, 1, 2, 1]
    assert torch.equal(detections.boxes, BOXES[[0, 2, 5, 6]])
    assert detections.masks is None and detections.boxes.dtype == torch.float32


def test_overlapping_boxes_of_one_class_collapse_of_two_classes_stay():
    one_class = select_detections(
        BOXES[:2],
        SCORES[:2],
        torch.tensor([1, 1]),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_image=100,
    )
    two_classes = select_detections(
        BOXES[:2],
        SCORES[:2],
        torch.tensor([0, 1]),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_image=100,
    )
    assert one_class.scores.tolist() == [SCORES[0].item()]
    assert two_classes.scores.tolist() == SCORES[:2].tolist()
    # Above their IoU (9/11) NMS keeps both boxes of one class too.
    loose = select_detections(
        BOXES[:2],
        SCORES[:2],
        torch.tensor([1, 1]),
        score_thresh=0.05,
        nms_thresh=0.9,
        detections_per_image=100,
    )
    assert len(loose) == 2


def test_the_cap_keeps_the_best_and_the_threshold_is_strict():
    assert select(detections_per_image=2).scores.tolist() == torch.tensor([0.9, 0.7]).tolist()
    assert select(score_thresh=0.7).scores.tolist() == torch.tensor([0.9]).tolist()  # 0.7 itself is not above 0.7
    thin_allowed = select(min_size=0.001)
    assert len(thin_allowed) == 5 and thin_allowed.scores[0] == SCORES[4]  # the thin box, now big enough
    assert MIN_DETECTION_SIZE == 1e-2


def test_nothing_left_gives_empty_tensors():
    for detections in (
        select(score_thresh=0.99),
        select_detections(
            torch.zeros((0, 4)),
            torch.zeros(0),
            torch.zeros(0, dtype=torch.int64),
            score_thresh=0.05,
            nms_thresh=0.5,
            detections_per_image=100,
        ),
    ):
        assert len(detections) == 0
        assert detections.boxes.shape == (0, 4) and detections.scores.shape == (0,) and detections.labels.shape == (0,)
        assert detections.labels.dtype == torch.int64


def test_a_caller_that_thresholded_first_gets_the_same_detections():
    above = SCORES > 0.05
    prefiltered = select_detections(
        BOXES[above],
        SCORES[above],
        LABELS[above],
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_image=100,
    )
    everything = select()
    for field in ("boxes", "scores", "labels"):
        assert torch.equal(getattr(prefiltered, field), getattr(everything, field))
