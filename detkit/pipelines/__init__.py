"""The pipeline table: every pipeline's builder and facts (``PipelineSpec``), by name, and their presets.

``PIPELINES[name]`` is all the rest of detkit knows of a pipeline; adding one is its module (builder,
presets, ``SPEC``) and its row here. Each builder takes a ``ModelConfig`` (with ``num_classes`` set)
and returns a detector.
"""

from __future__ import annotations

from detkit.config import ExperimentConfig
from detkit.errors import ConfigError
from detkit.pipelines import fast_rcnn, faster_rcnn, mask_rcnn, yolo
from detkit.pipelines.rcnn import spec as rcnn
from detkit.pipelines.spec import PipelineSpec, Preset

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec for spec in (rcnn.SPEC, fast_rcnn.SPEC, faster_rcnn.SPEC, mask_rcnn.SPEC, yolo.SPEC)
}
DEFAULT_PIPELINE = "faster_rcnn"  # what `detkit train` trains without --pipeline

PRESETS: dict[str, Preset] = {preset.__name__: preset for spec in PIPELINES.values() for preset in spec.presets}
_PIPELINE_OF_PRESET = {name: spec.name for spec in PIPELINES.values() for name in spec.preset_names}


def pipeline(name: str) -> PipelineSpec:
    """The spec of pipeline ``name``; ``ConfigError`` naming the available ones otherwise."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]


def preset(name: str) -> ExperimentConfig:
    """The config preset ``name`` builds (a fresh one on every call)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def preset_for(pipeline_name: str | None, preset_name: str | None, *, synthetic: bool) -> str:
    """The preset a run of ``pipeline_name`` starts from: ``preset_name`` when given (it must be one of
    that pipeline's), else the pipeline's default (its synthetic one on the embedded data)."""
    if preset_name is None:
        return pipeline(pipeline_name or DEFAULT_PIPELINE).default_preset(synthetic)
    preset(preset_name)  # an unknown name is refused with the list
    owner = _PIPELINE_OF_PRESET[preset_name]
    if pipeline_name is not None and pipeline(pipeline_name).name != owner:
        choices = ", ".join(pipeline(pipeline_name).preset_names)
        raise ConfigError(
            f"--preset {preset_name} is a {owner} preset, not {pipeline_name}'s; pass --preset with one of {choices}, "
            f"or drop --pipeline to train {owner}"
        )
    return preset_name


__all__ = ["DEFAULT_PIPELINE", "PIPELINES", "PRESETS", "PipelineSpec", "pipeline", "preset", "preset_for"]
