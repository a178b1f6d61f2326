"""Config keys earlier detkit versions wrote that have moved: read from a stored config (a checkpoint,
a run's ``config.json``) under their new name, so a model trained before the move still loads."""

from __future__ import annotations

from typing import Any

# old dotted key -> new dotted key
MOVED_KEYS: dict[str, str] = {
    # 0.1.0: the engine weighs the losses (SolverConfig.loss_weights), not the YOLO head.
    "model.yolo.box_loss_weight": "solver.loss_weights.loss_box",
}


def upgrade(values: Any) -> Any:
    """A copy of a stored config dict with every moved key under its new name (non-dicts as they are)."""
    if not isinstance(values, dict):
        return values
    upgraded = _copy(values)
    for old, new in MOVED_KEYS.items():
        found, value = _pop(upgraded, old.split("."))
        if found:
            _put(upgraded, new.split("."), value)
    return upgraded


def moved_to(key: str) -> str | None:
    """Where ``key`` went, for the message of a ``--set`` or config file still using it."""
    return MOVED_KEYS.get(key)


def _copy(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _copy(value) if isinstance(value, dict) else value for key, value in values.items()}


def _pop(values: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return False, None
        node = child
    if parts[-1] not in node:
        return False, None
    return True, node.pop(parts[-1])


def _put(values: dict[str, Any], parts: list[str], value: Any) -> None:
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node.setdefault(parts[-1], value)  # a value under the new name wins
