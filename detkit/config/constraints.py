"""What values a config field takes, declared next to the field in ``schema.py`` with ``typing.Annotated``:

    lr: Positive = 0.02                                   # Annotated[float, Range(gt=0)]
    optimizer: Annotated[str, Choice("sgd", "adamw")] = "sgd"
    min_size: Annotated[tuple[PositiveInt, ...], NonEmpty()] = (800,)

``overrides.coerce`` checks every value from a file, ``--set`` or a command-line option against them,
and ``overrides.check_config`` every value of a config built in code. Floats are always finite. A
constraint on a tuple's element type holds for each element (the error names ``min_size[0]``); one
on the tuple itself, for the whole value. ``problem(value)`` is None for a good value, else the rest
of a one-line message after ``key=value``, e.g. ``is out of range; must be > 0``.

``Below`` relates two fields of one dataclass: ``check_config`` checks it on a finished config (an
override applied one ``--set`` at a time may pass through a combination it forbids).
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from detkit.errors import quoted


class Constraint:
    """A condition on one value; subclasses say what is wrong with a value, or None."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError


def _number(x: float | None) -> str:  # None: an unbounded Range, shown as such
    if isinstance(x, int) and x > 2**32 and x & (x - 1) == 0:
        return f"2**{x.bit_length() - 1}"  # the seed's bound reads better than 9223372036854775808
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True, init=False)
class Range(Constraint):
    """``ge <= value <= le`` (positional), or open bounds with ``gt`` / ``lt``; None is unbounded."""

    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None

    def __init__(
        self, ge: float | None = None, le: float | None = None, *, gt: float | None = None, lt: float | None = None
    ) -> None:
        if ge is not None and gt is not None or le is not None and lt is not None:
            raise TypeError("Range takes one lower bound (ge or gt) and one upper bound (le or lt)")
        for name, bound in (("ge", ge), ("le", le), ("gt", gt), ("lt", lt)):
            object.__setattr__(self, name, bound)

    def problem(self, value: Any) -> str | None:
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if inside else f"is out of range; must be {self.describe(integer=isinstance(value, int))}"

    def describe(self, integer: bool = False) -> str:
        low, high = (self.ge if self.gt is None else self.gt), (self.le if self.lt is None else self.lt)
        if low is None:
            return f"{'<=' if self.lt is None else '<'} {_number(high)}"
        if high is None:
            return f"{'>=' if self.gt is None else '>'} {_number(low)}"
        if integer and self.gt is None and self.lt is None:
            return f"in {_number(low)}..{_number(high)}"
        return f"in {'[' if self.gt is None else '('}{_number(low)}, {_number(high)}{']' if self.lt is None else ')'}"


@dataclass(frozen=True)
class MultipleOf(Constraint):
    """An integer multiple of ``factor``; ``why`` is said in the message."""

    factor: int
    why: str = ""

    def problem(self, value: Any) -> str | None:
        if value % self.factor == 0:
            return None
        return f"is not a multiple of {self.factor}" + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True, init=False)
class Choice(Constraint):
    """One of a fixed set of names."""

    options: tuple[str, ...]

    def __init__(self, *options: str) -> None:
        object.__setattr__(self, "options", options)

    def problem(self, value: Any) -> str | None:
        if value in self.options:
            return None
        close = difflib.get_close_matches(value, self.options, n=1) if len(value) <= 64 else []
        return f"is not one of {', '.join(self.options)}" + (f"; did you mean {close[0]!r}?" if close else "")


@dataclass(frozen=True)
class Pattern(Constraint):
    """A string ``regex`` matches in full: ``what`` it is, and the forms it takes in words (``expected``)."""

    regex: str
    what: str
    expected: str

    def problem(self, value: Any) -> str | None:
        return None if re.fullmatch(self.regex, value) else f"is not {self.what}; use {self.expected}"


@dataclass(frozen=True)
class PathComponent(Constraint):
    """One folder name, safe to join under another folder: not empty, no separator, not ``.`` or
    ``..``, no NUL or other control character, at most ``max_bytes`` bytes of UTF-8 (a file name's limit)."""

    max_bytes: int = 255

    def problem(self, value: Any) -> str | None:
        reason = None
        if not value:
            reason = "it is empty"
        elif value in (".", ".."):
            reason = f"{value!r} is the folder itself or its parent"
        elif "/" in value or "\\" in value:
            reason = f"it contains {'/' if '/' in value else chr(92)!r}"
        elif any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
            reason = "it contains a control character"
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            reason = "it contains an unpaired surrogate, which is not text"
        elif len(value.encode("utf-8")) > self.max_bytes:
            reason = f"it is {len(value.encode('utf-8'))} bytes long; the limit is {self.max_bytes}"
        if reason is None:
            return None
        return f"is not a single folder name ({reason}); use a plain name such as my_run"


@dataclass(frozen=True)
class NonEmpty(Constraint):
    """A tuple with at least one element."""

    def problem(self, value: Any) -> str | None:
        return None if len(value) else "is empty; give at least one value"


@dataclass(frozen=True)
class Ascending(Constraint):
    """A tuple whose elements do not decrease, e.g. a ``(low, high)`` range."""

    def problem(self, value: Any) -> str | None:
        ordered = all(a <= b for a, b in zip(value, value[1:]))
        return None if ordered else "is not in ascending order; give (low, high) with low <= high"


@dataclass(frozen=True)
class Below:
    """Relates a field to a sibling field of its dataclass: ``times * value < <other>``."""

    other: str
    times: int = 1

    def problem(self, value: Any, other_value: Any) -> str | None:
        if self.times * value < other_value:
            return None
        scaled = "it" if self.times == 1 else f"{self.times} x it"
        return f"is too large; {scaled} must be < {self.other} ({_number(other_value)})"


@dataclass(frozen=True)
class Flag:
    """The ``detkit train`` option that also sets the field: messages name it beside the key."""

    name: str


# Aliases for the common cases. Counts of items, iterations, channels and pixels are PositiveInt;
# NonNegativeInt where 0 means none, off or automatic (the field's comment says which).
PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
Positive = Annotated[float, Range(gt=0.0)]
NonNegative = Annotated[float, Range(0.0)]
Probability = Annotated[float, Range(0.0, 1.0)]  # also IoU and score thresholds, fractions
Decay = Annotated[float, Range(0.0, lt=1.0)]  # momentum, moving-average decay: 1 would never move


def split_annotation(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[T, m1, m2]`` -> ``(T, (m1, m2))``; a plain ``T`` -> ``(T, ())``."""
    if typing.get_origin(annotation) is Annotated:
        return annotation.__origin__, annotation.__metadata__
    return annotation, ()


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass ``cls``, constraints included."""
    return typing.get_type_hints(cls, include_extras=True)


def label(path: str, value: Any, metadata: tuple[Any, ...] = ()) -> str:
    """``solver.epochs=0``, with the ``detkit train`` option beside it when there is one: ``(--epochs 0)``."""
    flag = next((m.name for m in metadata if isinstance(m, Flag)), None)
    shown = quoted(value)
    return f"{path}={shown}" + (f" ({flag} {shown})" if flag else "")
