"""Build configs from dicts, files and ``--set a.b=c`` strings, checked against the dataclass types.

An unknown key is an error naming the nearest valid key; a value that does not parse as the
field's type is an error naming the expected type; a value outside what the field takes (its
``Annotated`` constraints, ``constraints.py``) is an error saying what it must be, e.g.
``solver.lr=-1.0 is out of range; must be > 0``. ``check_config`` checks a config built in code.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import os
import typing
from pathlib import Path
from typing import Any, TypeVar, cast

from detkit.config.constraints import Below, Constraint, field_hints, label, split_annotation
from detkit.config.legacy import moved_to
from detkit.errors import ConfigError, quoted

# Configs are a few hundred bytes; anything near this is not one (and YAML parses slowly in Python).
MAX_CONFIG_BYTES = 1 << 20
# The longest tuple a field takes: config tuples hold a few sizes or levels, never thousands (a YAML
# file of aliases could otherwise hand a nested field billions of elements to check).
MAX_SEQUENCE = 256

T = TypeVar("T")  # a config dataclass: the functions below return one of the type they are given


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (lists for tuples) that JSON, YAML and ``torch.load(weights_only=True)`` accept."""
    values: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return values


def without_keys(values: Any, dotted_keys: tuple[str, ...]) -> Any:
    """A copy of the nested dict ``values`` without the ``dotted_keys`` (``"model.proposals.cache_dir"``),
    for reading a file's config while ignoring what it says of those fields; non-dicts are returned as
    they are (``update_config`` refuses them)."""
    if not isinstance(values, dict):
        return values
    heads: dict[str, list[str]] = {}
    for key in dotted_keys:
        head, _, rest = key.partition(".")
        heads.setdefault(head, []).append(rest)
    kept = {}
    for key, value in values.items():
        rests = heads.get(key) if isinstance(key, str) else None
        if rests is None:
            kept[key] = value
        elif all(rests):  # only keys below this one are dropped
            kept[key] = without_keys(value, tuple(rests))
    return kept


def config_from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Instantiate dataclass ``cls`` from a (possibly partial) nested dict; missing fields keep their defaults."""
    return update_config(cls(), values, where)


def update_config(cfg: T, values: dict[str, Any], where: str = "") -> T:
    """``cfg`` with the nested ``values`` applied, each checked against its field's type and constraints."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys to values, got {type(values).__name__}")
    cls: type = type(cfg)
    hints = field_hints(cls)
    changes = {}
    for key, value in values.items():
        if not isinstance(key, str):
            example = next(iter(hints))
            raise ConfigError(f"{where or 'config'}: key {quoted(key)} is not a name; keys are words such as {example}")
        path = f"{where}.{key}" if where else key
        if key not in hints:
            moved = moved_to(path)
            hint = f"; it moved to {moved!r}" if moved else _suggestion(key, hints, where)
            raise ConfigError(f"unknown config key {_key(path)}{hint}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            changes[key] = update_config(current, value, path)
        else:
            changes[key] = coerce(value, hints[key], path)
    return cast(T, dataclasses.replace(cast(Any, cfg), **changes))  # T is a config dataclass


def check_config(cfg: Any, where: str = "") -> None:
    """Raise ConfigError unless every value of ``cfg`` (nested dataclasses included) is of its field's
    type and inside its constraints, and every ``Below`` relation between fields holds. For configs
    built in code (presets, command-line options); files and ``--set`` are checked as they are read."""
    cls: type = type(cfg)
    hints = field_hints(cls)
    for item in dataclasses.fields(cfg):
        value, path = getattr(cfg, item.name), f"{where}.{item.name}" if where else item.name
        base, _ = split_annotation(hints[item.name])
        if dataclasses.is_dataclass(base):
            if type(value) is not base:
                name = cast(type, base).__name__  # a field's annotation: a class, not an instance
                raise ConfigError(f"{path}: expected a {name}, got {quoted(value)}")
            check_config(value, path)
        else:
            coerce(value, hints[item.name], path)
    for item in dataclasses.fields(cfg):
        value, path = getattr(cfg, item.name), f"{where}.{item.name}" if where else item.name
        for relation in split_annotation(hints[item.name])[1]:
            problem = relation.problem(value, getattr(cfg, relation.other)) if isinstance(relation, Below) else None
            if problem:
                raise ConfigError(f"{label(path, value)} {problem}")


class _SetNumber:
    """A ``--set`` value that parsed as a number, with the text typed: a string field takes the text."""

    def __init__(self, value: int | float, text: str) -> None:
        self.value, self.text = value, text


def apply_overrides(cfg: T, assignments: list[str]) -> T:
    """Apply ``["model.rpn.nms_thresh=0.6", ...]``; values are parsed as Python/YAML literals."""
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {quoted(assignment)}: expected KEY=VALUE, e.g. --set solver.lr=0.01")
        nested: dict[str, Any] = {}
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        value = parse_literal(raw.strip())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _SetNumber(value, raw.strip())
        node[parts[-1]] = value
        cfg = update_config(cfg, nested)
    return cfg


def load_config_file(cfg: T, path: str | Path) -> T:
    """Apply a YAML or JSON file of nested overrides on top of ``cfg``."""
    path = Path(path)
    text = _read_config_text(path)
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            # libyaml's parser where installed: the same values, 3x faster on a file near the size cap.
            values = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except Exception as error:  # noqa: BLE001 - any parse failure is the user's file
        raise ConfigError(f"{_file(path)}: cannot parse config ({_parse_problem(error)}); fix the syntax") from None
    try:
        return update_config(cfg, values)
    except ConfigError as error:
        raise ConfigError(f"{_file(path)}: {error}") from None


def _read_config_text(path: Path) -> str:
    """The file's text, refused (one line naming it) unless it is a regular UTF-8 file of at most
    MAX_CONFIG_BYTES (``io.open_regular``: a FIFO in its place is named, not waited on)."""
    from detkit.io import FileRefused, open_regular

    shown = _file(path)
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            data = b"" if size > MAX_CONFIG_BYTES else handle.read(MAX_CONFIG_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the path
        raise ConfigError(f"{shown}: config file not found; pass an existing .yaml or .json file to --config") from None
    except FileRefused as refused:
        raise ConfigError(f"{shown}: {refused.strerror}; pass a .yaml or .json file to --config") from None
    except OSError as error:
        raise ConfigError(
            f"{shown}: cannot read the config file ({error.strerror or error}); check its permissions"
        ) from None
    size = max(size, len(data))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{shown}: {size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES // 2**20} MiB); "
            "pass a YAML or JSON file of overrides"
        )
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is not content
    except UnicodeDecodeError as error:
        where = f"byte 0x{data[error.start]:02x} at offset {error.start}"
        raise ConfigError(f"{shown}: not UTF-8 text ({where}); save it as UTF-8") from None


def _parse_problem(error: Exception) -> str:
    """One line: the parser's complaint and where, without the multi-line snippet YAML adds."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        problem = f"{getattr(error, 'problem', None) or error} at line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(error, json.JSONDecodeError):
        problem = f"{error.msg} at line {error.lineno}, column {error.colno}"
    else:
        problem = str(error)
    return f"{error.__class__.__name__}: {_one_line(problem)}"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _file(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else quoted(text)


def _key(path: str) -> str:
    return repr(path) if len(path) <= 100 else quoted(path)


def parse_literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw  # a bare word is a string


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """``value`` as ``annotation`` (int, float, bool, str, tuple[...], each maybe ``Annotated`` with
    constraints), or ConfigError. Nothing is converted to a string but a number typed on ``--set``."""
    base, metadata = split_annotation(annotation)
    if isinstance(value, _SetNumber):
        value = value.text if base is str else value.value
    converted = _convert(value, base, path)
    for constraint in metadata:
        if isinstance(constraint, Constraint):
            problem = constraint.problem(converted)
            if problem:
                raise ConfigError(f"{label(path, converted, metadata)} {problem}")
    return converted


def _convert(value: Any, base: Any, path: str) -> Any:
    if typing.get_origin(base) is tuple:
        return _coerce_tuple(value, typing.get_args(base), path)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {quoted(value)}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {quoted(value)}")
    if base is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {quoted(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{path}={quoted(value)} is not a finite number; give one such as 0.5")
        return number
    if base is str:
        if isinstance(value, str):
            return value
        hint = "" if isinstance(value, (list, tuple, dict, set)) else "; quote it"  # YAML read 2024 as a number
        raise ConfigError(f"{path}: expected a string, got {quoted(value)}{hint}")
    raise ConfigError(f"{path}: cannot set a value of type {base}")


def _coerce_tuple(value: Any, args: tuple[Any, ...], path: str) -> tuple[Any, ...]:
    variadic = len(args) == 2 and args[1] is Ellipsis
    nested = variadic and typing.get_origin(split_annotation(args[0])[0]) is tuple
    if isinstance(value, (int, float, str)) and not nested:
        value = (value,)  # a single number where a tuple of numbers is expected
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {quoted(value)}")
    if len(value) > MAX_SEQUENCE:
        raise ConfigError(f"{path}: {len(value)} values is too many; a config list holds at most {MAX_SEQUENCE}")
    if variadic:
        return tuple(coerce(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
    return tuple(coerce(item, arg, f"{path}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))


def _suggestion(key: str, hints: dict[str, Any], where: str) -> str:
    close = difflib.get_close_matches(key, list(hints), n=1, cutoff=0.5) if len(key) <= 100 else []
    if close:
        return f"; did you mean {(where + '.' if where else '') + close[0]!r}?"
    return f"; valid keys{' under ' + repr(where) if where else ''}: {', '.join(hints)}"
