"""R-CNN's recipes and row facts: the paper's VGG16 recipe, a small model for the synthetic shapes,
and its cost formula (proposals + regions x CNN time per region + SVMs and regression + NMS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import cast

from torch import nn

from detkit.config import (
    BackboneConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    ProposalConfig,
    RCNNConfig,
    SolverConfig,
)
from detkit.pipelines.faster_rcnn import faster_rcnn_synthetic
from detkit.pipelines.rcnn import build_rcnn
from detkit.pipelines.rcnn.model import RCNNDetector, RCNNTally
from detkit.pipelines.spec import PipelineSpec, selective_search_tally


def rcnn() -> ExperimentConfig:
    """R-CNN as in the paper: ImageNet CNN on 227 px warped regions with 16 px context, fine-tuned
    (SGD 0.001), SVMs with hard negatives, ridge box regression, NMS 0.3. VGG16 stands in for AlexNet."""
    return ExperimentConfig(
        name="rcnn",
        model=ModelConfig(
            pipeline="rcnn",
            # VGG16's conv5_3 (stride 16, pool5 dropped) is its stage 4: see modeling/backbones/trunks.py.
            backbone=BackboneConfig(name="vgg16", pretrained=True, fpn=False, returned_stages=(4,), trainable_stages=3),
            rcnn=RCNNConfig(finetune_iters=20000),
        ),
        data=DataConfig(batch_size=2),
        solver=SolverConfig(lr=0.001, weight_decay=5e-4, warmup_iters=0, schedule="step", step_epochs=(1,)),
    )


def rcnn_synthetic() -> ExperimentConfig:
    """Small R-CNN on the synthetic shapes: ResNet-18 from scratch on 64 px regions, fine-tuned first
    (without ImageNet weights the CNN's features mean nothing until it is)."""
    base = faster_rcnn_synthetic()
    return replace(
        base,
        name="rcnn_synthetic",
        model=ModelConfig(
            pipeline="rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,), norm="bn"),
            # 5 px of context in a 64 px crop is the paper's proportion (16 in 227).
            rcnn=RCNNConfig(crop_size=64, context_padding=5, finetune_iters=600, feature_batch_size=256),
        ),
        data=replace(base.data, batch_size=4),
        solver=SolverConfig(optimizer="adamw", lr=0.002, weight_decay=0.05, warmup_iters=50, schedule="cosine"),
    )


def rcnn_mobilenet() -> ExperimentConfig:
    """R-CNN for real data on a CPU: ImageNet MobileNetV2 (frozen BN, its top 3 stages fine-tuned) on
    128 px warped regions with 9 px context (the paper's 16 in 227), the 500 best selective-search
    regions per image. At 227 px and 2000 regions a 2-core CPU spends ~30 s per image in the CNN."""
    return ExperimentConfig(
        name="rcnn_mobilenet",
        model=ModelConfig(
            pipeline="rcnn",
            backbone=BackboneConfig(
                name="mobilenet_v2",
                pretrained=True,
                fpn=False,
                returned_stages=(5,),
                norm="frozen_bn",
                trainable_stages=3,
            ),
            proposals=ProposalConfig(topk=500),
            rcnn=RCNNConfig(crop_size=128, context_padding=9, finetune_iters=300, finetune_lr=0.001),
        ),
        data=DataConfig(batch_size=2),
        solver=SolverConfig(lr=0.001, weight_decay=5e-4, warmup_iters=0, schedule="step", step_epochs=(1,)),
    )


def region_tally(model: nn.Module) -> RCNNTally:
    """The detector's count of images and warped regions (``RCNNTally``)."""
    return cast(RCNNDetector, model).tally


def cost_breakdown(model: nn.Module, stage_ms: Mapping[str, float]) -> str | None:
    """The paper's cost per image: regions x (warp + CNN) time per region, from the stage times of the
    images the tally counted (None before any image)."""
    tally = region_tally(model)
    if not tally.images:
        return None
    regions = tally.regions / tally.images
    cnn_ms = stage_ms.get("backbone", 0.0) + stage_ms.get("preprocess", 0.0)
    return (
        f"R-CNN per image: {regions:.0f} regions x {cnn_ms / max(regions, 1):.2f} ms (warp + CNN) per region "
        f"= {cnn_ms:.1f} ms"
    )


SPEC = PipelineSpec(
    name="rcnn",
    build=build_rcnn,
    proposals="selective_search",
    score_thresh_key="model.rcnn.score_thresh",
    input_size=lambda long_side: (),  # every region is warped to the crop size, whatever the image's size
    full_load=(),  # untrained SVMs score every region 0.5: every region and class already reaches NMS
    presets=(rcnn, rcnn_mobilenet, rcnn_synthetic),
    staged=True,
    dense_network="cnn.backbone",
    proposal_tally=selective_search_tally,
    region_tally=region_tally,
    cost_breakdown=cost_breakdown,
)
