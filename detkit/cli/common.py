"""What every command shares: consoles, the one-line error contract, and --set/--config handling.

No torch import here: ``detkit --help`` must stay fast.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.text import Text

from detkit.cli.console import SafeConsole, label_line

# Every string printed on these is literal, whatever file or checkpoint it came from (see console.py).
console = SafeConsole()
error_console = SafeConsole(stderr=True, soft_wrap=True)

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
            error_console.print(label_line("interrupted:", "yellow", _one_line(str(stopped))))
            raise typer.Exit(stopped.exit_code) from None
        except DetkitError as error:
            _fail(_detkit_message(error), error.exit_code)
        except KeyboardInterrupt:
            error_console.print(Text("interrupted", style="yellow"))
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # a command's own exit code, or a usage error Click prints itself
        except OSError as error:  # the file system said no: a full disk, a folder where a file goes, permissions
            _fail(_os_message(error), OS_ERROR_EXIT_CODE)
        except Exception as error:  # a bug in detkit: still one line, with where to look next
            _fail(
                f"internal error ({error.__class__.__name__}: {str(error)[:300]}); "
                "rerun with --verbose for the traceback and report it",
                INTERNAL_ERROR_EXIT_CODE,
            )

    return wrapper  # type: ignore[return-value]


OS_ERROR_EXIT_CODE = 2  # as DataError: the input or output location is the problem
INTERNAL_ERROR_EXIT_CODE = 70  # EX_SOFTWARE (sysexits.h)

# torch's DataLoader re-raises a worker's exception as the same type with the worker's whole
# traceback as its message; the exception's own line is the last one ("detkit.errors.DataError: ...").
_WORKER_TRACEBACK = "Original Traceback"


def _fail(message: str, exit_code: int) -> None:
    if state.verbose:
        error_console.print(traceback.format_exc())  # literal: a SafeConsole parses no markup
    error_console.print(label_line("error:", "bold red", _one_line(message)))
    raise typer.Exit(exit_code) from None


def _detkit_message(error: Exception) -> str:
    message = str(error)
    if _WORKER_TRACEBACK in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if last.startswith("detkit.errors.") else last
    return message


def _os_message(error: OSError) -> str:
    where = error.filename if error.filename is not None else "detkit"
    reason = error.strerror or error.__class__.__name__
    return (
        f"{where}: {reason}; check that the path exists, is of the right kind (file or folder) and is writable, "
        "and that the disk has room"
    )


def _one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines included) made one space: one line, for grep."""
    return " ".join(message.split())
