"""Consoles on which every string is literal, and the few styled lines detkit prints, built as Text.

What detkit prints is full of strings from data files and checkpoints: category and class names,
file names, paths, notes, error messages. A plain rich ``Console`` parses a printed str as markup
(a class named ``[/x]`` raises ``MarkupError``, ``[link=...]`` emits a terminal hyperlink), turns
``:warning:`` into an emoji, and passes ESC and the C1 controls through (rich strips only BEL, BS,
VT, FF and CR), so a name holding ``\\x1b[2J`` clears the user's screen.

``SafeConsole`` closes both at the root rather than at each call site: it never parses markup or
emoji codes, and every segment it renders has its control characters replaced by visible ones.
Styles do not live in segment text (rich writes their escape codes when it flushes the buffer),
so detkit's own colours survive and injected sequences cannot. Styled lines are built with
``label_line`` / ``styled`` (``rich.text.Text``), so data never meets the markup parser, on any console.

No torch import here: ``detkit --help`` must stay fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

# C0 controls except \n (a line break is layout) and \t (rich expands tabs to spaces in Text before
# it makes segments, and a tab can only move the cursor to a tab stop, never erase or restyle),
# DEL, and C1 (0x80-0x9F: U+009B is a one-character CSI on terminals that honour 8-bit controls).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# The replacement is one terminal cell wide, because rich measures widths (table columns, wrapping,
# the live progress display's line count) before rendering and counts a control character as 0
# cells. Where text was not cleaned before it was measured, a one-cell mark costs one cell per control
# character (a table cell crops it, a lone line grows by it); a 4-cell ``\x1b`` escape would cost four.
# ``printable`` runs first wherever detkit builds text (``render_str``, ``literal``): there it costs
# nothing. For C0 and DEL the Unicode Control Pictures (U+2400 block: ``␛`` for ESC, ``␀`` for NUL)
# still say which character it was; C1 has no pictures and becomes U+FFFD. No replacement is a control
# character, so cleaning twice changes nothing: nested renderables pass their segments through
# ``SafeConsole.render`` once per level.
_VISIBLE = {code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A)}
_VISIBLE[0x7F] = "\u2421"
_VISIBLE.update({code: "\ufffd" for code in range(0x80, 0xA0)})


def printable(text: str) -> str:
    """``text`` with every control character but ``\\n`` and ``\\t`` replaced by a visible one-cell mark."""
    return text.translate(_VISIBLE) if _CONTROL.search(text) else text


class SafeConsole(Console):
    """A rich ``Console`` that prints every string literally and lets no control character through.

    Markup and emoji codes are off for good, even where a call passes ``markup=True``: data reaches
    ``print`` through f-strings, and one opt-in call would reopen the hole. Style a line with
    ``label_line`` / ``styled`` instead. ``highlight`` only adds colours, so it may be turned on.
    """

    def __init__(self, *, highlight: bool = False, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=highlight, **kwargs)

    def render_str(self, text: str, **options: Any) -> Text:
        """Every printed str and str table cell becomes Text here: cleaned first, so it is measured as shown."""
        return super().render_str(printable(text), **{**options, "markup": False, "emoji": False})

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        """Rich's segments with control characters made visible; control segments (rich's own cursor
        moves in live displays) are rich's, not text, and pass unchanged."""
        for segment in super().render(renderable, options):
            if segment.control or not _CONTROL.search(segment.text):
                yield segment
            else:
                yield Segment(printable(segment.text), segment.style)


def literal(text: object, style: str = "") -> Text:
    """``str(text)`` as Text no console parses (markup and emoji codes stay as typed), cleaned of
    control characters before rich measures it; for table cells and titles that hold data."""
    return Text(printable(str(text)), style=style)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line of plain ``str`` and ``(text, style)`` parts, each literal:
    ``styled("training ", (pipeline, "bold"), f" on {path}")``."""
    return Text.assemble(*(literal(part) if isinstance(part, str) else literal(*part) for part in parts))


def label_line(label: str, style: str, message: str) -> Text:
    """``label`` in ``style``, a space, then ``message`` literally: ``label_line("error:", "bold red", message)``."""
    return styled((label, style), " ", message)


def note_line(note: str) -> Text:
    """A yellow ``note:`` and the note: what a dataset conversion changed, said before a command goes on."""
    return label_line("note:", "yellow", note)
