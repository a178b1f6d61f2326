"""Imports flow one way and never in a circle (docs/architecture.md, "Layers").

Every ``import`` in ``detkit`` is read from the source, at module level or inside a function alike
(a function-local import is still a dependency; it only hides a cycle from Python, not from a
reader), and checked against the table of what each part may import. The module graph must have
no cycle either, inside a part as between parts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "detkit"

# Each part of detkit and the parts it may import (beside itself): the layers of the architecture.
# cli -> engine -> checkpoint -> pipelines -> modeling -> ops/structures, with data, evaluation,
# proposals, viz, config and io below the engine.
ALLOWED: dict[str, set[str]] = {
    "__main__": {"cli"},
    "package": {"api", "version"},  # detkit/__init__.py: ``detkit.load`` and ``detkit.__version__``
    "api": {"engine", "data", "structures", "errors", "version"},  # the Python API, beside the CLI
    "cli": {
        "engine",
        "checkpoint",
        "pipelines",
        "config",
        "data",
        "evaluation",
        "viz",
        "io",
        "download",
        "zoo",
        "errors",
        "version",
    },
    "engine": {
        "export",
        "checkpoint",
        "pipelines",
        "modeling",
        "ops",
        "structures",
        "data",
        "evaluation",
        "proposals",
        "viz",
        "config",
        "io",
        "download",
        "zoo",
        "errors",
        "version",
    },
    # exported graphs of the detectors, their files and runtimes: below the engine, above the pipelines
    "export": {"pipelines", "modeling", "ops", "structures", "errors"},
    "checkpoint": {"pipelines", "modeling", "config", "io", "download", "zoo", "errors", "version"},
    "zoo": {"download", "errors"},  # pretrained detectors by name: their URLs and torchvision's metadata
    "pipelines": {"modeling", "ops", "structures", "proposals", "config", "download", "errors"},
    "modeling": {"ops", "structures", "proposals", "config", "download", "errors"},
    "data": {"ops", "structures", "config", "io", "errors", "version"},
    "evaluation": {"structures", "io", "errors"},
    "proposals": {"data", "config", "io", "errors"},  # selective search reads the images it segments
    "viz": {"structures", "io", "errors"},
    "ops": {"structures", "errors"},
    "structures": set(),
    "config": {"io", "errors"},
    "io": {"errors"},
    "download": {"errors"},  # the one module that opens network connections
    "errors": set(),
    "version": set(),
}


def part_of(module: str) -> str:
    """``detkit.engine.train`` -> ``engine``; the top-level modules are parts of their own."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"  # detkit/__init__.py
    return parts[1].removesuffix(".py")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The detkit modules ``path`` imports, resolved to the deepest module that exists."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("detkit"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.startswith("detkit"):
                found.update(_resolve(f"{base}.{alias.name}") or base for alias in node.names)
    return {_resolve(name) or name for name in found}


def _resolve(name: str) -> str | None:
    """``name`` if it is a module or package of detkit, else None (it names an attribute)."""
    path = ROOT.parent / Path(*name.split("."))
    return name if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() else None


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(ROOT.rglob("*.py"))}


def test_every_import_goes_down_the_layers():
    violations = []
    for module, imported in graph().items():
        source = part_of(module)
        for target in sorted(imported):
            destination = part_of(target)
            if destination != source and destination not in ALLOWED[source]:
                violations.append(f"{module} -> {target} ({source} may not import {destination})")
    assert violations == [], "\n".join(violations)


def test_the_module_graph_has_no_cycle():
    edges = graph()
    cycles = []
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if target == module or target not in edges:
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == [], "\n".join(cycles)


def test_every_part_is_in_the_table():
    assert {part_of(module) for module in graph()} <= set(ALLOWED)
