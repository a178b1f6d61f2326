"""Experiment configuration: frozen dataclasses, presets and ``--set`` overrides."""

from detkit.config.schema import (
    AnchorConfig,
    BackboneConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    ProposalConfig,
    RoIHeadsConfig,
    RPNConfig,
    SolverConfig,
    TransformConfig,
)

__all__ = [
    "AnchorConfig",
    "BackboneConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "ProposalConfig",
    "RPNConfig",
    "RoIHeadsConfig",
    "SolverConfig",
    "TransformConfig",
]
