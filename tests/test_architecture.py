"""The shape of the code: layers import one way, the download engine stands alone, front ends only translate."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from polar_mcp.failure import Failure

SRC = Path(__file__).resolve().parents[1] / "src" / "polar_mcp"
FRONT_ENDS = ("polar_mcp.server", "polar_mcp.cli", "polar_mcp.commands", "polar_mcp.http")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every `polar_mcp` import in a module, at any depth (lazy imports count), with the names taken."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polar_mcp"):
            names = [alias.name for alias in node.names]
            if node.module == "polar_mcp":
                # `from polar_mcp import present` imports the module polar_mcp.present.
                found.extend((f"polar_mcp.{n}", []) for n in names if (SRC / n).with_suffix(".py").exists())
            else:
                found.append((node.module, names))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names if alias.name.startswith("polar_mcp"))
    return found


GRAPH = {
    _module_name(path): {module for module, _ in _imports(path) if module != _module_name(path)}
    for path in SRC.rglob("*.py")
}


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    def reaches(start: str, goal: str) -> bool:
        seen, pending = set[str](), [start]
        while pending:
            current = pending.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                pending.extend(GRAPH.get(current, ()))
        return False

    cycles = sorted((a, b) for a, deps in GRAPH.items() for b in deps if b in GRAPH and reaches(b, a))
    assert cycles == []


def test_the_download_engine_depends_only_on_small_helpers() -> None:
    engine = {"polar_mcp.download", "polar_mcp.download_record", "polar_mcp.download_failures"}
    helpers = {"polar_mcp.untrusted", "polar_mcp.failure"}
    assert all(GRAPH[module] <= engine | helpers for module in engine)


def test_the_sync_engine_depends_only_on_the_download_engine_and_polars_models() -> None:
    engine = {"polar_mcp.download", "polar_mcp.download_record", "polar_mcp.download_failures"}
    helpers = {"polar_mcp.untrusted", "polar_mcp.failure", "polar_mcp.polar.models"}
    assert GRAPH["polar_mcp.sync"] <= engine | helpers


def test_the_double_imports_nothing_from_the_rest_of_polar_mcp() -> None:
    outside = {
        (module, dep)
        for module, deps in GRAPH.items()
        if module.startswith("polar_mcp.double")
        for dep in deps
        if not dep.startswith("polar_mcp.double")
    }
    assert outside == set()


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_a_front_end_takes_only_types_and_error_classes_from_the_polar_layer(front_end: str) -> None:
    path = SRC / (front_end.removeprefix("polar_mcp.").replace(".", "/") + ".py")
    taken = [
        (module, name) for module, names in _imports(path) if module.startswith("polar_mcp.polar") for name in names
    ]
    for module, name in taken:
        value = getattr(importlib.import_module(module), name)
        is_error = isinstance(value, type) and issubclass(value, Failure)
        is_protocol = isinstance(value, type) and getattr(value, "_is_protocol", False)
        assert is_error or is_protocol, f"{front_end} takes {module}.{name}, which is neither an error nor a type"
