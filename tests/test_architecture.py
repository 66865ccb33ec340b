"""The shape of the package: every module imports, imports form no cycle, modules stay small.

The import graph is read from the source (``ast``), with the imports inside functions
counted too: a cycle hidden behind a function-level import is still a cycle in the design.
"""

import ast
import importlib
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "pixelwise"
MAX_MODULE_LINES = 450


def module_paths() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted((SOURCE_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SOURCE_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path, module: str) -> set[str]:
    """The dotted names an ``import`` or ``from ... import`` anywhere in ``path`` names
    (for ``from a import b``: both ``a`` and ``a.b``, which may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name resolves to its longest prefix
    that is a module: ``pixelwise.models.load_model`` -> ``pixelwise.models``)."""
    modules = module_paths()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in imported_names(path, module)
                   if name == PACKAGE or name.startswith(PACKAGE + ".")}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
    finished, path = set(), []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in finished:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        finished.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "pixelwise.io" in graph["pixelwise.config"]  # from pixelwise.io import ...
    assert "pixelwise.distribute" in graph["pixelwise.train"]  # from pixelwise import ...
    assert "pixelwise.models" in graph["pixelwise.runs"]  # a package's name


def test_the_package_imports_form_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(name for name in module_paths()
                                            if not name.endswith(".__main__")))  # runs the CLI
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_module_is_over_450_lines():
    sizes = {module: len(path.read_text().splitlines())
             for module, path in module_paths().items()}
    too_long = {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
