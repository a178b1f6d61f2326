"""What every command shares: consoles, the one-line error contract, and --set/--config handling.

No torch import here: ``detkit --help`` must stay fast.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    verbose = False


state = _State()


def reports_errors(command: F) -> F:
    """Turn a DetkitError into one line on stderr and its exit code; tracebacks only under --verbose."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from detkit.errors import DetkitError, TrainingInterrupted

        try:
            return command(*args, **kwargs)
        except TrainingInterrupted as stopped:  # asked for, and resumable: not an error
            error_console.print(f"[yellow]interrupted:[/] {_one_line(str(stopped))}")
            raise typer.Exit(stopped.exit_code) from None
        except DetkitError as error:
            if state.verbose:
                error_console.print(traceback.format_exc(), markup=False)
            error_console.print(f"[bold red]error:[/] {_one_line(str(error))}")
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            error_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _one_line(message: str) -> str:
    from rich.markup import escape

    return escape(" ".join(message.split()))
