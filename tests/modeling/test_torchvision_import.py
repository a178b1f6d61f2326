"""Which torchvision state dicts import, as what, and the one-line refusals of the keys detkit cannot map.

Only key names matter here, so torchvision's models are built on the meta device (no memory, no time).
Their numbers are compared in test_torchvision_equivalence.py and test_mask_rcnn_equivalence.py.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.errors import CheckpointError
from detkit.modeling.torchvision_import import (
    check_all_keys_mapped,
    convert_torchvision_detector,
    detect_torchvision_arch,
    torchvision_model_config,
)
from detkit.pipelines import PIPELINES

ARCHS = {
    "fasterrcnn_resnet50_fpn": "resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2": "resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn": "mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn": "resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2": "resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn": "resnet50_fpn",
}


def state_of(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        builder = getattr(torchvision.models.detection, name)
        return builder(weights=None, weights_backbone=None, num_classes=2).state_dict()


@pytest.mark.parametrize("name", [n for n in ARCHS if not n.startswith("keypoint")])
def test_each_detector_is_recognised_and_converts_to_exactly_its_detkit_model(name):
    state = state_of(name)
    arch = detect_torchvision_arch(state)
    assert arch == ARCHS[name]
    cfg = torchvision_model_config(arch, num_classes=1, masks=name.startswith("mask"))
    with torch.device("meta"):
        model = PIPELINES[cfg.pipeline].build(cfg)
    converted = set(convert_torchvision_detector(state, arch))
    if cfg.backbone.norm == "frozen_bn":  # weights=None builds BatchNorm2d; FrozenBatchNorm2d drops this buffer on load
        converted = {k for k in converted if not (k.startswith("backbone.body.") and k.endswith("num_batches_tracked"))}
    assert converted == set(model.state_dict())


def refusal(state: dict[str, torch.Tensor], arch: str) -> str:
    with pytest.raises(CheckpointError) as raised:
        check_all_keys_mapped(state, arch)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_keypoint_head_is_refused_whatever_the_version():
    keypoints = {k: v for k, v in state_of("keypointrcnn_resnet50_fpn").items() if k.startswith("roi_heads.keypoint")}
    for name in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"):
        state = {**state_of(name), **keypoints}
        message = refusal(state, detect_torchvision_arch(state))
        assert "belongs to a Keypoint R-CNN's keypoint branch" in message and f"{len(keypoints)} such keys" in message


def test_heads_of_the_other_version_are_refused_by_part():
    v1, v2 = state_of("maskrcnn_resnet50_fpn"), state_of("maskrcnn_resnet50_fpn_v2")
    t = torch.zeros(1)
    # A v2 head key in a v1 state (and back) belongs to no layer detkit builds for that version.
    assert "'roi_heads.box_head.0.0.weight' belongs to the box head" in refusal(
        {**v1, "roi_heads.box_head.0.0.weight": t}, "resnet50_fpn"
    )
    assert "'roi_heads.box_head.fc6.weight' belongs to the box head" in refusal(
        {**v2, "roi_heads.box_head.fc6.weight": t}, "resnet50_fpn_v2"
    )
    extra_rpn_conv = {**v1, "rpn.head.conv.1.0.weight": t}
    assert "'rpn.head.conv.1.0.weight' belongs to the RPN" in refusal(extra_rpn_conv, "resnet50_fpn")
    assert "'roi_heads.mask_head.0.1.weight' belongs to the mask branch" in refusal(
        {**v1, "roi_heads.mask_head.0.1.weight": t}, "resnet50_fpn"
    )
    # A fifth conv block: torchvision's Flatten would be at 5, so the block and its FC at 6 are not the v2 head.
    five_convs = {**v2, "roi_heads.box_head.4.0.weight": t, "roi_heads.box_head.6.weight": t}
    assert "belongs to the box head, which detkit cannot import (2 such keys)" in refusal(five_convs, "resnet50_fpn_v2")


def test_both_box_heads_in_one_state_are_a_v1_state_with_an_unmapped_key():
    v1 = state_of("fasterrcnn_resnet50_fpn")
    mixed = {**v1, **{k: v for k, v in state_of("fasterrcnn_resnet50_fpn_v2").items() if "box_head" in k}}
    assert detect_torchvision_arch(mixed) == "resnet50_fpn"
    assert "belongs to the box head" in refusal(mixed, "resnet50_fpn")
