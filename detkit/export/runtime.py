"""An exported file behind the detector contract, so ``detect``, ``eval`` and ``benchmark`` run it as a model.

    ExportedDetector(images: list of ``[3, H, W]`` float in [0, 1]) -> DetectorOutput(losses={}, detections)

Each image becomes the graph's input, its exact pixels (``uint8``, ``round(x * 255)``: the bytes an image
file decoded to), letterboxed when the file takes one size only (``fixed_size``); one graph call per
image (the graphs take one). Fast R-CNN's selective-search proposals come from the same on-disk cache
the eager model reads (``PrecomputedProposals``). A score threshold above the graph's own is applied
to the graph's detections, which gives what eager gives at that threshold: NMS never lets a box
suppress a higher-scoring one, so dropping the low ones before or after NMS keeps the same boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detkit.errors import ConfigError
from detkit.export import fixed_size
from detkit.export.files import Session
from detkit.export.metadata import ExportMetadata
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.structures import Detections, DetectorOutput, Target


class ExportedDetector(nn.Module):
    fill: Tensor

    def __init__(
        self,
        session: Session,
        metadata: ExportMetadata,
        source: str,
        *,
        proposal_generator: PrecomputedProposals | None = None,
        score_thresh: float | None = None,
    ) -> None:
        super().__init__()
        if metadata.part != "detector":
            raise ConfigError(
                f"{source}: holds {metadata.pipeline}'s {metadata.part} only (exported with --part {metadata.part}), "
                "not a detector; run the checkpoint it came from"
            )
        if metadata.needs_proposals and proposal_generator is None:
            raise ValueError("a graph with a proposals input needs a proposal_generator")
        if score_thresh is not None and score_thresh < metadata.score_thresh:
            raise ConfigError(
                f"{source}: --score-thresh {score_thresh:g} is below the {metadata.score_thresh:g} exported in the "
                f"graph; pass at least that, or export again with --score-thresh {score_thresh:g}"
            )
        self.session, self.metadata, self.source = session, metadata, source
        self.runtime = session.runtime
        self.proposal_generator = proposal_generator
        self.score_thresh = score_thresh
        fixed = [d for d in session.input_shape[1:] if isinstance(d, int)]
        self.fixed_size: tuple[int, int] | None = (fixed[0], fixed[1]) if len(fixed) == 2 else None
        mean = torch.tensor(metadata.image_mean)
        self.register_buffer("fill", (mean * 255).round().clamp(0, 255).to(torch.uint8), persistent=False)

    def forward(self, images: list[Tensor], targets: list[Target] | None = None) -> DetectorOutput:
        """Detections of each image in its own frame; ``targets`` are not used (an exported graph has no losses)."""
        return DetectorOutput(losses={}, detections=[self.detect(image) for image in images])

    @torch.no_grad()
    def detect(self, image: Tensor) -> Detections:
        """``[3, H, W]`` float in [0, 1] -> its ``Detections`` (on the runtime's device)."""
        pixels = image.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        size = (int(image.shape[-2]), int(image.shape[-1]))
        fitted = None
        if self.fixed_size is not None and size != self.fixed_size:
            fitted = fixed_size.fit(pixels, self.fixed_size, self.fill)
            pixels = fitted.pixels
        inputs = [pixels]
        if self.proposal_generator is not None:
            proposals = self.proposal_generator.compute(image).to(torch.float32)
            inputs.append(proposals * fitted.scale if fitted is not None else proposals)
        outputs = self.session.run(inputs)
        masks = outputs[3] if self.metadata.has_masks else None
        detections = Detections(boxes=outputs[0], scores=outputs[1], labels=outputs[2], masks=masks)
        if fitted is not None:
            detections = fixed_size.restore(detections, fitted)
        if self.score_thresh is not None and self.score_thresh > self.metadata.score_thresh:
            detections = detections.filter(detections.scores > self.score_thresh)
        return detections
