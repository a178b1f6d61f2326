"""The normalized and convolutional parts (conv_blocks, ConvFCBoxHead, MaskHead/RPNHead/FPN options) and
their defaults, which must leave every model built before them unchanged, names and all."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from detkit.config import (
    MaskHeadConfig,
)
from detkit.errors import ConfigError
from detkit.modeling.backbones import FeaturePyramid
from detkit.modeling.box_head import MLPBoxHead
from detkit.modeling.conv_blocks import conv_norm, conv_stack
from detkit.modeling.conv_box_head import ConvFCBoxHead
from detkit.modeling.mask_head import MaskHead
from detkit.modeling.rpn import RPNHead
from detkit.pipelines import PIPELINES
from detkit.structures import Target
from tests.pipelines.test_mask_rcnn import with_masks
from tests.pipelines.training import tiny_faster_rcnn_config, train_two_steps

# A Mask R-CNN small enough to train a step in well under a second on a CPU (tests/pipelines' tiny model).
TINY = replace(tiny_faster_rcnn_config(), pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=16, num_convs=2))


def tiny_batch() -> tuple[list[torch.Tensor], list[Target]]:
    """Two images of different sizes, one with two box-shaped instances and one with none."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=generator), torch.rand(3, 72, 64, generator=generator)]
    boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 70.0, 60.0]])
    targets = [Target(boxes=boxes, labels=torch.tensor([0, 2]), image_id=1), Target(image_id=2)]
    return images, with_masks(targets, images)


def test_a_stack_is_flat_conv_norm_relu_and_a_normed_conv_has_no_bias():
    plain, normed = conv_stack(4, 8, 2, "none"), conv_stack(4, 8, 2, "bn")
    assert [type(m) for m in plain] == [nn.Conv2d, nn.ReLU] * 2
    assert [type(m) for m in normed] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert plain[0].bias is not None and normed[0].bias is None and normed[3].in_channels == 8
    assert list(conv_stack(4, 8, 0, "bn")) == []
    assert conv_norm(4, 8, 1, "bn", relu=False)[0].padding == (0, 0)
    with pytest.raises(ValueError, match="none, bn"):
        conv_norm(4, 8, 3, "gn", relu=True)


def test_rpn_head_depth():
    assert list(RPNHead(8, 3).state_dict()) == [
        "conv.0.weight",
        "conv.0.bias",
        "cls_logits.weight",
        "cls_logits.bias",
        "bbox_pred.weight",
        "bbox_pred.bias",
    ]
    deep = RPNHead(8, 3, num_convs=2)
    assert [k for k in deep.state_dict() if k.startswith("conv.")] == [
        "conv.0.weight",
        "conv.0.bias",
        "conv.2.weight",
        "conv.2.bias",
    ]
    objectness, deltas = deep([torch.rand(2, 8, 5, 7)])
    assert objectness[0].shape == (2, 3, 5, 7) and deltas[0].shape == (2, 12, 5, 7)


def test_conv_fc_box_head_shapes_and_truncation():
    torch.manual_seed(0)
    head = ConvFCBoxHead(16, 7, num_convs=4, conv_channels=8, representation_size=32, norm="bn").eval()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in head.convs) == 4 and head.fc6.in_features == 8 * 7 * 7
    pooled = torch.rand(5, 16, 7, 7)
    with torch.no_grad():
        before = head(pooled)
        head.truncate(32)  # saves nothing at full rank: the layer stays
        assert isinstance(head.fc6, nn.Linear)
        head.truncate(4)
    assert before.shape == (5, 32) and (before >= 0).all()
    assert isinstance(head.fc6, nn.Sequential) and head(pooled).shape == (5, 32)
    assert ConvFCBoxHead(16, 7, 0, 8, 32).fc6.in_features == 16 * 7 * 7  # no convs: the pooled map itself


def test_mask_head_with_norm():
    head = MaskHead(16, channels=8, num_convs=4, norm="bn")
    assert [k for k in head.state_dict() if k.startswith("convs.")][:7] == [
        "convs.0.weight",
        "convs.1.weight",
        "convs.1.bias",
        "convs.1.running_mean",
        "convs.1.running_var",
        "convs.1.num_batches_tracked",
        "convs.3.weight",
    ]
    assert head(torch.rand(3, 16, 14, 14)).shape == (3, 8, 28, 28)


def test_fpn_with_norm_names_and_trains():
    fpn = FeaturePyramid([8, 16], 4, norm="bn").train()
    assert isinstance(fpn.lateral_convs[0], nn.Sequential) and fpn.lateral_convs[0][0].bias is None
    assert "output_convs.1.1.running_var" in fpn.state_dict()
    levels = fpn([torch.rand(2, 8, 8, 8), torch.rand(2, 16, 4, 4, requires_grad=True)])
    sum(level.square().mean() for level in levels).backward()  # the in-place top-down sum is autograd-safe
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fpn.parameters())
    assert isinstance(FeaturePyramid([8], 4).lateral_convs[0], nn.Conv2d)


def test_the_defaults_build_the_models_of_before():
    """Every new setting at its default: the same layers under the same names as before they existed."""
    names = list(PIPELINES["mask_rcnn"].build(TINY).state_dict())
    assert not any("running_" in n for n in names if not n.startswith("backbone.body."))  # norms only in the trunk
    assert [n for n in names if n.startswith("proposal_generator.head.conv.")] == [
        "proposal_generator.head.conv.0.weight",
        "proposal_generator.head.conv.0.bias",
    ]
    assert [n for n in names if n.startswith("roi_heads.box_head.")] == [
        f"roi_heads.box_head.{layer}.{p}" for layer in ("fc6", "fc7") for p in ("weight", "bias")
    ]
    assert "backbone.fpn.lateral_convs.0.weight" in names and "roi_heads.mask_branch.head.convs.2.weight" in names


def test_a_box_head_norm_without_convs_is_refused():
    faster = replace(TINY, pipeline="faster_rcnn")
    with pytest.raises(ConfigError, match="box_head_convs=0"):
        PIPELINES["faster_rcnn"].build(replace(faster, roi_heads=replace(faster.roi_heads, box_head_norm="bn")))
    assert isinstance(PIPELINES["faster_rcnn"].build(faster).roi_heads.box_head, MLPBoxHead)


def test_every_v2_part_trains_and_detects():
    """torchvision's v2 layout in miniature: BN FPN, two-conv RPN, conv box head and mask head with BN."""
    cfg = replace(
        TINY,
        backbone=replace(TINY.backbone, fpn_norm="bn"),
        rpn=replace(TINY.rpn, head_convs=2),
        roi_heads=replace(TINY.roi_heads, box_head_convs=2, box_head_conv_channels=16, box_head_norm="bn"),
        mask=replace(TINY.mask, norm="bn"),
    )
    torch.manual_seed(0)
    model = PIPELINES["mask_rcnn"].build(cfg)
    assert isinstance(model.roi_heads.box_head, ConvFCBoxHead)
    images, targets = tiny_batch()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 20 + 8 + 2 + 2  # resnet18 trunk, FPN (4 levels x 2 convs), box head, mask head
    train_two_steps(model, images, targets, {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"})
    assert all(int(m.num_batches_tracked) == 2 for m in norms)  # every norm trained on both steps
    with torch.no_grad():
        detections = model.eval()(images).detections
    assert detections is not None and all(d.masks is not None and len(d.masks) == len(d) for d in detections)
