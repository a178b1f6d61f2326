"""R-CNN (Girshick et al., CVPR 2014): a staged pipeline. ``build_rcnn`` gives the test-time detector;
``detkit.engine.rcnn`` runs the training stages that fill its SVMs and regressors."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.pipelines.box_heads import check_num_classes
from detkit.pipelines.rcnn.model import RCNNDetector


def build_rcnn(cfg: ModelConfig) -> RCNNDetector:
    check_num_classes(cfg)
    return RCNNDetector(cfg)
