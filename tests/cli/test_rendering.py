"""Hostile strings from data files and checkpoints through every renderer the CLI has.

Category names, file names, notes and error messages are data: none of them may crash a command
(``[/x]`` once raised MarkupError in ``detkit eval``), become markup (``[link=...]``), an emoji
(``:warning:``) or reach the terminal as a control sequence (``\\x1b[2J`` clears the screen).
What the user typed must be what they see.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.control import Control
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from detkit.cli import common
from detkit.cli.console import SafeConsole, label_line, literal, note_line, printable, styled
from detkit.cli.data_check import findings_table, render_check, render_conversion
from detkit.cli.main import app
from detkit.cli.progress import RichProgress
from detkit.cli.tables import detections_table, metrics_table, per_class_table
from detkit.data.check import CheckReport, Finding
from detkit.data.formats.report import ConversionReport, SplitSummary
from detkit.engine import events
from detkit.errors import DataError, TrainingInterrupted
from detkit.structures import Detections

PIECES = (
    "[/x]",
    "[link=http://x]a[/link]",
    "[bold",
    "[bold]",
    "[/]",
    "]",
    "[",
    "[[",
    ":warning:",
    "\x1b[2J",
    "\x1b]8;;http://x\x1b\\",
    "\x1b[1A",
    "\x1b[31m",
    "\x07",
    "\r",
    "\b",
    "\x00",
    "\x9b",
    "\x9b2J",
    "\x85",
    "\x7f",
    "\t",
    "\n",
    " ",
    "é",
    "类别",
    "🙂",
    "e\u0301",
)
LONG = "[/x]\x1b[2J:warning:" * 300  # 5,700 characters in one cell
HOSTILE = st.one_of(
    st.just(LONG),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), min_size=1, max_size=10).map("".join),
)
FEW = settings(max_examples=20, deadline=None)

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what no byte from data may be, \n and \t aside
# What rich itself writes to a terminal: SGR styles, and the live display's hide/show cursor,
# cursor up, erase line and carriage return. Everything else that is a control character came from data.
RICH_OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]|\x1b\[[0-9]*[AK]|\r")


def _terminal() -> SafeConsole:
    """A SafeConsole writing what a colour terminal would get, wide and tall enough that nothing wraps or is cropped."""
    return SafeConsole(file=io.StringIO(), force_terminal=True, color_system="standard", width=20_000, height=2_000)


def _assert_literal(output: str, *shown: str) -> None:
    """No injected sequence, no control character but rich's own, and every visible word of ``shown`` as typed
    (whitespace aside: a table folds a title longer than the table onto several lines)."""
    assert "\x1b[2J" not in output and "\x1b]8" not in output and "\x9b" not in output
    bare = RICH_OWN.sub("", output)
    assert not CONTROL.search(bare), repr(CONTROL.findall(bare)[:5])
    flat = "".join(bare.split())
    for text in shown:
        for word in printable(text).split():
            assert word in flat, (word, bare[:500])


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Every renderer: prints on ``console`` with ``text`` wherever data goes; returns what must be seen.


def _per_class(console: Console, text: str) -> list[str]:
    console.print(per_class_table({text: 0.5, "cat": 0.25}, {text: 0.75}, title=text))
    return [text]


def _metrics(console: Console, text: str) -> list[str]:
    console.print(metrics_table({"AP": 0.5, "AP50": 0.75}, title=text))
    return [text]


def _detections(console: Console, text: str) -> list[str]:
    found = Detections(
        boxes=torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 2), scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1])
    )
    console.print(detections_table(f"{text}: 2 detections", found, [text, "b"]))
    return [text]


def _findings(console: Console, text: str) -> list[str]:
    console.print(findings_table([Finding("missing_image", "error", text, 3, (text, f"image 7: {text}"))]))
    return [text]


def _check(console: Console, text: str) -> list[str]:
    findings = (Finding("missing_image", "error", text, 1, (text,)), Finding("tiny_box", "warning", "small", 2, ()))
    report = CheckReport(Path("/data") / text, Path("/images") / text, 4, 5, 6, findings)
    render_check(console, report)
    verdict = "errors: missing_image (1); warnings: tiny_box (2)"
    return [str(report.annotation_file), str(report.image_dir), text, verdict]


def _conversion(console: Console, text: str) -> list[str]:
    split = SplitSummary(text, 1, 2, (text, "b"), Path("/images") / text)
    render_conversion(console, ConversionReport(Path("/out") / text, "yolo", [split], [text]))
    return [str(Path("/out") / text), str(split.image_dir), text]


def _progress(console: Console, text: str) -> list[str]:
    with RichProgress(console) as progress:
        progress(events.StageStarted("train", total=10, description=text))
        progress(events.StageAdvanced("train", 3, {"loss": 0.5}))
        progress(events.Notice(text))
        progress(events.EpochFinished(1, 2, {"loss": 0.3}, {"AP": 0.1, "AP50": 0.2}, is_best=True, seconds=3.0))
        progress(events.StageFinished("train"))
    return [text, "epoch 1/2", "warning:"]


RENDERERS = [_per_class, _metrics, _detections, _findings, _check, _conversion, _progress]


@pytest.mark.parametrize("render", RENDERERS, ids=lambda render: render.__name__.strip("_"))
@FEW
@given(text=HOSTILE)
def test_hostile_strings_print_literally_and_inject_nothing(render, text):
    console = _terminal()
    shown = render(console, text)
    _assert_literal(console.file.getvalue(), *shown)


def test_the_known_attacks_show_as_typed():
    console = _terminal()
    names = ["[/x]", "[link=http://evil.example]click[/link]", ":warning:", "a\x1b[2Jb", "c\x9b2Jd"]
    console.print(per_class_table(dict.fromkeys(names, 0.5), {}, title="per-class AP"))
    output = console.file.getvalue()
    _assert_literal(output, *names)
    assert "[/x]" in output and "[link=http://evil.example]click[/link]" in output and ":warning:" in output
    assert "⚠" not in output and "a\u241b[2Jb" in output and "c\ufffd2Jd" in output


# ---------------------------------------------------------------------------------------------
# The error contract: one literal line, whatever the message holds.


def _run_reporting(error: BaseException, verbose: bool = False) -> tuple[int, str]:
    """``error`` raised inside a ``reports_errors`` command; its exit code and what stderr got."""
    console = SafeConsole(file=io.StringIO(), force_terminal=True, color_system="standard", soft_wrap=True)

    @common.reports_errors
    def command() -> None:
        raise error

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "error_console", console)
        patch.setattr(common.state, "verbose", verbose)
        with pytest.raises(typer.Exit) as stopped:
            command()
    return stopped.value.exit_code, console.file.getvalue()


@FEW
@given(text=HOSTILE)
def test_a_data_error_with_any_message_is_one_literal_line(text):
    exit_code, output = _run_reporting(DataError(text))
    assert exit_code == 2 and output.count("\n") == 1
    assert output.startswith("\x1b[1;31merror:\x1b[0m ")  # detkit's own colour survives
    _assert_literal(output, _one_line(text))


@FEW
@given(text=HOSTILE)
def test_a_bug_with_any_message_is_one_literal_line(text):
    exit_code, output = _run_reporting(ValueError(text))
    assert exit_code == common.INTERNAL_ERROR_EXIT_CODE and output.count("\n") == 1
    _assert_literal(output, _one_line(f"internal error (ValueError: {text[:300]}); rerun with --verbose"))


def test_the_verbose_traceback_and_the_interrupted_line_are_literal():
    hostile = "[/x] \x1b[2J [link=http://x]a[/link] :warning: \x9b"
    exit_code, output = _run_reporting(DataError(hostile), verbose=True)
    assert exit_code == 2 and "Traceback" in output and "raise error" in output
    _assert_literal(output, hostile, "detkit.errors.DataError:")
    exit_code, output = _run_reporting(TrainingInterrupted(hostile))
    assert exit_code == 130 and output.startswith("\x1b[33minterrupted:\x1b[0m ") and output.count("\n") == 1
    _assert_literal(output, hostile)


def test_the_shared_consoles_are_safe():
    assert isinstance(common.console, SafeConsole) and isinstance(common.error_console, SafeConsole)
    assert common.error_console.stderr and common.error_console.soft_wrap and not common.console.stderr


# ---------------------------------------------------------------------------------------------
# The console and the helpers themselves.


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_printable_is_idempotent_one_for_one_and_keeps_newlines_and_tabs(text):
    shown = printable(text)
    assert printable(shown) == shown and len(shown) == len(text)  # one cell per character: widths stay right
    assert not CONTROL.search(shown)
    assert [i for i, c in enumerate(text) if c in "\n\t"] == [i for i, c in enumerate(shown) if c in "\n\t"]
    assert all(before == after or CONTROL.match(before) for before, after in zip(text, shown))


def test_markup_and_emoji_stay_off_even_when_a_call_asks():
    console = _terminal()
    console.print("[bold]x[/] [/x] :warning:", markup=True, emoji=True)
    assert console.file.getvalue() == "[bold]x[/] [/x] :warning:\n"
    with pytest.raises(TypeError):
        SafeConsole(markup=True)


class _RawSegments:
    """A renderable that hands rich a raw segment and a control one, as a third-party renderable could."""

    def __rich_console__(self, console, options):
        yield Segment("raw\x1b[2Jsegment\x07")
        yield Control.move(0, -1)  # rich's own cursor move (a control segment): passes as it is
        yield Segment("\n")


def test_the_render_backstop_cleans_text_nobody_cleaned_at_any_depth():
    console = _terminal()
    table = Table(title=Text("title\x1b]8;;http://x\x1b\\"))
    table.add_row(Text("cell\x1b[2J\x9b"), Panel(Text("nested\x1b[2J")))
    console.print(table)
    console.print(_RawSegments())
    output = console.file.getvalue()
    _assert_literal(output, "title\x1b]8;;http://x\x1b\\", "raw\x1b[2Jsegment\x07")
    # Measured before it was cleaned (a control character counts 0 cells), so the cell keeps its width and
    # crops one cell per control character: the layout holds, and what shows is visible.
    assert "cell\u241b[2" in output and "nested\u241b" in output
    assert "\x1b[1A" in output


def test_helpers_are_literal_on_a_plain_rich_console_and_keep_their_styles():
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=200)  # markup on
    console.print(label_line("error:", "bold red", "[/x] :warning: \x1b[2J"))
    console.print(styled("training ", ("[bold]", "bold"), " on ", "[/]"))
    console.print(per_class_table({"[/x]": 0.5}, {}, title="[/x] per class"))
    console.print(literal("[link=http://x]a[/link]", style="green"))
    console.print(note_line(":warning: [/]"))
    output = console.file.getvalue()
    assert "\x1b[1;31merror:\x1b[0m [/x] :warning: \u241b[2J" in output
    assert "training \x1b[1m[bold]\x1b[0m on [/]" in output
    assert re.search(r"\x1b\[3m *\[/x\] per class", output)  # the title keeps rich's italic
    assert "\x1b[32m[link=http://x]a[/link]" in output and "\x1b[33mnote:\x1b[0m :warning: [/]" in output
    _assert_literal(output)


# ---------------------------------------------------------------------------------------------
# End to end: the commands that crashed.

NAMES = ["[/x]", "[link=http://evil.example]click[/link]", ":warning: a\x1b[2Jb", "c\x9b2Jd\x07"]


def _hostile_coco(folder: Path) -> Path:
    """A one-image COCO file whose categories and file name are hostile, with a perfect results file beside it."""
    (folder / "images").mkdir()
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": i + 1, "bbox": [20 * i, 10, 15, 15], "area": 225, "iscrowd": 0}
        for i in range(len(NAMES))
    ]
    dataset = {
        "images": [{"id": 1, "file_name": "photo\x1b[2J[/x].png", "width": 100, "height": 100}],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(NAMES)],
    }
    results = [{"image_id": 1, "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9} for a in annotations]
    (folder / "gt.json").write_text(json.dumps(dataset))
    (folder / "results.json").write_text(json.dumps(results))
    return folder / "gt.json"


def test_eval_and_data_check_print_hostile_category_and_file_names_literally(tmp_path):
    annotations = _hostile_coco(tmp_path)
    runner = CliRunner()
    metrics = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--coco",
            str(annotations),
            "--images",
            str(tmp_path / "images"),
            "--results",
            str(tmp_path / "results.json"),
            "--out",
            str(metrics),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(metrics.read_text())
    assert report["stats"]["AP"] == pytest.approx(1.0) and set(report["per_class_ap"]) == set(NAMES)
    assert not CONTROL.search(result.output) and "\x1b" not in result.output  # not a terminal: not even styles
    _assert_literal(result.output, *NAMES)
    result = runner.invoke(app, ["data", "check", str(annotations), "--images", str(tmp_path / "images")])
    assert result.exit_code == 2 and "missing_image (1)" in result.output
    assert not CONTROL.search(result.output) and "\x1b" not in result.output
    assert "photo\u241b[2J[/x].png" in result.output
