"""Errors a user can act on. The CLI prints ``str(error)`` as one line and exits with ``exit_code``.

Messages name the file, the record and the fix, e.g.
``annotations.json: annotation 17 has no 'bbox'; add [x, y, width, height] or drop the record``.
"""

from __future__ import annotations

import reprlib
from typing import Any


class DetkitError(Exception):
    """Base class: an error caused by input or environment, not by a bug in detkit."""

    exit_code = 1


class DataError(DetkitError):
    """A dataset, annotation file or image is missing, unreadable or malformed."""

    exit_code = 2


class ConfigError(DetkitError):
    """A configuration key or value is unknown or of the wrong type."""

    exit_code = 3


class CheckpointError(DetkitError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the requested model."""

    exit_code = 4


class WeightsNotFoundError(CheckpointError):
    """Pretrained weights were asked for and are not on this machine."""


class WeightsDownloadError(WeightsNotFoundError):
    """Pretrained weights are not on this machine and downloading them failed (network, disk, hash)."""


class TrainingError(DetkitError):
    """Training cannot go on (for example, repeated non-finite losses)."""

    exit_code = 5


class TrainingInterrupted(DetkitError):
    """Training was stopped on request (Ctrl-C) after saving a checkpoint it can resume from."""

    exit_code = 130


class StorageError(DetkitError):
    """An output could not be written: the disk is full, or the location refuses it."""

    exit_code = 2


# ---------------------------------------------------------------------------------------------
# Quoting values from files inside the one-line messages


MAX_QUOTED = 40


class _BoundedRepr(reprlib.Repr):
    """``repr`` that looks at a bounded part of a value: 3 levels deep, 4 items per container. A
    YAML alias bomb (nine aliases of nine aliases ... of a list) is a few hundred bytes of text but a
    billion items when walked; a plain ``repr`` would build all of them before any cut."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset, self.maxfrozenset = 3, 4, 4, 4, 4, 4
        self.maxstring, self.maxother = MAX_QUOTED, MAX_QUOTED

    def repr_int(self, x: int, level: int) -> str:
        # repr of an int over 4300 digits raises ValueError (CPython's guard), and JSON allows them.
        if x.bit_length() > 128:
            return f"<{int(x.bit_length() * 0.30103) + 1}-digit integer>"
        return repr(x)


_BOUNDED_REPR = _BoundedRepr()


def quoted(value: Any, limit: int = MAX_QUOTED) -> str:
    """``value`` as a short single-line literal for a message: ``'cat'``, ``'0\\r0'``, ``'aaaa...'``.

    ``repr`` escapes newlines and control characters; containers are walked only a few items deep
    and long text is cut, so quoting costs the same for a megabyte of text or an alias bomb.
    """
    text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def a_type(value: Any) -> str:
    """``value``'s type for a message: "a str", "a Tensor"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}" if value is not None else "None"


def shown(value: Any) -> str:
    """A value from a file as a message shows it: a plain scalar quoted (``errors.quoted``), anything else
    by its type, since the repr of a tensor, or of a list holding one, spans lines."""
    return quoted(value) if value is None or isinstance(value, (bool, int, float, str)) else a_type(value)
