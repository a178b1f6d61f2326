"""torchvision detection state dicts -> detkit state dicts.

detkit's modules keep torchvision's layer names where they can, so importing a torchvision
detector is a few prefix renames per component. Each function takes the full
``model.state_dict()`` of a torchvision detector, picks its component's keys and returns them
under the names of the detkit detector (whose attributes are ``backbone``, ...).

Six detectors import (``TORCHVISION_DETECTORS``): the v1 Faster R-CNNs (ResNet-50 and MobileNetV3
FPN, the latter's 320 px variant sharing its layout) and Mask R-CNN, and the ``_v2`` pair
``fasterrcnn_resnet50_fpn_v2`` / ``maskrcnn_resnet50_fpn_v2`` (Li et al. 2021): BatchNorm in the
trunk, after every FPN conv and every box and mask head conv, a two-conv RPN head, and a box head of
four convs and one FC layer. ``detect_torchvision_arch`` tells them apart by their keys.

Nothing is dropped silently: a key no converter maps (a Keypoint R-CNN's keypoint head, a box head
that is neither of torchvision's two) is refused, naming the key and the part of the model it belongs
to, rather than imported as a detector that lacks that part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from detkit.config.schema import (
    AnchorConfig,
    BackboneConfig,
    MaskHeadConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    TransformConfig,
)
from detkit.errors import CheckpointError, ConfigError
from detkit.modeling.state_checks import quoted_name

# The builders whose state dicts detkit imports, for messages.
TORCHVISION_DETECTORS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)
_IMPORTABLE = ", ".join(TORCHVISION_DETECTORS)

# --------------------------------------------------------------------------------------------
# Backbone: ``backbone.body.*`` (trunk) and ``backbone.fpn.*`` (FeaturePyramidNetwork)
# --------------------------------------------------------------------------------------------
#   backbone.body.<rest>                        -> backbone.body.<rest>           (same layer names)
#   without norm (v1):
#   backbone.fpn.inner_blocks.<i>.0.<param>     -> backbone.fpn.lateral_convs.<i>.<param>
#   backbone.fpn.layer_blocks.<i>.0.<param>     -> backbone.fpn.output_convs.<i>.<param>
#   with norm (v2: conv, then BatchNorm; detkit's Sequential(conv, norm) has torchvision's indices):
#   backbone.fpn.inner_blocks.<i>.<0|1>.<param> -> backbone.fpn.lateral_convs.<i>.<0|1>.<param>
#   backbone.fpn.layer_blocks.<i>.<0|1>.<param> -> backbone.fpn.output_convs.<i>.<0|1>.<param>

# The detkit backbone config each torchvision detector's backbone equals. ``norm`` and
# ``trainable_stages`` are those of torchvision's COCO-trained weights (v1: FrozenBatchNorm2d; v2:
# trainable nn.BatchNorm2d in the trunk and the FPN; resnet: trainable_backbone_layers=3, which
# freezes conv1 and layer1's weights but, with plain BatchNorm, not their batch statistics;
# mobilenet: torchvision's 3 of 6 stages = detkit's top 2 of 5).
TORCHVISION_BACKBONES: dict[str, BackboneConfig] = {
    "resnet50_fpn": BackboneConfig(
        name="resnet50", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=3
    ),
    "mobilenet_v3_large_fpn": BackboneConfig(
        name="mobilenet_v3_large", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=2
    ),
    "resnet50_fpn_v2": BackboneConfig(
        name="resnet50", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="bn", trainable_stages=3, fpn_norm="bn"
    ),
}

_FPN_RENAMES = (
    # The optional ".0" accepts both layouts: torchvision >= 0.13 wraps each conv in a
    # Conv2dNormActivation; the published COCO weights (older) do not.
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?"), r"backbone.fpn.lateral_convs.\1."),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?"), r"backbone.fpn.output_convs.\1."),
)
_NORMED_FPN_RENAMES = (
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.([01])\."), r"backbone.fpn.lateral_convs.\1.\2."),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.([01])\."), r"backbone.fpn.output_convs.\1.\2."),
)


def convert_torchvision_backbone(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """The ``backbone.*`` entries of a torchvision detector's state dict, renamed for detkit.

    ``arch`` is a key of ``TORCHVISION_BACKBONES``; build the detkit backbone from that config.
    Tensors are shared, not copied. Keys outside ``backbone.`` are left for the other converters.
    """
    if arch not in TORCHVISION_BACKBONES:
        raise ConfigError(
            f"torchvision backbone {arch!r} is not supported; supported: {', '.join(TORCHVISION_BACKBONES)}"
        )
    renames = _NORMED_FPN_RENAMES if TORCHVISION_BACKBONES[arch].fpn_norm != "none" else _FPN_RENAMES
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            converted[_backbone_key(key, renames)] = value
    if not converted:
        raise CheckpointError(f"no 'backbone.' keys in the state dict; is it a torchvision {arch} detector?")
    return converted


def _backbone_key(key: str, renames: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    if key.startswith("backbone.body."):
        return key
    for pattern, replacement in renames:
        new_key, found = pattern.subn(replacement, key)
        if found:
            return new_key
    raise CheckpointError(f"unexpected torchvision backbone key {key!r}: not under backbone.body or backbone.fpn")


# --------------------------------------------------------------------------------------------
# Heads: ``rpn.head.*``, ``roi_heads.box_head.*``, ``roi_heads.mask_head.*``, the predictors
# --------------------------------------------------------------------------------------------
# torchvision nests each conv of a head in a Conv2dNormActivation block: [conv, norm?, ReLU].
# detkit's conv stacks are the same layers, flat (modeling/conv_blocks.py): block i, position j
# -> index i * L + j, L = 3 with a norm, 2 without. Only the conv (j = 0) and the norm (j = 1) hold tensors.
#   rpn.head.conv[.<i>[.0]].<p>                 -> proposal_generator.head.conv.<2i>.<p>   (no norm in any RPN)
#   rpn.head.{cls_logits,bbox_pred}.<p>         -> proposal_generator.head.{cls_logits,bbox_pred}.<p>
#   v1: roi_heads.box_head.{fc6,fc7}.<p>        -> roi_heads.box_head.{fc6,fc7}.<p>
#   v2: roi_heads.box_head.<i>.<j>.<p> (i < 4)  -> roi_heads.box_head.convs.<3i + j>.<p>
#       roi_heads.box_head.5.<p> (after Flatten) -> roi_heads.box_head.fc6.<p>
#   roi_heads.box_predictor.cls_score.<p>       -> rows reordered: torchvision's background (row 0) moves last
#   roi_heads.box_predictor.bbox_pred.<p>       -> background's 4 rows dropped (detkit has K*4 class deltas)
# Mask head (Mask R-CNN): four convs, then torchvision's predictor = deconv + 1x1 logits.
#   roi_heads.mask_head.<i>.<j>.<p> (or .mask_fcn<i+1>.<p>, old) -> roi_heads.mask_branch.head.convs.<i * L + j>.<p>
#   roi_heads.mask_predictor.conv5_mask.<p>     -> roi_heads.mask_branch.head.deconv.<p>
#   roi_heads.mask_predictor.mask_fcn_logits.<p> -> roi_heads.mask_branch.predictor.<p> (background dropped)


@dataclass(frozen=True)
class TorchvisionHeads:
    """How a torchvision detector's heads are built, beyond its backbone."""

    rpn_convs: int  # RPNHead(conv_depth=...)
    box_head_convs: int  # 0: TwoMLPHead (fc6, fc7); 4: FastRCNNConvFCHead([256] * 4, [1024])
    norm: str  # after the box and mask heads' convs (conv_blocks.CONV_NORMS)


TORCHVISION_HEADS: dict[str, TorchvisionHeads] = {
    "resnet50_fpn": TorchvisionHeads(rpn_convs=1, box_head_convs=0, norm="none"),
    "mobilenet_v3_large_fpn": TorchvisionHeads(rpn_convs=1, box_head_convs=0, norm="none"),
    "resnet50_fpn_v2": TorchvisionHeads(rpn_convs=2, box_head_convs=4, norm="bn"),
}

_CONV_PARAM = r"(weight|bias)"
_BLOCK_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RPN_CONV = re.compile(rf"^rpn\.head\.conv\.(?:(\d+)\.)?(?:0\.)?{_CONV_PARAM}$")
_RPN_PREDICTORS = re.compile(r"^rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)$")
_FC_BOX_HEAD = re.compile(rf"^roi_heads\.box_head\.(fc6|fc7)\.{_CONV_PARAM}$")
_BLOCK = r"(\d+)\.(\d+)"  # block i, position j
_CONV_BOX_HEAD = re.compile(rf"^roi_heads\.box_head\.{_BLOCK}\.{_BLOCK_PARAM}$")
_CONV_BOX_HEAD_FC = re.compile(rf"^roi_heads\.box_head\.(\d+)\.{_CONV_PARAM}$")
_MASK_CONV = re.compile(rf"^roi_heads\.mask_head\.(?:{_BLOCK}|mask_fcn(\d+))\.{_BLOCK_PARAM}$")
_MASK_DECONV = re.compile(rf"^roi_heads\.mask_predictor\.conv5_mask\.{_CONV_PARAM}$")


def detect_torchvision_arch(state_dict: dict[str, Tensor]) -> str:
    """``resnet50_fpn``, ``resnet50_fpn_v2`` or ``mobilenet_v3_large_fpn`` from a torchvision detector's keys.

    v2 is told from v1 by its box head: conv blocks (``roi_heads.box_head.0.0.weight``) and no fc6. A
    state with both is neither, and is refused as v1 with a box head key detkit does not map.
    """
    if "backbone.body.layer4.2.conv3.weight" in state_dict:
        conv_box_head = "roi_heads.box_head.0.0.weight" in state_dict
        fc_box_head = "roi_heads.box_head.fc6.weight" in state_dict
        return "resnet50_fpn_v2" if conv_box_head and not fc_box_head else "resnet50_fpn"
    if "backbone.body.16.0.weight" in state_dict:
        return "mobilenet_v3_large_fpn"
    raise CheckpointError(f"unrecognised torchvision detector: detkit imports {_IMPORTABLE}")


def torchvision_model_config(
    arch: str, num_classes: int, low_resolution: bool = False, masks: bool = False
) -> ModelConfig:
    """The detkit config that computes what torchvision's ``fasterrcnn_<arch>`` (``maskrcnn_<arch>`` with
    ``masks``) computes.

    ``num_classes`` counts foreground classes (torchvision's ``num_classes`` minus its background).
    ``low_resolution`` is torchvision's ``*_320_fpn`` variant (320 px images, 150 proposals) of the
    MobileNet detector; other architectures have none and ignore it.
    """
    _check_arch(arch)
    if masks and arch == "mobilenet_v3_large_fpn":
        raise ConfigError(
            f"torchvision has no Mask R-CNN with a {arch} backbone; detkit imports maskrcnn_resnet50_fpn "
            "and maskrcnn_resnet50_fpn_v2"
        )
    heads = TORCHVISION_HEADS[arch]
    # MultiScaleRoIAlign 7x7 and 14x14, sampling 2, unaligned; the thresholds: detkit's defaults are torchvision's.
    cfg = ModelConfig(
        pipeline="mask_rcnn" if masks else "faster_rcnn",
        num_classes=num_classes,
        backbone=TORCHVISION_BACKBONES[arch],
        rpn=RPNConfig(head_convs=heads.rpn_convs),
        roi_heads=RoIHeadsConfig(box_head_convs=heads.box_head_convs, box_head_norm=heads.norm),
        mask=MaskHeadConfig(norm=heads.norm) if masks else MaskHeadConfig(),
    )
    return _mobilenet_settings(cfg, low_resolution) if arch == "mobilenet_v3_large_fpn" else cfg


def _mobilenet_settings(cfg: ModelConfig, low_resolution: bool) -> ModelConfig:
    """torchvision's MobileNetV3 detectors: three anchor sizes per level, RPN score threshold 0.05, and
    in the 320 variant 320 px images with 150 proposals."""
    rpn = replace(cfg.rpn, score_thresh=0.05)
    if low_resolution:
        rpn = replace(rpn, pre_nms_topk_test=150, post_nms_topk_test=150)
    return replace(
        cfg,
        transform=TransformConfig(min_size=(320,), max_size=640) if low_resolution else TransformConfig(),
        anchors=AnchorConfig(sizes=((32, 64, 128, 256, 512),) * 3, aspect_ratios=((0.5, 1.0, 2.0),) * 3),
        rpn=rpn,
    )


def _check_arch(arch: str) -> None:
    if arch not in TORCHVISION_HEADS:
        supported = ", ".join(TORCHVISION_HEADS)
        raise ConfigError(f"torchvision architecture {arch!r} is not supported; supported: {supported}")


def convert_torchvision_detector(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """A whole torchvision Faster or Mask R-CNN state dict -> detkit ``TwoStageDetector`` state dict.

    A key that no rename maps for ``arch`` is a ``CheckpointError`` (``check_all_keys_mapped``).
    """
    check_all_keys_mapped(state_dict, arch)
    heads, masks = TORCHVISION_HEADS[arch], has_masks(state_dict)
    converted = convert_torchvision_backbone(state_dict, arch)
    for key, value in state_dict.items():
        new_key = _head_key(key, heads, masks)
        if new_key is not None:
            converted[new_key] = value
    for suffix in ("weight", "bias"):
        cls_score = _predictor(state_dict, f"roi_heads.box_predictor.cls_score.{suffix}")
        converted[f"roi_heads.box_predictor.cls_score.{suffix}"] = torch.cat([cls_score[1:], cls_score[:1]])
        bbox_pred = _predictor(state_dict, f"roi_heads.box_predictor.bbox_pred.{suffix}")
        converted[f"roi_heads.box_predictor.bbox_pred.{suffix}"] = bbox_pred[4:]
        if masks:
            # torchvision predicts a mask for its background class too (channel 0); detkit has none.
            logits = _predictor(state_dict, f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}")
            converted[f"roi_heads.mask_branch.predictor.{suffix}"] = logits[1:]
    return converted


def _head_key(key: str, heads: TorchvisionHeads, masks: bool) -> str | None:
    """The detkit name of a torchvision RPN, box head or mask head key (not the predictors'); None if unmapped."""
    if key.startswith("rpn."):
        return _rpn_key(key, heads)
    if key.startswith("roi_heads.box_head."):
        return _conv_box_head_key(key, heads) if heads.box_head_convs else _fc_box_head_key(key)
    if masks and key.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor.conv5_mask.")):
        return _mask_head_key(key, heads)
    return None


def _rpn_key(key: str, heads: TorchvisionHeads) -> str | None:
    conv = _RPN_CONV.match(key)
    if conv:
        block = int(conv.group(1) or 0)
        # RPN convs have no norm: block i is [conv, ReLU].
        return f"proposal_generator.head.conv.{2 * block}.{conv.group(2)}" if block < heads.rpn_convs else None
    return f"proposal_generator.head.{key.removeprefix('rpn.head.')}" if _RPN_PREDICTORS.match(key) else None


def _fc_box_head_key(key: str) -> str | None:
    return key if _FC_BOX_HEAD.match(key) else None


def _conv_box_head_key(key: str, heads: TorchvisionHeads) -> str | None:
    """FastRCNNConvFCHead is one Sequential: conv blocks 0..n-1, Flatten (n), then Linear (n + 1), ReLU."""
    block = _CONV_BOX_HEAD.match(key)
    if block:
        index = _flat_index(int(block.group(1)), int(block.group(2)), block.group(3), heads.norm)
        valid = int(block.group(1)) < heads.box_head_convs and index is not None
        return f"roi_heads.box_head.convs.{index}.{block.group(3)}" if valid else None
    fc = _CONV_BOX_HEAD_FC.match(key)
    if fc and int(fc.group(1)) == heads.box_head_convs + 1:
        return f"roi_heads.box_head.fc6.{fc.group(2)}"
    return None


def _mask_head_key(key: str, heads: TorchvisionHeads) -> str | None:
    deconv = _MASK_DECONV.match(key)
    if deconv:
        return f"roi_heads.mask_branch.head.deconv.{deconv.group(1)}"
    conv = _MASK_CONV.match(key)
    if not conv:
        return None
    param = conv.group(4)
    if conv.group(3) is not None:  # mask_fcn<k>: the layout before Conv2dNormActivation, a bare conv
        block, position = int(conv.group(3)) - 1, 0
    else:
        block, position = int(conv.group(1)), int(conv.group(2))
    index = _flat_index(block, position, param, heads.norm)
    return None if index is None else f"roi_heads.mask_branch.head.convs.{index}.{param}"


def _flat_index(block: int, position: int, param: str, norm: str) -> int | None:
    """torchvision's ``<block>.<position>.<param>`` in a Conv2dNormActivation stack -> detkit's flat index;
    None for a position or parameter that stack does not have."""
    if position == 0 and param in ("weight", "bias"):  # the conv
        return block * (2 if norm == "none" else 3)
    if position == 1 and norm != "none":  # the norm
        return block * 3 + 1
    return None


_PREDICTOR_KEYS = frozenset(
    f"roi_heads.{layer}.{suffix}"
    for layer in ("box_predictor.cls_score", "box_predictor.bbox_pred", "mask_predictor.mask_fcn_logits")
    for suffix in ("weight", "bias")
)

# What an unmapped key belongs to, by prefix (first match), and why detkit cannot take it.
_UNMAPPED_PARTS = (
    ("roi_heads.keypoint_", "a Keypoint R-CNN's keypoint branch", "detkit has no keypoint pipeline"),
    (
        "roi_heads.box_head.",
        "the box head",
        "detkit imports torchvision's two-FC box head (fc6, fc7) and the v2 head of four convs with BatchNorm "
        "and one FC, each whole",
    ),
    ("roi_heads.mask_", "the mask branch", "detkit imports the mask heads of maskrcnn_resnet50_fpn and its v2 only"),
    ("rpn.", "the RPN", "detkit imports torchvision's one-conv (v1) and two-conv (v2) RPN heads only"),
    ("", "a part of the model detkit does not have", "detkit imports Faster and Mask R-CNN state dicts only"),
)


def check_all_keys_mapped(state_dict: dict[str, Tensor], arch: str) -> None:
    """Refuse a state dict with keys the converters do not map for ``arch``: importing the rest would give a
    model without that part (a Keypoint R-CNN loaded as a 2-class box detector, its keypoint head gone)."""
    _check_arch(arch)
    heads, masks = TORCHVISION_HEADS[arch], has_masks(state_dict)
    unmapped = [key for key in state_dict if not _is_mapped(key, heads, masks)]
    if not unmapped:
        return
    key = unmapped[0]
    part, why = next((part, why) for prefix, part, why in _UNMAPPED_PARTS if key.startswith(prefix))
    raise CheckpointError(
        f"torchvision key {quoted_name(key)} belongs to {part}, which detkit cannot import ({len(unmapped)} such "
        f"key{'s' * (len(unmapped) > 1)}): {why}; pass the state dict of one of {_IMPORTABLE}"
    )


def _is_mapped(key: str, heads: TorchvisionHeads, masks: bool) -> bool:
    if key.startswith("backbone.") or key in _PREDICTOR_KEYS:
        return True  # every backbone.* key is converted or refused by _backbone_key
    return _head_key(key, heads, masks) is not None


def _predictor(state_dict: dict[str, Tensor], key: str) -> Tensor:
    """A predictor tensor whose rows are per class (the converters slice off torchvision's background)."""
    if key not in state_dict:
        raise CheckpointError(f"no {key!r} in the state dict; the file is damaged or not a whole torchvision detector")
    tensor = state_dict[key]
    if tensor.ndim == 0:
        raise CheckpointError(f"{key} is a single number, not one row per class; the file is damaged, re-download it")
    return tensor


def has_masks(state_dict: dict[str, Tensor]) -> bool:
    """Whether a torchvision detector's state dict is a Mask R-CNN's."""
    return "roi_heads.mask_predictor.mask_fcn_logits.weight" in state_dict


def torchvision_num_classes(state_dict: dict[str, Tensor]) -> int:
    """Foreground classes: the rows of the class logits' weight, less torchvision's background row."""
    weight = state_dict["roi_heads.box_predictor.cls_score.weight"]
    if weight.ndim != 2 or weight.shape[0] < 2:
        raise CheckpointError(
            f"roi_heads.box_predictor.cls_score.weight has shape {list(weight.shape)}, not [classes + 1, features] "
            "with at least one class; the file is damaged, re-download it"
        )
    return int(weight.shape[0]) - 1


def coco_class_names() -> list[str]:
    # Reading an enum's metadata is offline; only .get_state_dict() would download.
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:])
