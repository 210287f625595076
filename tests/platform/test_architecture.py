"""The shape of the house, checked on the source (AST): no import cycles between modules, and
the arrows between layers go one way (docs/architecture.md).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: an import
moved into a function body to dodge a loop is still a loop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "graphql_schema", "resolvers", "db")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (``from pkg import mod`` names the module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _imports_from(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m == source or m.startswith(source + ".")
        for t in targets
        if t == target or t.startswith(target + ".")
    )


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    graph = import_graph()
    assert "app.trading.engine" in graph and "graphql_schema.trading.types" in graph
    assert cycles(graph) == []


def test_types_never_import_resolvers():
    """Only the assembly (schema.py) and the endpoint (gateway/: the context builds the
    loaders) look at resolvers; types, inputs and results never do."""
    edges = _imports_from(import_graph(), "graphql_schema", "resolvers")
    assert "graphql_schema.schema -> resolvers.queries" in edges
    assembly = ("graphql_schema.schema ", "graphql_schema.gateway.")
    assert [e for e in edges if not e.startswith(assembly)] == []


def test_domains_never_import_graphql():
    graph = import_graph()
    process = {"app.asgi", "app.__main__"}  # assemble the process around the endpoint
    bad = [
        edge
        for layer in ("graphql_schema", "resolvers")
        for edge in _imports_from(graph, "app", layer)
        if edge.split(" -> ")[0] not in process
    ]
    assert bad == []


def test_core_and_tables_import_nothing_above_them():
    graph = import_graph()
    core_out = [e for e in _imports_from(graph, "app.core", "app") if "-> app.core" not in e]
    assert core_out == []
    db_out = [e for e in _imports_from(graph, "db", "app") if "-> app.core" not in e]
    assert db_out == []
