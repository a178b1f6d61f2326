import torch

from detkit.ops.matcher import BACKGROUND, FOREGROUND, IGNORE, match_boxes


def test_thresholds_on_hand_matrix():
    # 2 ground truths x 5 proposals.
    iou = torch.tensor(
        [
            [0.80, 0.40, 0.10, 0.00, 0.55],
            [0.20, 0.60, 0.05, 0.00, 0.72],
        ]
    )
    result = match_boxes(iou, fg_iou_thresh=0.7, bg_iou_thresh_hi=0.3)
    assert result.kind.tolist() == [FOREGROUND, IGNORE, BACKGROUND, BACKGROUND, FOREGROUND]
    assert result.gt_index.tolist()[0] == 0 and result.gt_index.tolist()[4] == 1


def test_fast_rcnn_background_band():
    iou = torch.tensor([[0.6, 0.3, 0.05]])
    result = match_boxes(iou, fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5, bg_iou_thresh_lo=0.1)
    assert result.kind.tolist() == [FOREGROUND, BACKGROUND, IGNORE]


def test_low_quality_matches_give_every_gt_an_anchor():
    iou = torch.tensor(
        [
            [0.40, 0.40, 0.10],  # best 0.40, reached by two proposals (a tie): both become foreground
            [0.00, 0.00, 0.00],  # overlaps nothing: must not turn every proposal into foreground
        ]
    )
    result = match_boxes(iou, 0.7, 0.3, allow_low_quality_matches=True)
    assert result.kind.tolist() == [FOREGROUND, FOREGROUND, BACKGROUND]


def test_no_ground_truth_is_all_background():
    result = match_boxes(torch.zeros(0, 4), 0.7, 0.3)
    assert result.kind.tolist() == [BACKGROUND] * 4
    assert match_boxes(torch.zeros(0, 2), 0.5, 0.5, 0.1).kind.tolist() == [IGNORE] * 2
