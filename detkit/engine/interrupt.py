"""Stop a training run cleanly on request.

Ctrl-C (SIGINT) or a scheduler's SIGTERM sets a flag that the training loop reads at its next step
boundary: it then writes ``last.pt`` with everything ``--resume`` needs and exits. A second Ctrl-C
aborts at once (the previous checkpoint is intact: checkpoints are written atomically).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that turns the stop signals into ``requested = True`` while it is active."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread only
            for signum in STOP_SIGNALS:
                # An ignored signal stays ignored: a shell starts background jobs (`detkit train &`,
                # `nohup ... &`) with SIGINT ignored so that Ctrl-C at the prompt does not reach them.
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():  # whatever was there before, not the default
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, without the checkpoint
        self.requested = True
