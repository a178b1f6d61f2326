"""Build configs from dicts, files and ``--set a.b=c`` strings, checked against the dataclass types.

An unknown key is an error naming the nearest valid key; a value that does not parse as the
field's type is an error naming the expected type.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any

from detkit.errors import ConfigError


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (lists for tuples) that JSON, YAML and ``torch.load(weights_only=True)`` accept."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) nested dict; missing fields keep their defaults."""
    return update_config(cls(), values, where)


def update_config(cfg: Any, values: dict[str, Any], where: str = "") -> Any:
    """``cfg`` with the nested ``values`` applied, each checked against its field's type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys to values, got {type(values).__name__}")
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(f"unknown config key {path!r}{_suggestion(key, hints, where)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            changes[key] = update_config(current, value, path)
        else:
            changes[key] = coerce(value, hints[key], path)
    return dataclasses.replace(cfg, **changes)


def apply_overrides(cfg: Any, assignments: list[str]) -> Any:
    """Apply ``["model.rpn.nms_thresh=0.6", ...]``; values are parsed as Python/YAML literals."""
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set solver.lr=0.01")
        nested: dict[str, Any] = {}
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_literal(raw.strip())
        cfg = update_config(cfg, nested)
    return cfg


def load_config_file(cfg: Any, path: str | Path) -> Any:
    """Apply a YAML or JSON file of nested overrides on top of ``cfg``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass an existing .yaml or .json file to --config")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as error:  # noqa: BLE001 - any parse failure is the user's file
        raise ConfigError(f"{path}: cannot parse config ({error.__class__.__name__}: {error}); fix the syntax") from None
    try:
        return update_config(cfg, values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def parse_literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # a bare word is a string


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """Convert ``value`` to ``annotation`` (int, float, bool, str, tuple[...]) or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(annotation), path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if annotation is str:
        return str(value)
    raise ConfigError(f"{path}: cannot set a value of type {annotation}")


def _coerce_tuple(value: Any, args: tuple, path: str) -> tuple:
    if isinstance(value, (int, float, str)) and not (len(args) == 2 and args[1] is Ellipsis and typing.get_origin(args[0]) is tuple):
        value = (value,)  # a single number where a tuple of numbers is expected
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
    return tuple(coerce(item, arg, f"{path}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))


def _suggestion(key: str, hints: dict[str, Any], where: str) -> str:
    close = difflib.get_close_matches(key, list(hints), n=1, cutoff=0.5)
    if close:
        return f"; did you mean {(where + '.' if where else '') + close[0]!r}?"
    return f"; valid keys{' under ' + repr(where) if where else ''}: {', '.join(hints)}"
