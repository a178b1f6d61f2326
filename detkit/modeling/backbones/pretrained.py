"""ImageNet weights for a trunk: a local file, else torchvision's published one, downloaded once.

detkit reads torchvision's weight enums for their ``url`` (reading it never downloads) and looks for
that file: ``cfg.weights_path`` if set (then nothing else), else torchvision's cache
(``$TORCH_HOME/hub/checkpoints``), else ``weights/`` in the current folder. The IMAGENET1K_V1 file is
preferred (the weights the detection literature and torchvision's detectors start from); a V2 file
found locally is accepted too. With no local copy the V1 file is downloaded into torchvision's cache
(``detkit.download``: hash-checked, atomic, never under ``--offline``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

from detkit.config.schema import BackboneConfig
from detkit.download import fetch_weights, weights_cache_dir
from detkit.errors import CheckpointError, ConfigError, WeightsNotFoundError

IMAGENET_WEIGHTS = {
    "resnet18": (models.ResNet18_Weights.IMAGENET1K_V1,),
    "resnet50": (models.ResNet50_Weights.IMAGENET1K_V1, models.ResNet50_Weights.IMAGENET1K_V2),
    "mobilenet_v2": (models.MobileNet_V2_Weights.IMAGENET1K_V1, models.MobileNet_V2_Weights.IMAGENET1K_V2),
    "mobilenet_v3_large": (
        models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        models.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
    ),
    "vgg16": (models.VGG16_Weights.IMAGENET1K_V1,),
    # YOLOv8's trunk: trained from scratch with the detector; only a weights_path file loads into it.
    "csp_n": (),
    "csp_s": (),
    "csp_m": (),
}


def find_imagenet_weights(cfg: BackboneConfig) -> Path:
    """The checkpoint to load for ``cfg.name``: ``weights_path``, a local copy, or a fresh download."""
    if cfg.weights_path:
        path = Path(cfg.weights_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"model.backbone.weights_path={cfg.weights_path}: no such file; "
                f"point it at an ImageNet {cfg.name} checkpoint or set model.backbone.pretrained=false"
            )
        return path
    urls = [w.url for w in IMAGENET_WEIGHTS[cfg.name]]
    if not urls:
        raise ConfigError(
            f"model.backbone.name={cfg.name} has no published ImageNet weights (it trains from scratch): "
            "set model.backbone.pretrained=false, or model.backbone.weights_path=FILE of this trunk's weights"
        )
    folders = (weights_cache_dir(), Path.cwd() / "weights")
    for path in (folder / Path(url).name for url in urls for folder in folders):
        if path.is_file():
            return path
    return fetch_weights(
        urls[0],
        what=f"ImageNet weights for {cfg.name}",
        alternative="pass --set model.backbone.weights_path=FILE or model.backbone.pretrained=false",
    )


def load_imagenet_weights(trunk: nn.Module, cfg: BackboneConfig, key_prefix: str) -> Path:
    """Copy an ImageNet classifier checkpoint into ``trunk``; returns the file used.

    ``key_prefix`` is where the trunk's layers live in the classifier (``"features."`` for
    MobileNet and VGG, ``""`` for ResNet). Keys outside the trunk (the classifier, and layers the
    trunk dropped because no feature is read from them) are ignored; every trunk key must be found.
    """
    path = find_imagenet_weights(cfg)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated or pickled code: all the user can do is replace it
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({error})") from error
    state = _trunk_state(_unwrap(checkpoint, path), trunk, key_prefix)
    missing = [k for k in trunk.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} of the {cfg.name} trunk's weights are missing (first: {missing[0]}); "
            f"is it an ImageNet {cfg.name} checkpoint from torchvision?"
        )
    try:
        trunk.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatch: a checkpoint of another width or depth
        raise CheckpointError(f"{path}: does not fit {cfg.name}: {str(error).splitlines()[-1].strip()}") from error
    return path


def _unwrap(checkpoint: object, path: Path) -> dict[str, Tensor]:
    """A plain state dict, also from the common ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers."""
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return checkpoint


def _trunk_state(state: dict[str, Tensor], trunk: nn.Module, key_prefix: str) -> dict[str, Tensor]:
    """Classifier keys -> trunk keys; the classifier head (``fc.``, ``classifier.``) falls outside the trunk."""
    wanted = trunk.state_dict().keys()
    renamed = ((k[len(key_prefix) :], v) for k, v in state.items() if k.startswith(key_prefix))
    return {k: v for k, v in renamed if k in wanted}
