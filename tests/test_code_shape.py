"""The package's import graph: no module imports itself back, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import debiascl

PACKAGE = Path(debiascl.__file__).parent


def module_name(path: Path) -> str:
    """``debiascl.x.y`` of a source file (a package's ``__init__`` is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements under ``node``, except those in ``if TYPE_CHECKING:`` blocks."""
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        return [found for child in node.orelse for found in _import_nodes(child)]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [node]
    return [found for child in ast.iter_child_nodes(node) for found in _import_nodes(child)]


def runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports when it runs (``TYPE_CHECKING`` aside).

    ``from pkg import sub`` counts as importing ``pkg.sub`` when ``sub`` is a module.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
        subs = {f"{base}.{alias.name}" for alias in node.names} & modules
        found |= subs or {base}
    return (found & modules) - {name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in files}
    return {module_name(path): runtime_imports(path, modules) for path in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert graph["debiascl.jtt"] >= {"debiascl.trainer"}
    assert "debiascl.jtt" not in graph["debiascl.train"]
    assert cycles(graph) == []


def test_no_function_imports_a_module_of_the_package() -> None:
    """Imports inside functions (which could hide a cycle) are for optional heavy libraries only,
    and for the command line's sub-commands, which import the heavy modules when they run (the
    top layer: nothing imports it, and :func:`import_graph` counts their imports)."""
    local = [
        f"{module_name(path)}.{function.name}: {ast.unparse(node)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not module_name(path).startswith("debiascl.cli")
        for function in ast.walk(ast.parse(path.read_text()))
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom | ast.Import)
        and (
            getattr(node, "level", 0)
            or any(
                name.split(".")[0] == "debiascl"
                for name in (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
            )
        )
    ]
    assert local == []
