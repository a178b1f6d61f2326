"""Self-describing checkpoints: weights, resolved config, classes, version, metrics, training state.

A checkpoint is data, never code: it is written with plain tensors, dicts, lists, strings and
numbers only, and read with ``torch.load(weights_only=True)``. A file holding a pickled object is
refused. Writes are atomic (temporary file + rename), so an interrupted save leaves the previous
checkpoint intact.

A raw torchvision detection state dict (such as ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``) is
recognised and converted on load, with COCO class names when it has torchvision's 91 outputs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import detkit
from detkit.config import ExperimentConfig
from detkit.config.overrides import config_from_dict, config_to_dict
from detkit.errors import CheckpointError
from detkit.io import atomic_write

FORMAT = "detkit-checkpoint-v1"


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained detector and to say what it detects."""

    config: ExperimentConfig
    model_state: dict[str, torch.Tensor]
    class_names: list[str]
    category_ids: list[int]
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)  # optimizer, scheduler, epoch, step, rng
    detkit_version: str = detkit.__version__
    source: str = ""  # the file it came from

    @property
    def pipeline(self) -> str:
        return self.config.model.pipeline


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    payload = {
        "format": FORMAT,
        "detkit_version": checkpoint.detkit_version,
        "pipeline": checkpoint.pipeline,
        "config": config_to_dict(checkpoint.config),
        "class_names": list(checkpoint.class_names),
        "category_ids": [int(c) for c in checkpoint.category_ids],
        "metrics": checkpoint.metrics,
        "model": checkpoint.model_state,
        "training_state": checkpoint.training_state,
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a detkit checkpoint or a torchvision detection state dict; never executes pickled code."""
    path = Path(path)
    payload = _load_data(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return _from_payload(payload, path)
    if isinstance(payload, dict) and _looks_like_torchvision_detector(payload):
        from detkit.modeling.torchvision_import import checkpoint_from_torchvision

        return checkpoint_from_torchvision(payload, path)
    raise CheckpointError(
        f"{path}: not a detkit checkpoint nor a torchvision Faster/Mask R-CNN state dict; "
        "pass a file written by `detkit train` or a torchvision detection .pth"
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """Build the checkpoint's pipeline and load its weights strictly."""
    from detkit.pipelines import PIPELINES

    model_cfg = checkpoint.config.model
    # The checkpoint holds every weight: building the trunk must not look for ImageNet files, which a
    # machine that only received the checkpoint does not have.
    model_cfg = replace(model_cfg, backbone=replace(model_cfg.backbone, pretrained=False))
    if model_cfg.pipeline not in PIPELINES:
        raise CheckpointError(
            f"{checkpoint.source}: pipeline {model_cfg.pipeline!r} is not available in this detkit "
            f"({', '.join(PIPELINES)}); upgrade detkit"
        )
    model = PIPELINES[model_cfg.pipeline](model_cfg)
    try:
        model.load_state_dict(checkpoint.model_state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{checkpoint.source}: weights do not fit a {model_cfg.pipeline} model with "
            f"{model_cfg.num_classes} classes ({first_line}); was it written by another detkit version?"
        ) from None
    return model


def _load_data(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass --weights with an existing file or run `detkit train` first")
    kind = _foreign_kind(path)
    if kind:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({kind}); pass a .pt written by `detkit train` or a torchvision detection .pth"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused, the file holds pickled Python objects, not plain weights "
            f"({str(error).strip().splitlines()[0][:120]}); only load checkpoints you trust, re-saved as a state dict"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({error.__class__.__name__}); re-download or re-train it") from None


# torch.save writes a zip archive; files from torch < 1.6 are a bare pickle (protocol 2+ starts with 0x80).
_TORCH_SIGNATURES = (b"PK\x03\x04", b"\x80")
_OTHER_SIGNATURES = {b"\xff\xd8": "a JPEG image", b"\x89PNG": "a PNG image", b"{": "JSON or text", b"[": "JSON or text"}


def _foreign_kind(path: Path) -> str:
    """What ``path`` is instead of a torch file ("" when it starts like one)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(_TORCH_SIGNATURES):
        return ""
    stripped = head.lstrip()
    return next((what for signature, what in _OTHER_SIGNATURES.items() if stripped.startswith(signature)), "unrecognised bytes")


def _from_payload(payload: dict[str, Any], path: Path) -> Checkpoint:
    try:
        return Checkpoint(
            config=config_from_dict(ExperimentConfig, payload["config"]),
            model_state=payload["model"],
            class_names=list(payload["class_names"]),
            category_ids=[int(c) for c in payload["category_ids"]],
            metrics=payload.get("metrics", {}),
            training_state=payload.get("training_state", {}),
            detkit_version=payload.get("detkit_version", "?"),
            source=str(path),
        )
    except KeyError as missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; it is damaged, re-train or re-download it") from None


def _looks_like_torchvision_detector(state: dict[str, Any]) -> bool:
    return "roi_heads.box_predictor.cls_score.weight" in state and any(k.startswith("backbone.body.") for k in state)
