"""The package's layers: no import cycle among its own modules, and no module too long to read.

Imports inside functions count: they hide a cycle, they do not remove it. Imports under
``if TYPE_CHECKING:`` do not: they never run. The shared ``tools/layers.py`` script reports the same.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import maintenance_tasks

PACKAGE = Path(maintenance_tasks.__file__).parent
MAX_LINES = 400

#: module -> imported module -> where ("maintenance_tasks/jobs.py:184 (in a function)")
Graph = dict[str, dict[str, list[str]]]


def module_name(path: Path, root: Path) -> str:
    """Return the dotted name of the module at ``path`` in the package at ``root``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    """Return whether ``node`` is ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST, local: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Yield each import that runs and whether it is inside a function."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and is_type_checking(child):
            for other in child.orelse:
                yield from imports(other, local)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local
        yield from imports(child, local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))


def imported_names(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]) -> list[str]:
    """Return the dotted names an import statement reads, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    # ``from . import jobs`` reads a module; ``from .models import Run`` reads the models module.
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_graph(root: Path) -> Graph:
    """Return which of the package's modules each of its modules imports, and where."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    graph: Graph = {name: {} for name in files}
    for name, path in files.items():
        package = name if name in packages else name.rpartition(".")[0]
        for node, local in imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in imported_names(node, package, set(files)):
                while target and target not in files:
                    target = target.rpartition(".")[0]  # a name inside a module: the module
                if target and target != name:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}{' (in a function)' if local else ''}"
                    places = graph[name].setdefault(target, [])
                    if where not in places:
                        places.append(where)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Return the groups of modules that import each other, directly or not (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    # A package's __init__ re-exporting its own submodules runs in one direction only.
    return [group for group in found if not (len(group) == 2 and group[1].startswith(group[0] + "."))]


def describe(graph: Graph, groups: list[list[str]]) -> str:
    """Return each cycle with the import lines that make it."""
    lines = []
    for group in groups:
        lines.append(f"cycle: {', '.join(group)}")
        lines += [
            f"  {module} -> {imported}: {', '.join(places)}"
            for module in group
            for imported, places in sorted(graph[module].items())
            if imported in group
        ]
    return "\n".join(lines)


def test_the_cycle_finder_reads_every_kind_of_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "def __getattr__(name):\n    from .low import Low\n",
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import High\n",
        "high.py": "from .sub import Thing\nfrom . import low\n",
        "sub/__init__.py": "from .thing import Thing\n",
        "sub/thing.py": "def later():\n    from ..high import High\n",
        "a.py": "import pkg.b\n",
        "b.py": "from pkg.a import A\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["pkg"] == {"pkg.low": ["pkg/__init__.py:2 (in a function)"]}
    assert graph["pkg.low"] == {}  # TYPE_CHECKING imports never run
    assert graph["pkg.high"] == {"pkg.sub": ["pkg/high.py:1"], "pkg.low": ["pkg/high.py:2"]}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.high", "pkg.sub", "pkg.sub.thing"]]


def test_no_import_cycle():
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    assert not found, "\n" + describe(graph, found)


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): length
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
        and (length := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
