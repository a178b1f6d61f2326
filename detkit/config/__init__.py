"""Experiment configuration: frozen dataclasses, presets and ``--set`` overrides."""

from detkit.config.schema import (
    AnchorConfig,
    BackboneConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LossWeights,
    MaskHeadConfig,
    ModelConfig,
    ProposalConfig,
    RCNNConfig,
    RoIHeadsConfig,
    RPNConfig,
    RuntimeConfig,
    SolverConfig,
    TransformConfig,
    YOLOConfig,
)

__all__ = [
    "AnchorConfig",
    "BackboneConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossWeights",
    "MaskHeadConfig",
    "ModelConfig",
    "ProposalConfig",
    "RCNNConfig",
    "RPNConfig",
    "RuntimeConfig",
    "RoIHeadsConfig",
    "SolverConfig",
    "TransformConfig",
    "YOLOConfig",
]
