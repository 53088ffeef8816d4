"""The shape of the code: no import cycles among omnibind's modules, short functions, one
definition of what must have one. Each check reads the source, so it fails the moment a change
breaks the rule (plant a cycle or a 61-line function and watch it fail)."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "omnibind"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> omnibind modules it imports, at module level or inside functions."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _runtime_nodes(ast.parse(path.read_text("utf-8"))):
            for target in _targets(node, package, modules):
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        # `from pkg import mod` imports the submodule (the package's __init__ runs either way)
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph(_modules()))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_check_can_fail(tmp_path: Path):
    modules = {"omnibind.a": tmp_path / "a.py", "omnibind.b": tmp_path / "b.py"}
    modules["omnibind.a"].write_text("from omnibind.b import x\n")
    modules["omnibind.b"].write_text("def f():\n    from omnibind import a\n")  # noqa  # a lazy import still counts
    assert find_cycle(import_graph(modules)) is not None
    modules["omnibind.b"].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from omnibind import a\n")
    assert find_cycle(import_graph(modules)) is None


def long_functions(paths) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_over_60_lines():
    assert long_functions(sorted(PACKAGE.rglob("*.py"))) == []


@pytest.mark.parametrize("module, limit", [("cli.py", 400), ("server/app.py", 400)])
def test_entry_points_stay_thin(module: str, limit: int):
    lines = len((PACKAGE / module).read_text("utf-8").splitlines())
    assert lines < limit, f"{module} has {lines} lines: move logic into the library"


def _definitions(pattern: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{n}")
    return found


@pytest.mark.parametrize("what, pattern", [
    ("the row schema", r'pa\.field\("thumbnail"'),
    ("an item row", r'"thumbnail": thumbnail'),
    ("per-input fusion", r"^def fuse\("),
    ("recall@k", r"^def recall_at_k\(|^def retrieval_metrics\("),
    ("the manifest hash", r"^def manifest_sha256\("),
    ("the version lookup", r'__version__ = version\("omnibind"\)|^__version__ = "'),
    ("prompt templates", r'"the sound of a \{\}\."'),
])
def test_one_definition(what: str, pattern: str):
    places = _definitions(pattern)
    assert len(places) == 1, f"{what} is defined in {len(places)} places: {places}"


def test_the_environment_is_never_written():
    """Every API takes `home=`; nothing below the user's shell sets OMNIBIND_HOME."""
    assert _definitions(r'os\.environ\[[^]]+\]\s*=|os\.environ\.setdefault\("OMNIBIND') == []
