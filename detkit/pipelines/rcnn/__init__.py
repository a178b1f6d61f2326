"""R-CNN (Girshick et al., CVPR 2014): a staged pipeline. ``build_rcnn`` gives the test-time detector;
``detkit.engine.rcnn`` runs the training stages that fill its SVMs and regressors."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.modeling.backbones import build_backbone
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.ops.box_coder import BoxCoder
from detkit.pipelines.box_heads import check_num_classes
from detkit.pipelines.rcnn.model import RCNNDetector, RegionCNN

# The regressors' parameterization: the paper's deltas with unit weights (appendix C).
RCNN_BOX_CODER_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def build_rcnn(cfg: ModelConfig) -> RCNNDetector:
    """Selective-search proposals, a CNN over warped regions with a K+1-way fine-tuning classifier, and the
    paper's box coder, put together; the SVM and regressor buffers start at zero (the stages fill them)."""
    check_num_classes(cfg)
    return RCNNDetector(
        PrecomputedProposals(cfg.proposals),
        RegionCNN(build_backbone(cfg.backbone), cfg.num_classes),
        BoxCoder(RCNN_BOX_CODER_WEIGHTS),
        cfg.rcnn,
        image_mean=cfg.transform.image_mean,
        image_std=cfg.transform.image_std,
    )
