"""What the rest of detkit may ask about a pipeline: one ``PipelineSpec`` per row of ``PIPELINES``.

The engine, the benchmark and the commands read these facts instead of testing names or probing a
model's attributes: how to build it, where its regions come from, whether it trains by stages or
on masks, which config keys hold its score threshold and input size, what full load means for
it, its torchvision peer, its recipes, and the counters its detection keeps. A pipeline is its
module (builder, presets, spec) and one row of the table; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from torch import nn

from detkit.config import ExperimentConfig, ModelConfig
from detkit.modeling.precomputed_proposals import PrecomputedProposals, ProposalTally

ProposalKind = Literal["selective_search", "rpn", "dense"]
Preset = Callable[[], ExperimentConfig]


class RegionTally(Protocol):
    """A count of the images a detector has seen and the regions they gave (R-CNN's ``RCNNTally``)."""

    images: int
    regions: int


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline's facts.

    - ``build``: ``ModelConfig`` (``num_classes`` set) -> detector in train mode, ``forward(images,
      targets=None) -> DetectorOutput``.
    - ``proposals``: where its regions come from: ``selective_search`` (OpenCV, precomputed into the
      cache before training and detection), an ``rpn``, or ``dense`` (every feature-map cell predicts).
    - ``staged``: trained by the staged R-CNN (``engine/rcnn``), not the gradient loop.
    - ``masks``: trains on instance masks (its datasets decode them) and predicts them.
    - ``score_thresh_key``: the config key of the score below which detections are dropped.
    - ``input_size``: long side L -> the overrides that make it run on 4:3 images of ``(3L/4, L)``
      without resampling (the benchmark's input).
    - ``full_load``: the overrides that give an untrained model a trained one's load on a busy image
      (every RoI, every NMS candidate), so a random-weight benchmark times real work.
    - ``presets``: its recipes, the first the real-data default; ``<name>_synthetic`` is the one
      ``detkit train`` uses on the embedded dataset.
    - ``svd_box_head``: its box head's FC layers can be factorised by truncated SVD (``--svd-rank``).
    - ``dense_network``: the dotted path of its convolutional network, the static-shape part
      ``torch.compile`` gets (proposals, sampling and NMS have data-dependent shapes and stay eager).
    - ``torchvision``: torchvision architecture name -> the builder of the same model.
    - ``proposal_tally`` / ``region_tally``: the counters its detection keeps (selective-search proposal
      sets computed vs read from the cache; R-CNN's warped regions), read for the cost lines.
    - ``cost_breakdown``: (model, ms per image by stage) -> its cost formula as a line, if it has one.
    """

    name: str
    build: Callable[[ModelConfig], nn.Module]
    proposals: ProposalKind
    score_thresh_key: str
    input_size: Callable[[int], tuple[str, ...]]
    full_load: tuple[str, ...]
    presets: tuple[Preset, ...]
    staged: bool = False
    masks: bool = False
    svd_box_head: bool = False
    dense_network: str = "backbone"
    torchvision: Mapping[str, str] = field(default_factory=dict)
    proposal_tally: Callable[[nn.Module], ProposalTally] | None = None
    region_tally: Callable[[nn.Module], RegionTally] | None = None
    cost_breakdown: Callable[[nn.Module, Mapping[str, float]], str | None] | None = None

    @property
    def uses_selective_search(self) -> bool:
        return self.proposals == "selective_search"

    @property
    def preset_names(self) -> tuple[str, ...]:
        return tuple(preset.__name__ for preset in self.presets)

    def default_preset(self, synthetic: bool) -> str:
        """The preset ``detkit train --pipeline NAME`` starts from: the synthetic one on the embedded data."""
        wanted = f"{self.name}_synthetic" if synthetic else self.presets[0].__name__
        return wanted if wanted in self.preset_names else self.presets[0].__name__


def resize_to(long_side: int) -> tuple[str, ...]:
    """A two-stage model's input at ``long_side``: its resize keeps a 4:3 image as it is."""
    return (f"model.transform.min_size=[{3 * long_side // 4}]", f"model.transform.max_size={long_side}")


def selective_search_tally(model: nn.Module) -> ProposalTally:
    """The proposal counter of a model fed by ``PrecomputedProposals``."""
    return cast(PrecomputedProposals, model.proposal_generator).tally
