"""Which graph a detector exports as, what it takes and returns, and the size it is made at.

A pipeline's facts (``PipelineSpec``) and its model's type choose the graph: a staged pipeline (R-CNN)
has none, a dense one is ``YOLOGraph``, a two-stage one with selective-search proposals is
``ProposalGraph`` (the proposals are its second input), one with an RPN is ``RPNGraph`` or, with
masks, ``MaskRPNGraph``. R-CNN's region CNN alone (``part="cnn"``) is ``RegionCNNGraph``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

from torch import Tensor, nn

from detkit.errors import ConfigError
from detkit.export.metadata import BOXES, CROPS, FEATURES, IMAGE, LABELS, MASKS, PROPOSALS, SCORES, TensorSpec
from detkit.export.two_stage_graph import (
    BackboneNetwork,
    BoxNetwork,
    MaskNetwork,
    MaskRPNGraph,
    ProposalGraph,
    RPNGraph,
    RPNHeadNetwork,
)
from detkit.export.yolo_graph import YOLOGraph, YOLONetwork
from detkit.modeling.two_stage import TwoStageDetector
from detkit.modeling.yolo import YOLODetector
from detkit.pipelines.rcnn.model import RCNNDetector, RegionCNN
from detkit.pipelines.spec import PipelineSpec

# The parts of a graph with static shapes, which TorchScript traces (the rest is scripted).
NETWORKS: tuple[type[nn.Module], ...] = (BackboneNetwork, RPNHeadNetwork, BoxNetwork, MaskNetwork, YOLONetwork)
PARTS = ("detector", "cnn")


@dataclass
class ExportGraph:
    """A module to export and the facts its file records.

    ``size`` is the ``(H, W)`` the model runs at without resampling a 4:3 landscape image (the default
    export size); ``score_thresh``, ``nms_thresh`` and ``detections_per_image`` are the graph's own (its
    final NMS: what verification needs to tell a detection flipped at its edges from a wrong one)."""

    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    size: tuple[int, int]
    score_thresh: float
    nms_thresh: float
    detections_per_image: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    part: str = "detector"


def build_graph(model: nn.Module, spec: PipelineSpec, *, half: bool = False, part: str = "detector") -> ExportGraph:
    """The graph of ``model`` (a ``spec.name`` detector in eval mode); ``ConfigError`` when it has none."""
    if part not in PARTS:
        raise ConfigError(f"--part {part}: choose detector (the default) or cnn (R-CNN's region CNN)")
    if spec.staged:
        if part == "cnn":
            return _region_cnn_graph(model, half)
        raise ConfigError(
            f"{spec.name} has no single graph: each image's ~2000 selective-search regions are warped one by one "
            "and scored by per-class SVMs fitted after the CNN; export its region CNN with --part cnn, or use "
            "fast_rcnn, faster_rcnn, mask_rcnn or yolo"
        )
    if part != "detector":
        raise ConfigError(f"--part {part} applies to rcnn only; {spec.name} exports as one detector graph")
    if isinstance(model, YOLODetector):
        return _in_half(_yolo_graph(model, half), half)
    if isinstance(model, TwoStageDetector):
        return _in_half(_two_stage_graph(model, spec, half), half)
    raise ConfigError(f"{spec.name}: its model ({type(model).__name__}) has no export graph in this detkit")


def _in_half(graph: ExportGraph, half: bool) -> ExportGraph:
    """With ``half``, the graph's networks in float16, on a copy: the graph shares its modules with the
    eager model, which must stay float32 (it is what the file is checked against)."""
    if half:
        graph.module = copy.deepcopy(graph.module)
        for name in networks_of(graph.module):
            getattr(graph.module, name).half()
    return graph


def networks_of(module: nn.Module) -> list[str]:
    """The names of ``module``'s children that are static-shape networks (what TorchScript traces)."""
    return [name for name, child in module.named_children() if isinstance(child, (*NETWORKS, RegionCNNNetwork))]


def second_size(size: tuple[int, int]) -> tuple[int, int]:
    """Another size to check a dynamic file at: the same image turned a quarter, or a 4:3 one if square."""
    height, width = size
    return (width, height) if height != width else (3 * height // 4, width)


def _yolo_graph(model: YOLODetector, half: bool) -> ExportGraph:
    side = model.transform.side
    return ExportGraph(
        module=YOLOGraph(model, half).eval(),
        inputs=(IMAGE,),
        outputs=(BOXES, SCORES, LABELS),
        size=(3 * side // 4, side) if model.transform.letterbox else (side, side),
        score_thresh=float(model.cfg.score_thresh),
        nms_thresh=float(model.cfg.nms_thresh),
        detections_per_image=model.cfg.detections_per_image,
        image_mean=_values(model.transform.mean),
        image_std=_values(model.transform.std),
    )


def _two_stage_graph(model: TwoStageDetector, spec: PipelineSpec, half: bool) -> ExportGraph:
    module: nn.Module
    inputs: tuple[TensorSpec, ...] = (IMAGE,)
    outputs: tuple[TensorSpec, ...] = (BOXES, SCORES, LABELS)
    if spec.uses_selective_search:
        module, inputs = ProposalGraph(model, half), (IMAGE, PROPOSALS)
    elif model.roi_heads.mask_branch is not None:
        module, outputs = MaskRPNGraph(model, half), (BOXES, SCORES, LABELS, MASKS)
    else:
        module = RPNGraph(model, half)
    transform, heads = model.transform, model.roi_heads
    return ExportGraph(
        module=module.eval(),
        inputs=inputs,
        outputs=outputs,
        size=_landscape(transform.min_size[-1], transform.max_size),
        score_thresh=float(heads.cfg.score_thresh),
        nms_thresh=float(heads.cfg.nms_thresh),
        detections_per_image=heads.cfg.detections_per_image,
        image_mean=_values(transform.mean),
        image_std=_values(transform.std),
    )


def _region_cnn_graph(model: nn.Module, half: bool) -> ExportGraph:
    if not isinstance(model, RCNNDetector):
        raise ConfigError(f"--part cnn: the model is a {type(model).__name__}, not R-CNN's detector")
    crop = model.cfg.crop_size
    return _in_half(
        ExportGraph(
            module=RegionCNNGraph(model, half).eval(),
            inputs=(CROPS,),
            outputs=(FEATURES,),
            size=(crop, crop),
            score_thresh=float(model.cfg.score_thresh),
            nms_thresh=float(model.cfg.nms_thresh),
            detections_per_image=model.cfg.detections_per_image,
            image_mean=_values(model.mean),
            image_std=_values(model.std),
            part="cnn",
        ),
        half,
    )


class RegionCNNNetwork(nn.Module):
    """``RegionCNN.features``: crops ``[R, 3, S, S]`` -> ``[R, F]`` (the trunk, then global average pooling)."""

    def __init__(self, cnn: nn.Module) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, crops: Tensor) -> Tensor:
        features: Tensor = cast(RegionCNN, self.cnn).features(crops)
        return features


class RegionCNNGraph(nn.Module):
    """R-CNN's region CNN: warped, normalized crops ``[R, 3, S, S]`` -> features ``[R, F]`` (what its
    SVMs and regressors read); warping, SVMs, regression and NMS stay outside."""

    def __init__(self, model: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.network: nn.Module = RegionCNNNetwork(cast(nn.Module, model.cnn))
        self.fp16 = half

    def forward(self, crops: Tensor) -> Tensor:
        features: Tensor = self.network(crops.half() if self.fp16 else crops)
        return features.float()


def _landscape(min_size: int, max_size: int) -> tuple[int, int]:
    """The 4:3 landscape size a two-stage transform keeps as it is."""
    height, width = min_size, 4 * min_size // 3
    return (height, width) if width <= max_size else (3 * max_size // 4, max_size)


def _values(buffer: Tensor) -> tuple[float, ...]:
    return tuple(float(v) for v in buffer.flatten().tolist())
