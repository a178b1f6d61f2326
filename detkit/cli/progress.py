"""Render engine events with rich: progress bars with ETA and running losses, epoch summaries, notices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from detkit.cli.console import label_line, printable, styled
from detkit.cli.plain_progress import PlainProgressLog, significant
from detkit.cli.tables import threads_phrase

if TYPE_CHECKING:
    from detkit.engine.events import EpochFinished

_SHOWN_INFO = (
    "loss",
    "loss_rpn_cls",
    "loss_rpn_box",
    "loss_cls",
    "loss_box",
    "loss_mask",
    "lr",
    "computed",
    "boxes_per_image",
)


class RichProgress:
    """A callable event sink; use as a context manager around the engine call."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # markup=False: a description is data (a dataset or file name); the columns style it instead.
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("eta", markup=False),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}
        # rich draws no live bar when the output is not a terminal: plain lines every few seconds instead.
        self.plain = None if console.is_terminal else PlainProgressLog(console)

    def __enter__(self) -> RichProgress:
        from detkit.download import report_downloads_to

        self.progress.start()
        # A weights download starts deep inside a model build, while this display is live: it shows
        # as one more bar here (a second live display would fight this one for the terminal).
        self._downloads = report_downloads_to(_DownloadBar(self.progress, self.console))
        self._downloads.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._downloads.__exit__(None, None, None)
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        from detkit.engine import events

        if isinstance(event, events.StageStarted):
            # Cleaned before rich measures the bar's line: a mis-measured line wraps and breaks the live redraw.
            description = printable(event.description or event.stage)
            self.tasks[event.stage] = self.progress.add_task(description, total=event.total, info="")
            if self.plain is not None:
                self.plain.started(event.stage, description, event.total)
        elif isinstance(event, events.StageAdvanced) and event.stage in self.tasks:
            info = _format_info(event.info)
            self.progress.update(self.tasks[event.stage], completed=event.completed, info=info)
            if self.plain is not None:
                self.plain.advanced(event.stage, event.completed, info, event.images)
        elif isinstance(event, events.StageFinished) and event.stage in self.tasks:
            self.progress.remove_task(self.tasks.pop(event.stage))
            if self.plain is not None:
                self.plain.finished(event.stage)
        elif isinstance(event, events.EpochFinished):
            self.console.print(_epoch_line(event))
        elif isinstance(event, events.Notice):
            self.console.print(label_line(f"{event.level}:", "yellow", event.message))
        elif isinstance(event, events.TrainingStarted):
            across = f" x {event.processes} processes" if event.processes > 1 else f", {threads_phrase(event.threads)}"
            self.console.print(
                styled("training ", (event.pipeline, "bold"), f" ({event.name}) on {event.data}{across}")
            )


class _DownloadBar:
    """``detkit.download.DownloadReporter`` as a task of a live ``Progress``: MiB done of the total, the
    rate, then one line saying what was downloaded where."""

    def __init__(self, progress: Progress, console: Console) -> None:
        self.progress, self.console = progress, console
        self.task: TaskID | None = None
        self.name, self.done, self.started = "", 0, 0.0

    def start(self, name: str, total_bytes: int | None) -> None:
        import time

        self.name, self.done, self.started = printable(name), 0, time.perf_counter()
        total = None if total_bytes is None else max(1, round(total_bytes / 2**20))
        self.task = self.progress.add_task(f"downloading {self.name} (MiB)", total=total, info="")

    def advance(self, num_bytes: int) -> None:
        import time

        self.done += num_bytes
        if self.task is not None:
            rate = self.done / 2**20 / max(time.perf_counter() - self.started, 1e-6)
            self.progress.update(self.task, completed=round(self.done / 2**20), info=f"{rate:.1f} MiB/s")

    def finish(self, complete: bool) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        if complete:
            self.console.print(f"downloaded {self.name} ({self.done / 2**20:.1f} MiB)", markup=False)


def _format_info(info: dict[str, float]) -> str:
    parts = []
    for key in _SHOWN_INFO:
        if key in info:
            label, value = key.replace("loss_", "").replace("_per_", "/"), info[key]
            if isinstance(value, int):
                parts.append(f"{label} {value}")
            else:
                parts.append(f"{label} {value:.2e}" if key == "lr" else f"{label} {value:.3f}")
    return " ".join(parts)


def _epoch_line(event: EpochFinished) -> Text:
    """One line per epoch: losses, speed, validation AP; a green "best" when this epoch's checkpoint is the best."""
    loss = event.train_losses.get("loss", float("nan"))
    line = f"epoch {event.epoch}/{event.epochs}  loss {loss:.3f}  {event.seconds:.0f}s"
    if event.images_per_second:
        line += f"  {significant(event.images_per_second)} img/s"  # 0.0412 on a slow machine, not 0.0
    if event.metrics:
        line += f"  val AP {event.metrics['AP']:.3f}  AP50 {event.metrics['AP50']:.3f}"
        if "mask_AP" in event.metrics:
            line += f"  mask AP {event.metrics['mask_AP']:.3f}  AP50 {event.metrics['mask_AP50']:.3f}"
    text = Text(line)
    if event.metrics and event.is_best:
        text.append("  ").append("best", style="green")
    return text
