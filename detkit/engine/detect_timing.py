"""Where ``detkit detect``'s time went, per image: the line it prints at the end (as Ultralytics' "Speed").

    decode       reading and decoding the file (in the decoding workers when there are any: then it
                 overlaps the model, and ``wait`` is what the model actually waited for images)
    wait         the model idle, waiting for the next decoded image
    preprocess   the model's resizing, normalization and padding
    model        trunk, proposals and heads (every stage of ``modeling.stages`` but pre/postprocess)
    postprocess  score threshold, NMS, boxes back to the image's frame
    draw         drawing the annotated copy and encoding it (in a writer thread: it overlaps the model)
    write        the json lines

The model's stages are read from its stage markers (``modeling.stages``), which cost a clock read per
boundary on a CPU and a synchronization on a GPU.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

PHASES = ("decode", "wait", "preprocess", "model", "postprocess", "draw", "write")


@dataclass
class DetectTiming:
    """Seconds per phase over ``images`` images, and the wall time of the whole pass. Thread-safe to add to."""

    images: int = 0
    wall_seconds: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] += seconds

    def add_call(self, total: float, stage_seconds: dict[str, float]) -> None:
        """A model call of ``total`` seconds and its ``StageRecorder.seconds``: its preprocess and
        postprocess stages, the rest as model (an exported file marks no stages: all of it)."""
        edges = {name: stage_seconds.get(name, 0.0) for name in ("preprocess", "postprocess")}
        for name, seconds in edges.items():
            self.add(name, seconds)
        self.add("model", max(total - sum(edges.values()), 0.0))

    def ms_per_image(self, phase: str) -> float:
        return 1000 * self.seconds.get(phase, 0.0) / max(self.images, 1)

    @property
    def images_per_second(self) -> float:
        return self.images / self.wall_seconds if self.wall_seconds > 0 else 0.0
