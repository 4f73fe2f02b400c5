"""The shape rules of the package's source (README, "Design"; checked with ``ast``).

- no import cycle: no module imports itself back, directly or through others;
- no function-local import of a debiascl module, except in :mod:`debiascl.cli` (whose commands
  import the heavy modules when they run, so that ``debiascl --help`` imports no torch);
- no module over :data:`MAX_MODULE_LINES` lines;
- no function over :data:`MAX_FUNCTION_LINES` lines, or with more than :data:`MAX_PARAMETERS`
  parameters (``self`` and ``cls`` aside), unless a line of its docstring starts with
  :data:`LONG_REASON` or :data:`MANY_PARAMETERS_REASON` and says why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import debiascl

PACKAGE = Path(debiascl.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
LONG_REASON = "Long because:"
MANY_PARAMETERS_REASON = "Many parameters because:"


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
    assert graph["debiascl.jtt"] >= {"debiascl.training.loop"}
    assert "debiascl.jtt" not in graph["debiascl.training.run"]
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


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method of a module, nested ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The names a call may give, ``*args`` and ``**kwargs`` included, ``self``/``cls`` not."""
    arguments = function.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return [name for name in names if name not in ("self", "cls")]


def _gives_reason(function: ast.FunctionDef | ast.AsyncFunctionDef, marker: str) -> bool:
    """Whether a line of the docstring starts with ``marker`` followed by a reason."""
    lines = (ast.get_docstring(function) or "").splitlines()
    return any(line.strip().startswith(marker) and line.strip() != marker for line in lines)


def shape_violations(source: str, name: str) -> list[str]:
    """The rules (module and function size, parameter count) that ``source`` breaks."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES} per module)")
    for function in _functions(ast.parse(source)):
        where = f"{name}.{function.name} (line {function.lineno})"
        length = (function.end_lineno or function.lineno) - function.lineno + 1
        if length > MAX_FUNCTION_LINES and not _gives_reason(function, LONG_REASON):
            found.append(f"{where}: {length} lines and no '{LONG_REASON}' line")
        count = len(_parameters(function))
        if count > MAX_PARAMETERS and not _gives_reason(function, MANY_PARAMETERS_REASON):
            found.append(f"{where}: {count} parameters and no '{MANY_PARAMETERS_REASON}' line")
    return found


def _function(name: str, parameters: str, body_lines: int, docstring: str = "") -> str:
    """Source of a function with ``body_lines`` statements."""
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines))
    return f'def {name}({parameters}):\n    """{docstring}"""\n{body}'


def test_the_shape_check_finds_each_broken_rule_and_accepts_a_reason() -> None:
    nine, eight = (", ".join(f"p{i}" for i in range(n)) for n in (9, 8))
    method = _function("method", f"self, {eight}", 1).replace("\n", "\n    ")
    source = "\n\n".join(
        [
            _function("short", "a", 58),  # 60 lines with def and docstring
            _function("long", "a", 59),
            _function("explained", "a", 59, "Long because: one table of cases.\n"),
            _function("empty_reason", "a", 59, "Long because:\n"),
            _function("wide", nine, 1),
            _function("wide_explained", nine, 1, "x.\n\nMany parameters because: mirrors f."),
            f"class C:\n    {method}",  # self is not counted
        ]
    )
    found = shape_violations(source, "toy")
    assert [entry.split(" (line")[0] for entry in found] == [
        "toy.long",
        "toy.empty_reason",
        "toy.wide",
    ]
    assert "61 lines" in found[0] and "9 parameters" in found[2]
    assert shape_violations("x = 1\n" * 501, "big") == ["big: 501 lines (at most 500 per module)"]
    assert shape_violations("x = 1\n" * 500, "big") == []


def test_no_module_or_function_of_the_package_breaks_the_shape_rules() -> None:
    found = [
        entry
        for path in sorted(PACKAGE.rglob("*.py"))
        for entry in shape_violations(path.read_text(), module_name(path))
    ]
    assert found == [], "\n".join(found)
