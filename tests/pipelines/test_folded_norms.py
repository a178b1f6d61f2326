"""Every pipeline detects the same with its batch norms folded into its convs, as ``detect`` and ``eval`` run it.

Tolerance (``TOLERANCE``): boxes within 1e-3 px and scores within 1e-5 of the unfolded model's, labels
equal, every detection matched, masks at IoU 0.99 or more (on a 96x128 image). The fold changes float32
rounding only: these models' boxes moved by at most 2.3e-5 px and their scores by 1.5e-7 when this was
written. The norms' running statistics and affine parameters are randomized first: a freshly built
norm is nearly the identity, and folding it would prove little.
"""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.config import BackboneConfig, MaskHeadConfig, ProposalConfig, RCNNConfig, YOLOConfig
from detkit.data.images import image_to_tensor
from detkit.export.verify import Agreement, Tolerance, compare_detections
from detkit.modeling.fuse import folded_copy
from detkit.pipelines import PIPELINES
from tests.modeling.test_fuse import randomize_norms
from tests.proposals.images import rectangles_image

TOLERANCE = Tolerance(box=1e-3, score=1e-5, mask_iou=0.99, nms_iou=0.0)  # every detection paired: no NMS edge
NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def configs(tiny, cache_dir):
    """The tiny config of each pipeline: the pipeline tests' own, with a norm after every conv there is."""
    normed = replace(
        tiny,
        backbone=replace(tiny.backbone, fpn_norm="bn"),
        roi_heads=replace(tiny.roi_heads, box_head_convs=1, box_head_norm="bn", representation_size=32),
    )
    proposals = ProposalConfig(topk=64, cache_dir=str(cache_dir))
    return {
        "faster_rcnn": normed,
        "mask_rcnn": replace(
            normed, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=16, num_convs=2, norm="bn")
        ),
        "fast_rcnn": replace(
            tiny,
            pipeline="fast_rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, norm="frozen_bn"),
            roi_heads=replace(tiny.roi_heads, pooler="roi_pool"),
            proposals=proposals,
        ),
        "rcnn": replace(
            tiny,
            pipeline="rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,)),
            proposals=proposals,
            rcnn=RCNNConfig(crop_size=32, context_padding=3, score_thresh=0.0),
        ),
        "yolo": replace(
            tiny,
            pipeline="yolo",
            backbone=BackboneConfig(name="resnet18", fpn=False),
            yolo=YOLOConfig(image_size=96, train_sizes=(96,), width_multiple=0.125, score_thresh=0.0),
        ),
    }


def built(cfg) -> nn.Module:
    torch.manual_seed(0)
    model = randomize_norms(PIPELINES[cfg.pipeline].build(cfg)).eval()
    if cfg.pipeline == "rcnn":  # its per-class SVMs and regressors start at zero: every score would tie
        model.svm_weight.normal_()
        model.regressor_weight.normal_(std=1e-3)
    return model


@pytest.mark.parametrize("name", ["rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn", "yolo"])
def test_folded_model_detects_what_the_unfolded_one_does(name, tiny_model_config, tmp_path):
    cfg = configs(tiny_model_config, tmp_path)[name]
    model = built(cfg)
    folded = folded_copy(model)
    assert any(isinstance(m, NORMS) for m in model.modules())
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    image = image_to_tensor(rectangles_image(96, 128))
    with torch.inference_mode():
        expected, actual = model([image]).detections[0], folded([image]).detections[0]
    agreement = compare_detections(
        expected, actual, TOLERANCE, score_thresh=0.0, detections_per_image=10**6, nms_thresh=0.5, into=Agreement()
    )
    assert len(expected) > 0 and len(actual) == len(expected)
    assert agreement.matched == len(expected) and agreement.labels_agree, agreement.summary()
    assert agreement.passes(TOLERANCE), agreement.summary()
