"""Self-describing checkpoints: weights, resolved config, classes, version, metrics, training state.

A checkpoint is data, never code: it is written with plain tensors, dicts, lists, strings and
numbers only, and read with ``torch.load(weights_only=True)``. A file holding a pickled object is
refused. Writes are atomic (temporary file + rename), so an interrupted save leaves the previous
checkpoint intact; a write the disk refuses (full, read-only, no permission) is a ``StorageError``
naming the destination, and leaves no partial file.

Everything in a loaded file is checked before it is used, and a problem is a ``CheckpointError``
naming the file, the field and the fix, never an error deep inside torch:

- the payload's fields (``_from_payload``): class names are strings, category ids distinct integers,
  one per class, the weights a dict of tensors, the config a tree of plain values that
  ``config_from_dict`` accepts;
- the weights against the model they are loaded into (``check_weights_fit``): no missing or
  unexpected tensor, every shape equal, the same kind of values (``load_state_dict`` would cast int8
  or bool values into a float parameter silently) and only finite floating-point values.

A checkpoint never chooses a location. Its config is the resolved config of the run that wrote
it, so it holds that run's paths: where it wrote (``output_dir``, ``name``), what it read
(``data.*``, ``model.backbone.weights_path``) and its proposal cache. A file received from
elsewhere must not decide where ``detect``, ``eval`` or ``train --weights`` read and write on this
machine, so ``load_checkpoint`` reads the config without ``LOCATION_FIELDS`` (their defaults apply;
the run name becomes the pipeline's); the command's own options and config choose them.
``model.init_weights`` stays, as the record of what the run started from: no command reads it from a
checkpoint (``train --weights`` sets its own).

A raw torchvision detection state dict (such as ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``) is
recognised and converted on load, with COCO class names when it has torchvision's 91 outputs.
"""

from __future__ import annotations

import errno
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detkit.config import ExperimentConfig, ModelConfig
from detkit.config.legacy import upgrade
from detkit.config.overrides import config_from_dict, config_to_dict, without_keys
from detkit.errors import CheckpointError, ConfigError, StorageError, a_type, quoted, shown
from detkit.io import atomic_write
from detkit.modeling.state_checks import DAMAGED, check_tensor_dict, check_weights_fit
from detkit.modeling.torchvision_import import (
    coco_class_names,
    convert_torchvision_detector,
    detect_torchvision_arch,
    has_masks,
    torchvision_model_config,
    torchvision_num_classes,
)
from detkit.pipelines import PIPELINES
from detkit.version import __version__
from detkit.zoo import looks_like_a_name, pretrained_models, resolve_weights

FORMAT = "detkit-checkpoint-v1"


# Config fields (dotted keys) that name places on disk; see the module docstring.
LOCATION_FIELDS: tuple[str, ...] = (
    "output_dir",
    "name",  # the run folder under output_dir
    "model.backbone.weights_path",
    "model.proposals.cache_dir",
    "data.train_annotations",
    "data.train_images",
    "data.val_annotations",
    "data.val_images",
)


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained detector and to say what it detects."""

    config: ExperimentConfig
    model_state: dict[str, torch.Tensor]
    class_names: list[str]
    category_ids: list[int]
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)  # optimizer, scheduler, epoch, step, rng
    detkit_version: str = __version__
    source: str = ""  # the file it came from

    @property
    def pipeline(self) -> str:
        return self.config.model.pipeline


# ---------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically; a write the disk refuses is a ``StorageError`` and leaves no file."""
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
    path = Path(path)
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except OSError as error:
        raise StorageError(f"{path}: cannot write the checkpoint ({_os_reason(error, path.parent)})") from None
    except RuntimeError as error:
        # torch.save's zip writer reports a short write as "[enforce fail at inline_container.cc:672] .
        # unexpected pos 66880 vs 66776", not as the OSError(ENOSPC) that caused it.
        first_line = str(error).strip().splitlines()[0][:120] if str(error).strip() else "no message"
        raise StorageError(
            f"{path}: cannot write the checkpoint, the disk is likely full ({_free_space(path.parent)}; "
            f"torch: {first_line}); {_ELSEWHERE}"
        ) from None


_ELSEWHERE = "free some space there or write the run elsewhere with --output"


def _os_reason(error: OSError, folder: Path) -> str:
    """Why the disk refused a write, and what to do about it."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full: {_free_space(folder)}; {_ELSEWHERE}"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied in {folder}; make it writable or write the run elsewhere with --output"
    if error.errno == errno.EROFS:
        return f"{folder} is on a read-only filesystem; write the run elsewhere with --output"
    reason = error.strerror or error.__class__.__name__
    return f"{reason}; {_free_space(folder)}; check the disk, or write the run elsewhere with --output"


def _free_space(folder: Path) -> str:
    """``"12.3 MiB free in FOLDER"`` (the nearest existing folder above it when it was never created)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return f"free space in {folder} unknown"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if free >= size:
            return f"{free / size:.1f} {unit} free in {existing}"
    return f"{free} bytes free in {existing}"


# ---------------------------------------------------------------------------------------------
# Reading


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a detkit checkpoint or a torchvision detection state dict; never executes pickled code.

    Every field is checked (see the module docstring); the config's locations are reset to defaults.
    """
    path = resolve_weights(path)  # a pretrained name (``detkit models``) -> its downloaded file
    payload = _load_data(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return _from_payload(payload, path)
    if isinstance(payload, dict) and _looks_like_torchvision_detector(payload):
        return checkpoint_from_torchvision(payload, path)
    raise CheckpointError(
        f"{path}: not a detkit checkpoint nor a torchvision Faster/Mask R-CNN state dict; "
        "pass a file written by `detkit train` or a torchvision detection .pth"
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """Build the checkpoint's pipeline and load its weights, once ``check_weights_fit`` passed them.

    The model is first built on the meta device (shapes and dtypes, no memory): the config comes from
    the file, and a damaged one may describe a model of terabytes; only weights that match a model the
    file's own tensors fill are then built for real.
    """
    model_cfg = checkpoint.config.model
    # The checkpoint holds every weight: building the trunk must not look for ImageNet files, which a
    # machine that only received the checkpoint does not have.
    model_cfg = replace(model_cfg, backbone=replace(model_cfg.backbone, pretrained=False))
    if model_cfg.pipeline not in PIPELINES:
        raise CheckpointError(
            f"{checkpoint.source}: pipeline {shown(model_cfg.pipeline)} is not available in this detkit "
            f"({', '.join(PIPELINES)}); upgrade detkit"
        )
    with torch.device("meta"):
        layout = _build_from_file_config(PIPELINES[model_cfg.pipeline].build, model_cfg, checkpoint)
    what = f"a {model_cfg.pipeline} model with {model_cfg.num_classes} classes"
    check_weights_fit(layout, checkpoint.model_state, checkpoint.source, what)
    model = PIPELINES[model_cfg.pipeline].build(model_cfg)
    model.load_state_dict(checkpoint.model_state, strict=True)
    return model


def _build_from_file_config(
    builder: Callable[[ModelConfig], nn.Module], model_cfg: ModelConfig, checkpoint: Checkpoint
) -> nn.Module:
    """``builder(model_cfg)``; a config it refuses is the file's problem. Values no detkit writes (a
    negative channel count, an empty anchor list) fail in whatever way torch's layers fail, so those
    errors are the file's too, reported with their class and first line."""
    try:
        return builder(model_cfg)
    except ConfigError as error:
        raise CheckpointError(f"{checkpoint.source}: its config does not build a model ({error}); {_NEWER}") from None
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as error:
        reason = (str(error).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"{checkpoint.source}: its config does not build a {model_cfg.pipeline} model "
            f"({error.__class__.__name__}: {reason}); {DAMAGED}"
        ) from None


_NEWER = f"the checkpoint may come from a newer detkit than this one ({__version__}): upgrade detkit or re-train it"


# ---------------------------------------------------------------------------------------------
# The file and its fields


def _load_data(path: Path) -> Any:
    if not path.is_file() and looks_like_a_name(path):
        raise CheckpointError(
            f"{path}: no such checkpoint file nor pretrained model name; `detkit models` lists the names "
            f"({', '.join(pretrained_models())})"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; pass --weights with an existing file or run `detkit train` first"
        )
    kind = _foreign_kind(path)
    if kind:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({kind}); "
            "pass a .pt written by `detkit train` or a torchvision detection .pth"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused, the file holds pickled Python objects, not plain weights "
            f"({str(error).strip().splitlines()[0][:120]}); only load checkpoints you trust, re-saved as a state dict"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: unreadable or truncated checkpoint ({error.__class__.__name__}); re-download or re-train it"
        ) from None


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
    return next(
        (what for signature, what in _OTHER_SIGNATURES.items() if stripped.startswith(signature)), "unrecognised bytes"
    )


_REQUIRED = ("config", "model", "class_names", "category_ids")


def _from_payload(payload: dict[str, Any], path: Path) -> Checkpoint:
    """A ``Checkpoint`` from a detkit payload, each field checked: what a later step would trip over
    (a name that is not text, a config from a newer detkit) is refused here, naming the field."""
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing[0]!r}; {DAMAGED}")
    version = payload.get("detkit_version", "?")
    if not isinstance(version, str):
        raise CheckpointError(f"{path}: detkit_version is {shown(version)}, not text; {DAMAGED}")
    class_names = _class_names(payload["class_names"], path)
    config = _config(payload["config"], path)
    if config.model.num_classes != len(class_names):
        raise CheckpointError(
            f"{path}: its config says model.num_classes={config.model.num_classes} but it names "
            f"{len(class_names)} classes; {DAMAGED}"
        )
    return Checkpoint(
        config=config,
        model_state=check_tensor_dict(payload["model"], path, "model"),
        class_names=class_names,
        category_ids=_category_ids(payload["category_ids"], len(class_names), path),
        metrics=_mapping(payload.get("metrics", {}), path, "metrics"),
        training_state=_mapping(payload.get("training_state", {}), path, "training_state"),
        detkit_version=version,
        source=str(path),
    )


def _mapping(value: Any, path: Path, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: {name} is {a_type(value)}, not a mapping; {DAMAGED}")
    return value


def _class_names(value: Any, path: Path) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise CheckpointError(f"{path}: class_names is {a_type(value)}, not a non-empty list of names; {DAMAGED}")
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: class_names[{index}] is {shown(name)}, not text; {DAMAGED}")
    return list(value)


_INT64 = 2**63  # category ids become tensor values and JSON numbers


def _category_ids(value: Any, count: int, path: Path) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise CheckpointError(f"{path}: category_ids is {a_type(value)}, not a list of integers; {DAMAGED}")
    for index, category_id in enumerate(value):
        if isinstance(category_id, bool) or not isinstance(category_id, int) or not -_INT64 <= category_id < _INT64:
            raise CheckpointError(f"{path}: category_ids[{index}] is {shown(category_id)}, not an integer; {DAMAGED}")
    if len(value) != count:
        raise CheckpointError(f"{path}: {len(value)} category_ids for {count} class_names; {DAMAGED}")
    if len(set(value)) != len(value):
        repeated = next(c for i, c in enumerate(value) if c in value[:i])
        raise CheckpointError(f"{path}: category id {repeated} appears twice in category_ids; {DAMAGED}")
    return list(value)


_MAX_CONFIG_DEPTH = 12  # config_to_dict writes at most 6 levels (config.model.anchors.sizes[i][j])


def _config(value: Any, path: Path) -> ExperimentConfig:
    """The payload's config as an ``ExperimentConfig``; a key or value this detkit does not know
    (``ConfigError``) may be a newer detkit's, so the message says which version this is."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: config is {a_type(value)}, not a mapping of keys to values; {DAMAGED}")
    _check_plain(value, "config", path, 0)
    try:
        # Locations are dropped before parsing, not reset after: a value no command will use must not
        # make the file unreadable (a run named '../x' by an older detkit, which allowed it).
        cfg: ExperimentConfig = config_from_dict(ExperimentConfig, without_keys(upgrade(value), LOCATION_FIELDS))
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config does not fit this detkit ({error}); {_NEWER}") from None
    return replace(cfg, name=cfg.model.pipeline)


def _check_plain(value: Any, where: str, path: Path, depth: int) -> None:
    """Refuse what ``config_to_dict`` never writes, before ``config_from_dict`` quotes it in a message:
    keys that are not text, tensors (whose repr spans lines), integers of hundreds of digits."""
    if depth > _MAX_CONFIG_DEPTH:
        raise CheckpointError(f"{path}: {where} is nested too deeply for a config; {DAMAGED}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{path}: {where} has the key {shown(key)}, not a name; {DAMAGED}")
            _check_plain(item, f"{where}.{key}", path, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", path, depth + 1)
    elif isinstance(value, int) and value.bit_length() > 64:
        raise CheckpointError(f"{path}: {where} is {quoted(value)}, too large for any setting; {DAMAGED}")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise CheckpointError(f"{path}: {where} is {a_type(value)}, not a plain value; {DAMAGED}")


def _looks_like_torchvision_detector(state: dict[str, Any]) -> bool:
    return "roi_heads.box_predictor.cls_score.weight" in state and any(
        isinstance(k, str) and k.startswith("backbone.body.") for k in state
    )


def checkpoint_from_torchvision(state_dict: dict[str, torch.Tensor], path: Path) -> Checkpoint:
    """A detkit ``Checkpoint`` for a torchvision detector's ``.pth``
    (e.g. fasterrcnn_resnet50_fpn_coco-258fb6c6.pth).

    With torchvision's 91 outputs the classes are COCO's: label k is COCO category id k + 1, named
    from torchvision's weight metadata (ids COCO leaves unused are named "N/A").
    """
    check_tensor_dict(state_dict, path, "the state dict")
    try:
        arch = detect_torchvision_arch(state_dict)
        num_classes = torchvision_num_classes(state_dict)
        model_state = convert_torchvision_detector(state_dict, arch)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    model = torchvision_model_config(
        arch, num_classes, low_resolution="320" in Path(path).name, masks=has_masks(state_dict)
    )
    names = coco_class_names() if num_classes == 90 else [f"class_{k + 1}" for k in range(num_classes)]
    return Checkpoint(
        config=ExperimentConfig(name=f"torchvision_{arch}", model=model),
        model_state=model_state,
        class_names=names,
        category_ids=list(range(1, num_classes + 1)),
        metrics={},
        detkit_version="torchvision",
        source=str(path),
    )
