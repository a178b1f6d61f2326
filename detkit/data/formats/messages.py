"""Quoting file content inside error messages, which are one line (``detkit.errors``).

A value read from a file may hold newlines, control characters or a megabyte of text; ``repr``
escapes the first two, and long values are cut.
"""

from __future__ import annotations

from typing import Any

MAX_QUOTED = 40


def quoted(value: Any, limit: int = MAX_QUOTED) -> str:
    """``value`` as a short single-line Python literal: ``'cat'``, ``'0\\r0'``, ``'aaaa...'``."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
