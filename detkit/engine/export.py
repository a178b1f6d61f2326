"""``detkit export``: a detector as one ONNX or TorchScript file, verified against the eager model.

weights (a checkpoint, a torchvision .pth, a pretrained name) -> the eager model (``load_detector``)
-> its graph (``export.graphs``) -> the file, written to a temporary name beside ``--out``
-> loaded back in its runtime (onnxruntime on the CPU, ``torch.jit.load``) and run, with the eager
model, on sample images: the run's validation images when its ``config.json`` names them and they
exist (``--check-images`` chooses others), else synthetic scenes; a dynamic file at two sizes
-> detections matched (``export.verify``): beyond the tolerance the file is removed and the command
fails; within it the file is renamed to ``--out``. Nothing half-written ever has the final name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.checkpoint import Checkpoint
from detkit.data.image_files import find_inputs
from detkit.data.images import image_to_tensor, read_image_rgb
from detkit.data.synthetic import render_image
from detkit.engine.events import EventCallback, Notice, ignore_events
from detkit.engine.predict import load_detector
from detkit.engine.runs import CONFIG, latest_checkpoint, run_config
from detkit.errors import ConfigError, DataError, DetkitError, StorageError
from detkit.export.files import DEFAULT_SUFFIX, SUFFIXES, Format, Session, open_exported
from detkit.export.graphs import ExportGraph, build_graph, second_size
from detkit.export.metadata import ExportMetadata
from detkit.export.onnx_file import DEFAULT_OPSET, export_onnx, require_onnx
from detkit.export.runtime import ExportedDetector
from detkit.export.torchscript_file import export_torchscript
from detkit.export.verify import FP16_TOLERANCE, FP32_TOLERANCE, Agreement, Tolerance, compare_detections
from detkit.io import atomic_path, input_replaced_by
from detkit.modeling.fuse import folded_copy
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.ops.regions import warp_regions
from detkit.pipelines import pipeline
from detkit.pipelines.rcnn.model import RCNNDetector
from detkit.version import __version__

CPU = torch.device("cpu")
MIN_SIDE = 32


@dataclass(frozen=True)
class ExportRequest:
    weights: Path | None  # None: the last `detkit train`'s best checkpoint
    format: Format = "onnx"
    image_size: tuple[int, int] | None = None  # (H, W); None: the size the model runs a 4:3 image at
    dynamic: bool = False
    opset: int | None = None
    half: bool = False
    out: Path | None = None
    score_thresh: float | None = None
    overrides: tuple[str, ...] = ()
    part: str = "detector"
    check_images: tuple[str, ...] = ()  # files, folders or globs; () the run's validation images or scenes
    check_count: int = 4
    box_tol: float | None = None  # None: FP32_TOLERANCE's or FP16_TOLERANCE's
    score_tol: float | None = None


@dataclass
class ExportReport:
    path: Path
    format: Format
    pipeline: str
    exporter: str
    bytes: int
    export_seconds: float
    check_seconds: float
    sizes: list[tuple[int, int]]  # the input sizes checked
    samples: str  # what the checked images were
    tolerance: Tolerance
    agreement: Agreement | None = None
    feature_difference: float | None = None  # --part cnn: largest relative feature difference
    notes: list[str] = field(default_factory=list)


def run_export(request: ExportRequest, on_event: EventCallback = ignore_events) -> ExportReport:
    """Export, verify, publish; see the module docstring."""
    _check_request(request)
    if request.format == "onnx":
        require_onnx()
    weights = request.weights if request.weights is not None else latest_checkpoint()
    model, checkpoint = load_detector(
        weights, CPU, score_thresh=request.score_thresh, overrides=list(request.overrides)
    )
    if isinstance(model, ExportedDetector):
        raise ConfigError(f"{weights}: is already an exported file; export the checkpoint it was made from")
    # The graph is made of a copy with its batch norms folded into the convolutions (what inference runs),
    # and checked against the checkpoint's own layers: the check covers the fold too.
    graph = build_graph(folded_copy(model), pipeline(checkpoint.pipeline), half=request.half, part=request.part)
    out = request.out or _default_out(weights, request.format)
    _check_suffix(out, request.format)
    _refuse_overwriting(out, weights)
    size = request.image_size or graph.size
    dynamic = request.dynamic or request.format == "torchscript"  # a scripted graph takes any size
    sizes = [size, second_size(size)] if dynamic else [size]
    samples, described = _samples(request, checkpoint, sizes, graph)
    tolerance = _tolerance(request)
    metadata = _metadata(checkpoint, graph, request, size, dynamic)
    on_event(Notice(f"exporting {checkpoint.pipeline} as {request.format} ({metadata.exporter})", level="info"))
    try:
        with atomic_path(out) as temporary:
            started = time.perf_counter()
            example = _example(model, graph, samples[0])
            _write(graph, example, temporary, request, dynamic, metadata)
            exported = time.perf_counter()
            on_event(Notice(f"checking against the eager model on {described}", level="info"))
            report = ExportReport(
                path=out,
                format=request.format,
                pipeline=checkpoint.pipeline,
                exporter=metadata.exporter,
                bytes=temporary.stat().st_size,
                export_seconds=exported - started,
                check_seconds=0.0,
                sizes=sizes,
                samples=described,
                tolerance=tolerance,
            )
            _verify(model, graph, temporary, request.format, samples, report)
            report.check_seconds = time.perf_counter() - exported
    except OSError as error:
        raise StorageError(
            f"{out}: cannot write the exported file ({error.strerror or error}); choose another --out"
        ) from None
    return report


# ---------------------------------------------------------------------------------------------
# The request


def _check_request(request: ExportRequest) -> None:
    if request.image_size is not None and min(request.image_size) < MIN_SIDE:
        raise ConfigError(f"--image-size {request.image_size[0]} {request.image_size[1]}: each side must be >= 32")
    if request.opset is not None and request.format != "onnx":
        raise ConfigError("--opset applies to --format onnx only")
    if request.opset is not None and request.opset < DEFAULT_OPSET:
        raise ConfigError(
            f"--opset {request.opset}: the torch.export-based exporter writes opset {DEFAULT_OPSET} and later"
        )
    if request.check_count < 1:
        raise ConfigError(f"--check-count {request.check_count}: must be at least 1")
    for name, value in (("--box-tol", request.box_tol), ("--score-tol", request.score_tol)):
        if value is not None and not value > 0:
            raise ConfigError(f"{name} {value}: must be a positive number")


def _default_out(weights: Path, fmt: Format) -> Path:
    """Beside the checkpoint with the format's suffix; a pretrained name's in the current folder."""
    path = Path(weights)
    return path.with_suffix(DEFAULT_SUFFIX[fmt]) if path.is_file() else Path(path.name + DEFAULT_SUFFIX[fmt])


def _refuse_overwriting(out: Path, weights: Path) -> None:
    if input_replaced_by(out, [weights]) is not None:
        raise DataError(f"--out {out}: is the weights file being exported; choose another --out")


def _check_suffix(out: Path, fmt: Format) -> None:
    """A file is run by the format its name says (``export.files``): the name must say the right one."""
    named = SUFFIXES.get(out.suffix.lower())
    if named is not None and named != fmt:
        raise ConfigError(f"--out {out}: a {fmt} file named as {named}; name it {DEFAULT_SUFFIX[fmt]}")


def _tolerance(request: ExportRequest) -> Tolerance:
    base = FP16_TOLERANCE if request.half else FP32_TOLERANCE
    return Tolerance(
        box=request.box_tol if request.box_tol is not None else base.box,
        score=request.score_tol if request.score_tol is not None else base.score,
        mask_iou=base.mask_iou,
        nms_iou=base.nms_iou,
        missing_share=base.missing_share,
    )


def _metadata(
    checkpoint: Checkpoint, graph: ExportGraph, request: ExportRequest, size: tuple[int, int], dynamic: bool
) -> ExportMetadata:
    from detkit.config.overrides import config_to_dict

    exporter = (
        f"torch.onnx.export (torch.export-based), opset {request.opset or DEFAULT_OPSET}, torch {torch.__version__}"
        if request.format == "onnx"
        else f"torch.jit.trace (networks) + torch.jit.script (the rest), frozen, torch {torch.__version__}"
    )
    return ExportMetadata(
        pipeline=checkpoint.pipeline,
        part=graph.part,
        class_names=tuple(checkpoint.class_names),
        category_ids=tuple(checkpoint.category_ids),
        inputs=graph.inputs,
        outputs=graph.outputs,
        input_size=size,
        dynamic=dynamic,
        image_mean=graph.image_mean,
        image_std=graph.image_std,
        precision="fp16" if request.half else "fp32",
        score_thresh=graph.score_thresh,
        detections_per_image=graph.detections_per_image,
        exporter=exporter,
        detkit_version=__version__,
        config=config_to_dict(checkpoint.config),
    )


# ---------------------------------------------------------------------------------------------
# Sample images


def _samples(
    request: ExportRequest, checkpoint: Checkpoint, sizes: list[tuple[int, int]], graph: ExportGraph
) -> tuple[list[Tensor], str]:
    """``uint8 [3, H, W]`` images at every size in ``sizes`` (``check_count`` per size), and what they are.
    R-CNN's CNN (``--part cnn``) gets the images at its crop size, to be warped into crops."""
    paths, source = _sample_paths(request, checkpoint)
    count = request.check_count
    if paths:
        pictures = [torch.from_numpy(read_image_rgb(p)).permute(2, 0, 1).contiguous() for p in paths[:count]]
        described = f"{min(count, len(paths))} {source}"
    else:
        rng = np.random.default_rng(0)
        pictures = [
            torch.from_numpy(render_image(rng, *sizes[0])[0]).permute(2, 0, 1).contiguous() for _ in range(count)
        ]
        described = f"{count} synthetic scene{'s' if count > 1 else ''}"
    images = [_resized(picture, size) for size in sizes for picture in pictures]
    shown = " and ".join(f"{h}x{w}" for h, w in sizes)
    return images, f"{described} at {shown}"


def _sample_paths(request: ExportRequest, checkpoint: Checkpoint) -> tuple[list[Path], str]:
    if request.check_images:
        found = find_inputs(list(request.check_images)).images
        if not found:
            raise DataError(f"--check-images {' '.join(request.check_images)}: no images there; pass image files")
        return found, "images from --check-images"
    source = Path(checkpoint.source)
    if not (source.parent / CONFIG).is_file():
        return [], ""
    try:
        folder = run_config(source).data.val_images
    except (ConfigError, DataError):
        return [], ""
    if folder is None or not Path(folder).is_dir():
        return [], ""
    try:
        return find_inputs([str(folder)]).images, f"validation images of the run ({folder})"
    except DataError:
        return [], ""


def _resized(picture: Tensor, size: tuple[int, int]) -> Tensor:
    """``uint8 [3, h, w]`` resized to ``size`` (bilinear, antialiased when shrinking), still uint8."""
    if tuple(picture.shape[-2:]) == size:
        return picture
    shrinking = size[0] < picture.shape[-2] or size[1] < picture.shape[-1]
    resized = F.interpolate(picture[None].float(), size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# Writing and checking


def _example(model: nn.Module, graph: ExportGraph, image: Tensor) -> tuple[Tensor, ...]:
    """What the graph is called with while it is exported: the first sample (and its proposals)."""
    if graph.part == "cnn":
        return (_crops(model, image),)
    proposals = _proposal_source(model)
    if proposals is None:
        return (image,)
    return image, proposals.compute(image_to_tensor(image.permute(1, 2, 0).numpy())).to(torch.float32)


def _proposal_source(model: nn.Module) -> PrecomputedProposals | None:
    source = getattr(model, "proposal_generator", None)
    return source if isinstance(source, PrecomputedProposals) else None


def _write(
    graph: ExportGraph,
    example: tuple[Tensor, ...],
    path: Path,
    request: ExportRequest,
    dynamic: bool,
    metadata: ExportMetadata,
) -> None:
    properties = metadata.to_properties()
    try:
        if request.format == "onnx":
            names_in = [spec.name for spec in graph.inputs]
            names_out = [spec.name for spec in graph.outputs]
            export_onnx(
                graph.module, example, names_in, names_out, path,
                dynamic=dynamic, opset=request.opset, metadata=properties,
            )  # fmt: skip
        else:
            export_torchscript(graph.module, example, path, properties)
    except DetkitError:
        raise
    except Exception as error:  # torch's exporters raise a zoo of types (FrontendError, TorchExportError, ...)
        cause = _root_cause(error)
        reason = (str(cause).strip().splitlines() or [""])[0][:200]
        other = "torchscript" if request.format == "onnx" else "onnx"
        raise DetkitError(
            f"{request.weights}: the {request.format} exporter failed on the {metadata.pipeline} graph "
            f"({type(cause).__name__}: {reason}); try --format {other}, or rerun with --verbose and report it"
        ) from error


def _root_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of a chain: torch.onnx wraps the one that says what failed in two
    generic ones ("Failed to export the model with torch.export...")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _verify(
    model: nn.Module, graph: ExportGraph, path: Path, fmt: Format, samples: list[Tensor], report: ExportReport
) -> None:
    """Run the file and the eager model on ``samples``; raise (the caller removes the file) beyond tolerance."""
    session, metadata = open_exported(path, CPU, fmt)
    if graph.part == "cnn":
        _verify_features(model, session, samples, report)
        return
    source = _proposal_source(model)
    runner = ExportedDetector(
        session,
        metadata,
        str(report.path),
        proposal_generator=None if source is None else PrecomputedProposals(source.cfg),
    )
    agreement = Agreement()
    with torch.inference_mode():
        for image in samples:
            x = image.to(torch.float32) / 255.0
            eager = model([x]).detections[0]
            compare_detections(
                eager,
                runner([x]).detections[0],
                report.tolerance,
                score_thresh=graph.score_thresh,
                detections_per_image=graph.detections_per_image,
                nms_thresh=graph.nms_thresh,
                into=agreement,
            )
    report.agreement = agreement
    failures = agreement.failures(report.tolerance)
    if failures:
        raise DetkitError(
            f"{report.path}: the exported detections differ from the eager model's on {report.samples}: "
            f"{'; '.join(failures)}; the file was removed (loosen --box-tol/--score-tol only if the difference "
            "is acceptable, or try the other --format)"
        )


def _verify_features(model: nn.Module, session: Session, samples: list[Tensor], report: ExportReport) -> None:
    """R-CNN's CNN alone: its features, relative to their largest magnitude, within ``--score-tol``."""
    report.feature_difference = _feature_difference(model, session, samples)
    if report.feature_difference > report.tolerance.score:
        raise DetkitError(
            f"{report.path}: exported features differ from the eager CNN's by {report.feature_difference:.3g} "
            f"of their scale (tolerance {report.tolerance.score:g}); the file was removed"
        )


def _crops(model: nn.Module, image: Tensor) -> Tensor:
    """R-CNN's warped crops of a few regions of one sample image (the CNN's real input)."""
    model = cast(RCNNDetector, model)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    boxes = torch.tensor(
        [[0, 0, width, height], [0, 0, width / 2, height / 2], [width / 3, height / 4, width, height]],
        dtype=torch.float32,
    )
    normalized = model.normalize(image.to(torch.float32) / 255.0)
    crops: Tensor = warp_regions(normalized, boxes, model.cfg.crop_size, model.cfg.context_padding)
    return crops


def _feature_difference(model: nn.Module, session: Session, samples: list[Tensor]) -> float:
    """The largest feature difference over every sample's crops, relative to the features' largest magnitude."""
    largest = 0.0
    with torch.inference_mode():
        for image in samples:
            crops = _crops(model, image)
            eager = cast(RCNNDetector, model).cnn.features(crops)
            exported = session.run([crops])[0]
            scale = max(float(eager.abs().max()), 1e-6)
            largest = max(largest, float((eager - exported).abs().max()) / scale)
    return largest
