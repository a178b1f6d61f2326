"""Errors a user can act on. The CLI prints ``str(error)`` as one line and exits with ``exit_code``.

Messages name the file, the record and the fix, e.g.
``annotations.json: annotation 17 has no 'bbox'; add [x, y, width, height] or drop the record``.
"""

from __future__ import annotations


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


class TrainingError(DetkitError):
    """Training cannot go on (for example, repeated non-finite losses)."""

    exit_code = 5


class TrainingInterrupted(DetkitError):
    """Training was stopped on request (Ctrl-C) after saving a checkpoint it can resume from."""

    exit_code = 130
