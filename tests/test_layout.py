"""The shape of api/: imports flow one way, the transport stays a transport, modules stay small."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

API = Path(__file__).resolve().parent.parent / "api"
MAX_LINES = 320
# What api/realtime/ (the transport, no database) may never import.
NOT_IN_TRANSPORT = ("api.db", "api.models", "api.items", "api.auth", "api.routes", "sqlalchemy")


def module_name(path: Path) -> str:
    parts = path.relative_to(API.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(API.rglob("*.py"))}


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    package = module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from api.realtime import protocol` imports the module api.realtime.protocol.
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base


def graph() -> dict[str, set[str]]:
    return {
        name: {dep for dep in imported(path) if dep in MODULES and dep != name}
        for name, path in MODULES.items()
    }


def test_there_is_no_import_cycle_in_api() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_transport_imports_no_database_auth_or_routes() -> None:
    offending = {
        name: sorted(
            dep
            for dep in imported(path)
            if any(dep == n or dep.startswith(n + ".") for n in NOT_IN_TRANSPORT)
        )
        for name, path in MODULES.items()
        if name.startswith("api.realtime")
    }
    assert {name: deps for name, deps in offending.items() if deps} == {}


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
