"""Atomic folder output and JSON reading errors."""

from __future__ import annotations

import pytest

from detkit.errors import DataError
from detkit.io import atomic_directory, read_json


def test_atomic_directory_appears_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not out.exists() and tmp.parent == tmp_path
    assert (out / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("conversion failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_only_when_asked(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic_directory(out):
        pass
    with pytest.raises(RuntimeError), atomic_directory(out, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("failed")
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # a failed replacement keeps the old output
    with atomic_directory(out, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    ("text", "message"), [("[" * 100_000, "nested too deeply"), ("1" * 5000, "unreadable annotation file")]
)
def test_json_python_refuses_is_a_data_error(tmp_path, text, message):
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(DataError, match=message):
        read_json(tmp_path / "a.json", what="annotation file", missing_fix="")
