"""torchvision detection state dicts -> detkit state dicts.

detkit's modules keep torchvision's layer names where they can, so importing a torchvision
detector is a few prefix renames per component. Each function takes the full
``model.state_dict()`` of a torchvision detector, picks its component's keys and returns them
under the names of the detkit detector (whose attributes are ``backbone``, ...).

Nothing is dropped silently: a key no converter maps (a Keypoint R-CNN's keypoint head, the
convolutional box head of ``fasterrcnn_resnet50_fpn_v2``) is refused, naming the key and the part
of the model it belongs to, rather than imported as a detector that lacks that part.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch
from torch import Tensor

from detkit.config.schema import AnchorConfig, BackboneConfig, ModelConfig, RPNConfig, TransformConfig
from detkit.errors import CheckpointError, ConfigError
from detkit.modeling.state_checks import quoted_name

# --------------------------------------------------------------------------------------------
# Backbone: ``backbone.body.*`` (trunk) and ``backbone.fpn.*`` (FeaturePyramidNetwork)
# --------------------------------------------------------------------------------------------
#   backbone.body.<rest>                        -> backbone.body.<rest>           (same layer names)
#   backbone.fpn.inner_blocks.<i>.0.<param>     -> backbone.fpn.lateral_convs.<i>.<param>
#   backbone.fpn.layer_blocks.<i>.0.<param>     -> backbone.fpn.output_convs.<i>.<param>

# The detkit backbone config each torchvision detector's backbone equals. ``norm`` and
# ``trainable_stages`` are those of torchvision's COCO-trained weights (FrozenBatchNorm2d; resnet:
# trainable_backbone_layers=3; mobilenet: torchvision's 3 of 6 stages = detkit's top 2 of 5).
TORCHVISION_BACKBONES: dict[str, BackboneConfig] = {
    "resnet50_fpn": BackboneConfig(
        name="resnet50", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=3
    ),
    "mobilenet_v3_large_fpn": BackboneConfig(
        name="mobilenet_v3_large", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=2
    ),
}

_FPN_RENAMES = (
    # The optional ".0" accepts both layouts: torchvision >= 0.13 wraps each conv in a
    # Conv2dNormActivation; the published COCO weights (older) do not.
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?"), r"backbone.fpn.lateral_convs.\1."),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?"), r"backbone.fpn.output_convs.\1."),
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
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            converted[_backbone_key(key)] = value
    if not converted:
        raise CheckpointError(f"no 'backbone.' keys in the state dict; is it a torchvision {arch} detector?")
    return converted


def _backbone_key(key: str) -> str:
    if key.startswith("backbone.body."):
        return key
    for pattern, replacement in _FPN_RENAMES:
        new_key, found = pattern.subn(replacement, key)
        if found:
            return new_key
    raise CheckpointError(f"unexpected torchvision backbone key {key!r}: not under backbone.body or backbone.fpn")


# --------------------------------------------------------------------------------------------
# RPN and box head: ``rpn.head.*``, ``roi_heads.box_head.*``, ``roi_heads.box_predictor.*``
# --------------------------------------------------------------------------------------------
#   rpn.head.conv[.0].0.<p>                    -> proposal_generator.head.conv.0.<p>
#   rpn.head.{cls_logits,bbox_pred}.<p>        -> proposal_generator.head.{cls_logits,bbox_pred}.<p>
#   roi_heads.box_head.{fc6,fc7}.<p>           -> roi_heads.box_head.{fc6,fc7}.<p>
#   roi_heads.box_predictor.cls_score.<p>      -> rows reordered: torchvision's background (row 0) moves last
#   roi_heads.box_predictor.bbox_pred.<p>      -> background's 4 rows dropped (detkit has K*4 class deltas)

_HEAD_RENAMES = (
    (re.compile(r"^rpn\.head\.conv\.(?:0\.)?(?:0\.)?(weight|bias)$"), r"proposal_generator.head.conv.0.\1"),
    (re.compile(r"^rpn\.head\.(cls_logits|bbox_pred)\."), r"proposal_generator.head.\1."),
    (re.compile(r"^roi_heads\.box_head\.(fc6|fc7)\."), r"roi_heads.box_head.\1."),
    (re.compile(r"^roi_heads\.mask_predictor\.conv5_mask\."), r"roi_heads.mask_branch.head.deconv."),
)

# Mask head (Mask R-CNN): four convs, then torchvision's predictor = deconv + 1x1 logits.
#   roi_heads.mask_head.<i>.0.<p> (or .mask_fcn<i+1>.<p>, old) -> roi_heads.mask_branch.head.convs.<2i>.<p>
#   roi_heads.mask_predictor.conv5_mask.<p>                     -> roi_heads.mask_branch.head.deconv.<p>
#   roi_heads.mask_predictor.mask_fcn_logits.<p>                -> roi_heads.mask_branch.predictor.<p>
#                                                                  (background dropped)
_MASK_CONV = re.compile(r"^roi_heads\.mask_head\.(?:(\d+)\.0|mask_fcn(\d+))\.(weight|bias)$")


def detect_torchvision_arch(state_dict: dict[str, Tensor]) -> str:
    """``resnet50_fpn`` or ``mobilenet_v3_large_fpn`` from a torchvision detector's keys."""
    if "backbone.body.layer4.2.conv3.weight" in state_dict:
        return "resnet50_fpn"
    if "backbone.body.16.0.weight" in state_dict:
        return "mobilenet_v3_large_fpn"
    raise CheckpointError(
        "unrecognised torchvision detector: detkit imports fasterrcnn_resnet50_fpn and "
        "fasterrcnn_mobilenet_v3_large_fpn"
    )


def torchvision_model_config(
    arch: str, num_classes: int, low_resolution: bool = False, masks: bool = False
) -> ModelConfig:
    """The detkit config that computes what torchvision's ``fasterrcnn_<arch>`` (``maskrcnn_<arch>`` with
    ``masks``) computes.

    ``num_classes`` counts foreground classes (torchvision's ``num_classes`` minus its background).
    ``low_resolution`` is torchvision's ``*_320_fpn`` variant (320 px images, 150 proposals).
    """
    base = ModelConfig(pipeline="faster_rcnn", num_classes=num_classes, backbone=TORCHVISION_BACKBONES[arch])
    if masks:
        if arch != "resnet50_fpn":
            raise ConfigError(
                f"torchvision has no Mask R-CNN with a {arch} backbone; detkit imports maskrcnn_resnet50_fpn"
            )
        return replace(base, pipeline="mask_rcnn")  # MultiScaleRoIAlign 14x14, sampling 2, unaligned: the defaults
    if arch == "resnet50_fpn":
        return base
    rpn = RPNConfig(score_thresh=0.05)
    if low_resolution:
        rpn = RPNConfig(score_thresh=0.05, pre_nms_topk_test=150, post_nms_topk_test=150)
    return ModelConfig(
        pipeline="faster_rcnn",
        num_classes=num_classes,
        backbone=TORCHVISION_BACKBONES[arch],
        transform=TransformConfig(min_size=(320,), max_size=640) if low_resolution else TransformConfig(),
        anchors=AnchorConfig(sizes=((32, 64, 128, 256, 512),) * 3, aspect_ratios=((0.5, 1.0, 2.0),) * 3),
        rpn=rpn,
    )


def convert_torchvision_detector(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """A whole torchvision Faster R-CNN state dict -> detkit ``TwoStageDetector`` state dict.

    A key that none of the renames below maps is a ``CheckpointError`` (``check_all_keys_mapped``).
    """
    check_all_keys_mapped(state_dict)
    converted = convert_torchvision_backbone(state_dict, arch)
    for key, value in state_dict.items():
        for pattern, replacement in _HEAD_RENAMES:
            new_key, found = pattern.subn(replacement, key)
            if found:
                converted[new_key] = value
                break
    for suffix in ("weight", "bias"):
        cls_score = _predictor(state_dict, f"roi_heads.box_predictor.cls_score.{suffix}")
        converted[f"roi_heads.box_predictor.cls_score.{suffix}"] = torch.cat([cls_score[1:], cls_score[:1]])
        bbox_pred = _predictor(state_dict, f"roi_heads.box_predictor.bbox_pred.{suffix}")
        converted[f"roi_heads.box_predictor.bbox_pred.{suffix}"] = bbox_pred[4:]
    if has_masks(state_dict):
        converted.update(_convert_mask_head(state_dict))
    return converted


_PREDICTOR_KEYS = frozenset(
    f"roi_heads.{layer}.{suffix}"
    for layer in ("box_predictor.cls_score", "box_predictor.bbox_pred", "mask_predictor.mask_fcn_logits")
    for suffix in ("weight", "bias")
)

# What an unmapped key belongs to, by prefix (first match), and why detkit cannot take it.
_UNMAPPED_PARTS = (
    ("roi_heads.keypoint_", "a Keypoint R-CNN's keypoint branch", "detkit has no keypoint pipeline"),
    ("roi_heads.box_head.", "the box head", "detkit imports torchvision's two-FC box head (fc6, fc7) only"),
    ("roi_heads.mask_", "the mask branch", "detkit imports maskrcnn_resnet50_fpn's mask head only"),
    ("rpn.", "the RPN", "detkit imports torchvision's single-conv RPN head only"),
    ("", "a part of the model detkit does not have", "detkit imports Faster and Mask R-CNN state dicts only"),
)


def check_all_keys_mapped(state_dict: dict[str, Tensor]) -> None:
    """Refuse a state dict with keys the converters do not map: importing the rest would give a model
    without that part (a Keypoint R-CNN loaded as a 2-class box detector, its keypoint head gone)."""
    masks = has_masks(state_dict)
    unmapped = [key for key in state_dict if not _is_mapped(key, masks)]
    if not unmapped:
        return
    key = unmapped[0]
    part, why = next((part, why) for prefix, part, why in _UNMAPPED_PARTS if key.startswith(prefix))
    raise CheckpointError(
        f"torchvision key {quoted_name(key)} belongs to {part}, which detkit cannot import ({len(unmapped)} such "
        f"key{'s' * (len(unmapped) > 1)}): {why}; pass a fasterrcnn_resnet50_fpn, fasterrcnn_mobilenet_v3_large_fpn "
        "or maskrcnn_resnet50_fpn state dict"
    )


def _is_mapped(key: str, masks: bool) -> bool:
    if key.startswith("backbone.") or key in _PREDICTOR_KEYS or (masks and _MASK_CONV.match(key)):
        return True  # every backbone.* key is converted or refused by _backbone_key
    return any(pattern.match(key) for pattern, _ in _HEAD_RENAMES)


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


def _convert_mask_head(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    converted = {}
    for key, value in state_dict.items():
        match = _MASK_CONV.match(key)
        if match:
            index = int(match.group(1)) if match.group(1) is not None else int(match.group(2)) - 1
            converted[f"roi_heads.mask_branch.head.convs.{2 * index}.{match.group(3)}"] = value
    for suffix in ("weight", "bias"):
        # torchvision predicts a mask for its background class too (channel 0); detkit has none.
        logits = _predictor(state_dict, f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}")
        converted[f"roi_heads.mask_branch.predictor.{suffix}"] = logits[1:]
    return converted


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
