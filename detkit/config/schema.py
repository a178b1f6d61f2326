"""Frozen dataclasses, one per component, under one ``ExperimentConfig``.

Every field has a type the ``--set a.b=c`` parser checks against, the values it accepts beside it
(``Annotated`` constraints: see ``constraints.py``), and a default that is what the corresponding
paper or torchvision uses unless a comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from detkit.config.constraints import (
    Ascending,
    Below,
    Choice,
    Decay,
    Flag,
    MultipleOf,
    NonEmpty,
    NonNegative,
    NonNegativeInt,
    PathComponent,
    Pattern,
    Positive,
    PositiveInt,
    Probability,
    Range,
)

# The names the code dispatches on (tests/config/test_constraints.py holds them equal to its dicts).
# Pipeline names are not among them: the pipeline table (detkit.pipelines.PIPELINES) is above the
# config and refuses an unknown name where one is used.
# modeling/backbones/trunks.py
BACKBONE_NAMES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "vgg16", "csp_n", "csp_s", "csp_m")
NORM_LAYERS = ("bn", "frozen_bn")
CONV_NORMS = ("none", "bn")  # modeling/conv_blocks.py: after the convs of the FPN and the box and mask heads
POOLERS = ("roi_align", "roi_pool")
PROPOSAL_MODES = ("fast", "quality")
BOX_LOSSES = ("giou", "ciou")
YOLO_NECKS = ("csp_pan", "c2f_pan")  # pipelines/yolo.py
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
AMP_DTYPES = ("bf16", "fp16")
BACKENDS = ("auto", "nccl", "gloo")  # engine/distributed.py
# What engine/device.py's resolve_device takes: torch's "cuda:N" (no sign, no leading zero, N < 128:
# torch keeps the index in 8 bits and wraps 128 to -128).
DEVICE = Pattern(r"auto|cpu|cuda(:([0-9]|[1-9][0-9]|1[01][0-9]|12[0-7]))?", "a device", "auto, cpu, cuda or cuda:N")

Stage = Annotated[int, Range(1, 5)]  # trunk stage: 1 = stride 2 ... 5 = stride 32
# Layer counts of the heads: the published models stack at most 4; the bound stops a damaged checkpoint
# or a typo (head_convs=10000) from building layers for minutes before anything can fail.
MAX_HEAD_LAYERS = 16
HeadLayers = Annotated[int, Range(1, MAX_HEAD_LAYERS)]
OptionalHeadLayers = Annotated[int, Range(0, MAX_HEAD_LAYERS)]
# YOLO letterbox sides: the head's coarsest stride must divide them (pipelines/yolo.py).
YOLOSide = Annotated[int, Range(32), MultipleOf(32, "the coarsest YOLO stride")]


@dataclass(frozen=True)
class BackboneConfig:
    name: Annotated[str, Choice(*BACKBONE_NAMES)] = "resnet50"
    pretrained: bool = False  # load ImageNet weights from weights_path or torchvision's cache
    weights_path: str = ""  # a local ImageNet checkpoint of the trunk; "" searches the usual places
    fpn: bool = True
    fpn_channels: PositiveInt = 256
    # Trunk stages (1 = stride 2 ... 5 = stride 32) whose outputs are returned; () picks the
    # architecture's default: stages 2-5 with an FPN, the stride-16 stage without one.
    returned_stages: tuple[Stage, ...] = ()
    fpn_extra_pool: bool = True  # the stride-2 max-pool level on top of the FPN (torchvision's "pool")
    # A norm after each FPN conv (lateral and output): "bn" in torchvision's *_v2 detectors; "none" = the FPN paper.
    fpn_norm: Annotated[str, Choice(*CONV_NORMS)] = "none"
    # "bn" trains BatchNorm; "frozen_bn" freezes its statistics and affine (fine-tuning)
    norm: Annotated[str, Choice(*NORM_LAYERS)] = "bn"
    trainable_stages: Annotated[int, Range(0, 5)] = 5  # trunk stages, counted from the top, whose weights train


@dataclass(frozen=True)
class TransformConfig:
    # Shorter side is resized to min_size (a random choice of it while training: multi-scale
    # augmentation), unless the longer side would then exceed max_size.
    min_size: Annotated[tuple[PositiveInt, ...], NonEmpty()] = (800,)
    max_size: PositiveInt = 1333
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[Positive, Positive, Positive] = (0.229, 0.224, 0.225)
    size_divisible: PositiveInt = 32


@dataclass(frozen=True)
class AnchorConfig:
    # One tuple of sizes (pixels, sqrt of area) and aspect ratios (height / width) per feature level.
    sizes: Annotated[tuple[Annotated[tuple[PositiveInt, ...], NonEmpty()], ...], NonEmpty()] = (
        (32,),
        (64,),
        (128,),
        (256,),
        (512,),
    )
    aspect_ratios: Annotated[tuple[Annotated[tuple[Positive, ...], NonEmpty()], ...], NonEmpty()] = (
        (0.5, 1.0, 2.0),
    ) * 5


@dataclass(frozen=True)
class RPNConfig:
    fg_iou_thresh: Probability = 0.7
    bg_iou_thresh: Probability = 0.3
    batch_size_per_image: PositiveInt = 256
    positive_fraction: Probability = 0.5
    pre_nms_topk_train: PositiveInt = 2000  # per feature level
    pre_nms_topk_test: PositiveInt = 1000
    post_nms_topk_train: PositiveInt = 2000  # per image
    post_nms_topk_test: PositiveInt = 1000
    nms_thresh: Probability = 0.7
    score_thresh: Probability = 0.0  # on sigmoid(objectness)
    min_size: NonNegative = 1e-3
    # 3x3 convs (ReLU) shared by every level before the 1x1 predictors: 1 in the paper, 2 in torchvision's *_v2.
    head_convs: HeadLayers = 1


@dataclass(frozen=True)
class ProposalConfig:
    """Selective search (Uijlings et al., IJCV 2013) as OpenCV contrib's ximgproc implements it."""

    # fast | quality: the paper's two diversification strategies (section 5.2)
    mode: Annotated[str, Choice(*PROPOSAL_MODES)] = "fast"
    # Images whose longer side exceeds this are shrunk before segmenting: time grows faster than
    # the pixel count, and 500 px is the scale selective search was designed and tuned at.
    # Under 32 px there is nothing left to segment (proposals/selective_search.py refuses it).
    max_image_size: Annotated[int, Range(32)] = 500
    min_box_size: NonNegative = 4.0  # proposals narrower or shorter than this (original-image pixels) are dropped
    topk: PositiveInt = 2000  # proposals kept per image, in selective search's own rank order
    cache_dir: str = ""  # "" = $DETKIT_CACHE_DIR, else $XDG_CACHE_HOME/detkit/proposals, else ~/.cache/detkit/proposals
    cache: bool = True  # false: run selective search on every call, read and write nothing (what benchmarks time)


@dataclass(frozen=True)
class RoIHeadsConfig:
    pooler: Annotated[str, Choice(*POOLERS)] = "roi_align"
    pooler_resolution: PositiveInt = 7
    sampling_ratio: NonNegativeInt = 2  # RoIAlign samples per bin side; 0 = adaptive, ceil(RoI size / resolution)
    aligned: bool = False  # torchvision's Faster R-CNN uses the unaligned (half-pixel-shifted) RoIAlign
    # FPN level rule (FPN eq. 1): an RoI of sqrt(area) = canonical_scale pixels pools from level 4.
    # 224 (ImageNet's size) suits ~800 px images; scale it with the image size for small images.
    canonical_scale: PositiveInt = 224
    representation_size: PositiveInt = 1024  # width of the box head's FC layers
    # 0: Fast R-CNN's head of two FC layers (fc6, fc7). N > 0: N 3x3 convs of box_head_conv_channels on the
    # pooled map, then one FC layer (torchvision's *_v2 head: 4 convs with BatchNorm; modeling/conv_box_head.py).
    box_head_convs: OptionalHeadLayers = 0
    box_head_conv_channels: PositiveInt = 256
    box_head_norm: Annotated[str, Choice(*CONV_NORMS)] = "none"  # after each box head conv; needs box_head_convs > 0
    fg_iou_thresh: Probability = 0.5
    bg_iou_thresh_hi: Probability = 0.5
    bg_iou_thresh_lo: Probability = 0.0
    batch_size_per_image: PositiveInt = 512
    positive_fraction: Probability = 0.25
    box_coder_weights: tuple[Positive, Positive, Positive, Positive] = (10.0, 10.0, 5.0, 5.0)  # deltas divide by them
    score_thresh: Probability = 0.05
    nms_thresh: Probability = 0.5
    detections_per_image: PositiveInt = 100
    # Fast R-CNN section 3.1: at inference each FC layer W (u x v) becomes two, Sigma_t V^T then U_t,
    # keeping the top svd_rank singular values. 0 keeps the layers whole.
    svd_rank: NonNegativeInt = 0


@dataclass(frozen=True)
class MaskHeadConfig:
    """Mask R-CNN's mask branch (He et al. 2017, figure 4): pooled at pooler_resolution, masks at twice that."""

    pooler_resolution: PositiveInt = 14  # RoIAlign (or RoIPool: model.roi_heads.pooler decides both) output for masks
    conv_channels: PositiveInt = 256
    num_convs: HeadLayers = 4  # the first conv maps the features' channels to conv_channels for the deconv
    norm: Annotated[str, Choice(*CONV_NORMS)] = "none"  # after each conv; "bn" in torchvision's maskrcnn_*_v2
    mask_thresh: Probability = 0.5  # pasted probabilities above this are the instance (results json, drawing)


@dataclass(frozen=True)
class RCNNConfig:
    """R-CNN (Girshick et al., CVPR 2014): warped regions -> CNN features -> per-class SVMs and ridge regressors."""

    crop_size: PositiveInt = 227  # every region is warped to crop_size x crop_size (the paper's AlexNet input)
    # Pixels of image context around the box at the warped size (appendix A, p = 16); the box keeps
    # crop_size - 2 x context_padding of them.
    context_padding: Annotated[int, Range(0), Below("crop_size", times=2)] = 16
    # Warped regions per CNN forward pass; 0 = by device: 8 on a CPU, where big batches
    # spill the cache (MobileNetV2 at 227 px on 2 cores: 14-17 ms per region at 4-8, 27 ms at 64), 128 on a GPU.
    feature_batch_size: NonNegativeInt = 0
    # Fine-tuning (section 2.3): K+1-way softmax; IoU >= finetune_fg_iou is the class, else background.
    finetune_iters: NonNegativeInt = 0  # 0 skips fine-tuning: features come from the CNN as built (ImageNet or random)
    finetune_lr: Positive = 0.001
    finetune_fg_per_batch: PositiveInt = 32
    finetune_bg_per_batch: PositiveInt = 96
    finetune_fg_iou: Probability = 0.5
    # SVMs (section 2.3): ground truths positive, proposals under svm_neg_iou with every box of the class negative.
    svm_neg_iou: Probability = 0.3
    svm_l2: NonNegative = 1e-4  # lambda of 0.5 * lambda * |w|^2 next to the mean hinge loss
    svm_pos_weight: Positive = 2.0  # positives are few; the paper's code weights their loss x2
    svm_hard_negative_rounds: PositiveInt = 3  # SVM fits per class; each after the first adds the hard negatives
    svm_initial_negatives: NonNegativeInt = 2000  # per class, drawn at random before the first round
    svm_steps: PositiveInt = 300  # full-batch optimizer steps per round
    feature_norm: Positive = 20.0  # features are scaled to this mean L2 norm before the SVMs (the paper's choice)
    # Box regression (appendix C): ridge on proposals with IoU > bbox_reg_iou to a box of their class.
    bbox_reg_iou: Probability = 0.6
    ridge_lambda: Positive = 1000.0  # > 0 keeps X^T X + lambda I invertible whatever the pairs
    box_regression: bool = True  # false scores the proposals' own boxes (the paper's ablation)
    nms_thresh: Probability = 0.3
    score_thresh: Probability = 0.05  # on sigmoid(SVM margin)
    detections_per_image: PositiveInt = 100


@dataclass(frozen=True)
class YOLOConfig:
    """The single-shot dense detector (YOLO family; YOLOX's decoupled anchor-free head and SimOTA,
    Ge et al. 2021): trunk stages 3-5 -> PAN neck -> one head per stride 8/16/32."""

    image_size: YOLOSide = 640  # letterbox side: the longer image side at test time
    train_sizes: tuple[YOLOSide, ...] = ()  # multi-scale training: each batch picks one side; () = image_size
    letterbox: bool = True  # keep the aspect ratio and pad; false stretches every image to a square
    # Channels are these times width_multiple; CSP blocks hold round(3 * depth_multiple) bottlenecks.
    # YOLOX-s is width 0.5 / depth 0.33, YOLOX-m 0.75 / 0.67, YOLOX-l 1.0 / 1.0.
    width_multiple: Positive = 0.5
    depth_multiple: Positive = 0.33
    # "csp_pan": YOLOX's PAN of C3 blocks with 1x1 reductions; "c2f_pan": YOLOv8's PAN of C2f blocks.
    neck: Annotated[str, Choice(*YOLO_NECKS)] = "csp_pan"
    # PAN outputs at strides 8, 16, 32 (YOLOv8-m caps the last at 768: (256, 512, 768) with width 0.75).
    neck_channels: tuple[PositiveInt, PositiveInt, PositiveInt] = (256, 512, 1024)
    head_channels: PositiveInt = 256
    head_convs: OptionalHeadLayers = 2  # 3x3 convs in each of the classification and regression branches
    # SimOTA (YOLOX section 2.3): candidates are points inside a box or within center_radius strides
    # of its centre; each box takes its dynamic_k cheapest, dynamic_k = sum of its candidate_topk best IoUs.
    center_radius: NonNegative = 2.5
    candidate_topk: PositiveInt = 10
    iou_cost_weight: NonNegative = 3.0
    box_loss: Annotated[str, Choice(*BOX_LOSSES)] = "giou"  # its weight is solver.loss_weights.loss_box
    score_thresh: Probability = 0.001  # on sigmoid(objectness) * sigmoid(class)
    nms_thresh: Probability = 0.65
    pre_nms_topk: PositiveInt = 1000  # (point, class) candidates per image before NMS
    detections_per_image: PositiveInt = 300


@dataclass(frozen=True)
class ModelConfig:
    pipeline: str = "faster_rcnn"  # a name of detkit.pipelines.PIPELINES
    num_classes: NonNegativeInt = 0  # K foreground classes; 0 takes it from the training data
    # A checkpoint a fresh run starts from (``detkit train --weights``): tensors of matching name and
    # shape are copied, the rest (another class count's heads) start fresh. Not read when resuming.
    init_weights: str = ""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)  # selective search, for rcnn and fast_rcnn
    rcnn: RCNNConfig = field(default_factory=RCNNConfig)
    mask: MaskHeadConfig = field(default_factory=MaskHeadConfig)  # mask_rcnn only
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    yolo: YOLOConfig = field(default_factory=YOLOConfig)  # yolo only


@dataclass(frozen=True)
class DataConfig:
    train_annotations: str = ""
    train_images: str = ""
    val_annotations: str = ""
    val_images: str = ""
    # Images per step per process: the global batch is batch_size x processes.
    batch_size: Annotated[int, Range(1), Flag("--batch-size")] = 2
    # Loader processes per training process; 0 reads images in the training process.
    num_workers: Annotated[int, Range(0), Flag("--workers")] = 0
    pin_memory: bool = True  # page-locked batches for faster host-to-GPU copies (CUDA only)
    # Batches hold images of one orientation (landscape or portrait), so padding them to a common
    # size wastes little (torchvision's detection references do the same).
    group_by_aspect: bool = True
    hflip_prob: Probability = 0.5
    # Colour jitter: brightness, contrast and saturation factors drawn from [1 - a, 1 + a]; 0 disables,
    # 1 would allow a factor of 0 (a black, grey or colourless image).
    color_jitter: Annotated[float, Range(0.0, lt=1.0)] = 0.0
    # Mosaic (YOLOv4 section 3.3): four training images tiled around a random centre, each rescaled
    # by a factor in mosaic_scale; switched off for the last mosaic_off_epochs epochs so the model ends
    # on images like the ones it will see (YOLOX section 2.3, "no aug" epochs).
    mosaic_prob: Probability = 0.0
    mosaic_scale: Annotated[tuple[Positive, Positive], Ascending()] = (0.5, 1.5)
    mosaic_off_epochs: NonNegativeInt = 0


@dataclass(frozen=True)
class LossWeights:
    """How much each loss a detector returns counts in the sum the engine differentiates (by name).

    Detectors return raw losses (each stage's mean over its samples); a loss not named here counts 1.
    The defaults are the papers' (Faster and Mask R-CNN weigh their terms equally); the YOLO presets
    set ``loss_box`` to 5, YOLOX's weight of its IoU loss.
    """

    loss_rpn_cls: NonNegative = 1.0
    loss_rpn_box: NonNegative = 1.0
    loss_cls: NonNegative = 1.0
    loss_box: NonNegative = 1.0
    loss_mask: NonNegative = 1.0
    loss_obj: NonNegative = 1.0


@dataclass(frozen=True)
class SolverConfig:
    optimizer: Annotated[str, Choice(*OPTIMIZERS)] = "sgd"
    lr: Positive = 0.02
    # The pretrained trunk (backbone.body) learns at lr x this; the layers built fresh on it at lr. A
    # trunk's ImageNet features need small steps, the fresh heads large ones (DETR trains its trunk at 0.1x).
    trunk_lr_factor: Annotated[float, Range(gt=0.0, le=1.0)] = 1.0
    momentum: Decay = 0.9
    weight_decay: NonNegative = 1e-4
    epochs: Annotated[int, Range(1), Flag("--epochs")] = 12
    schedule: Annotated[str, Choice(*SCHEDULES)] = "cosine"
    step_epochs: tuple[PositiveInt, ...] = (8, 11)  # epochs after which a step schedule multiplies lr by gamma
    gamma: Annotated[float, Range(gt=0.0, le=1.0)] = 0.1  # a decay: 0 would stop training, > 1 grow the lr
    warmup_iters: NonNegativeInt = 200
    warmup_factor: Annotated[float, Range(gt=0.0, le=1.0)] = 0.001  # lr multiplier at the first iteration
    clip_grad_norm: NonNegative = 10.0  # 0 disables clipping
    amp: bool = False  # mixed precision: autocast to amp_dtype
    # fp16 adds a gradient scaler (its range underflows), bf16 needs none
    amp_dtype: Annotated[str, Choice(*AMP_DTYPES), Flag("--amp-dtype")] = "bf16"
    channels_last: bool = False  # NHWC weights and activations: cuDNN's tensor-core and oneDNN's fastest convolutions
    # Batches whose gradients are summed before one optimizer step.
    accumulate_steps: Annotated[int, Range(1), Flag("--accumulate")] = 1
    max_nonfinite_steps: PositiveInt = 5  # consecutive NaN/inf losses before training stops
    # Exponential moving average of the weights, evaluated and saved instead of the raw weights;
    # the decay ramps up as ema_decay * (1 - exp(-step / ema_ramp_steps)). 0 disables.
    ema_decay: Decay = 0.0
    ema_ramp_steps: PositiveInt = 2000
    loss_weights: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True)
class EvalConfig:
    every_epochs: PositiveInt = 1
    score_thresh: Probability = 0.05


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run executes: processes, determinism, checkpoint and log cadence; none of it changes the model."""

    # Data-parallel processes on this machine (GPUs, or CPU processes sharing the cores).
    devices: Annotated[int, Range(1), Flag("--devices")] = 1
    # torch.distributed backend: auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    backend: Annotated[str, Choice(*BACKENDS)] = "auto"
    sync_bn: bool = False  # BatchNorm statistics over the global batch (CUDA only: torch has no CPU kernel)
    deterministic: bool = False  # deterministic kernels: a resumed run ends with the weights of an uninterrupted one
    # Also write last.pt every this many optimizer steps; 0 = at epoch ends only.
    checkpoint_every_steps: Annotated[int, Range(0), Flag("--checkpoint-every")] = 0
    log_every_steps: PositiveInt = 10  # optimizer steps between metrics-log records (the first step is always logged)


@dataclass(frozen=True)
class ExperimentConfig:
    # The run's folder under output_dir: one folder name, so that it stays under output_dir.
    name: Annotated[str, PathComponent(), Flag("--name")] = "faster_rcnn"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output_dir: str = "runs"
    seed: Annotated[int, Range(0, lt=2**63), Flag("--seed")] = 0  # every seeded generator takes it as it is
    device: Annotated[str, DEVICE, Flag("--device")] = "auto"  # auto | cpu | cuda | cuda:N
