"""``detkit train --devices N``: N data-parallel processes on this machine.

The calling process becomes rank 0, so progress bars, errors and the returned result stay where
the user is; ranks 1..N-1 are spawned (fresh interpreters: safe with CUDA, and the same on every
OS). They meet over TCP on a free local port. A rank that fails puts its one-line error on a queue;
when rank 0 then fails in a collective (its peer is gone), it reports that error instead of the
collective's, because that is the cause.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from detkit.engine.distributed import Rank
from detkit.errors import DetkitError, TrainingError, TrainingInterrupted

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import SimpleQueue

T = TypeVar("T")
JOIN_SECONDS = 60  # how long finished ranks may take to exit before they are terminated

Worker = Callable[..., T]  # worker(rank: Rank, init_method: str, *args, **main_kwargs) -> T
Failure = tuple[int, str, int]  # (rank, one-line message, exit code) a failed child puts on the queue


def launch(worker: Worker[T], world_size: int, args: tuple[Any, ...], main_kwargs: dict[str, Any] | None = None) -> T:
    """Run ``worker(rank, init_method, *args)`` in ``world_size`` processes; return rank 0's result.

    ``main_kwargs`` go to rank 0 only (such as an event callback, which cannot cross processes).
    """
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    context = mp.get_context("spawn")
    failures: SimpleQueue[Failure] = context.SimpleQueue()
    children = [
        context.Process(
            target=_run_child,
            args=(worker, _rank(index, world_size), init_method, args, failures),
            name=f"detkit-rank-{index}",
        )
        for index in range(1, world_size)
    ]
    for child in children:
        child.start()
    try:
        result = worker(_rank(0, world_size), init_method, *args, **(main_kwargs or {}))
    except (DetkitError, KeyboardInterrupt):
        _stop(children)
        raise
    except Exception as error:
        _stop(children)
        failure = _first_failure(failures)
        if failure is not None and _lost_a_peer(error):
            raise failure from None
        raise
    _join(children)
    failure = _first_failure(failures)
    if failure is not None:
        raise failure
    return result


def _rank(index: int, world_size: int) -> Rank:
    return Rank(rank=index, world_size=world_size, local_rank=index, local_world_size=world_size, joined=True)


def _run_child(
    worker: Worker[object], rank: Rank, init_method: str, args: tuple[Any, ...], failures: SimpleQueue[Failure]
) -> None:
    """Body of ranks 1..N-1: run the worker; report a failure on the queue and exit non-zero."""
    try:
        worker(rank, init_method, *args)
    except TrainingInterrupted:
        return  # rank 0 saved the checkpoint and tells the user
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except DetkitError as error:
        failures.put((rank.rank, str(error), error.exit_code))
        raise SystemExit(error.exit_code) from None
    except BaseException as error:  # a bug: keep the last frame so it can be found
        where = traceback.extract_tb(error.__traceback__)[-1]
        failures.put((rank.rank, f"{type(error).__name__}: {error} ({where.filename}:{where.lineno})", 1))
        raise SystemExit(1) from None


def _lost_a_peer(error: Exception) -> bool:
    """Whether ``error`` is a collective failing because another process went away (not a cause itself)."""
    import torch.distributed as dist

    message = str(error)
    return isinstance(error, dist.DistError) or "closed by peer" in message or "Connection reset" in message


def _first_failure(failures: SimpleQueue[Failure]) -> DetkitError | None:
    if failures.empty():
        return None
    rank, message, exit_code = failures.get()
    error = TrainingError(f"training process {rank} failed: {message}")
    error.exit_code = exit_code
    return error


def _join(children: Sequence[BaseProcess]) -> None:
    for child in children:
        child.join(JOIN_SECONDS)
    _stop(children)


def _stop(children: Sequence[BaseProcess]) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]  # (host, port) for AF_INET; typeshed types the address Any
        return port
