"""The library's layers: no import cycle and no import from a lower layer to a higher one.

Every module under ``steel_keras/`` is read (not imported) and each import it makes counts,
at the top of the file, inside a function, under ``TYPE_CHECKING``, or as a
``"steel_keras.module:attribute"`` reference that the code imports by name later (the runtime
registry's). ``docs/architecture.md`` draws the layers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "steel_keras"

#: Lowest first. A module may import from its own layer and those below it.
LAYERS: list[tuple[str, ...]] = [
    ("steel_keras", "steel_keras.errors", "steel_keras.constants", "steel_keras.paths",
     "steel_keras.rundir"),
    ("steel_keras.rle", "steel_keras.losses", "steel_keras.recipes"),
    ("steel_keras.data", "steel_keras.metrics", "steel_keras.synthetic", "steel_keras.viz",
     "steel_keras.eda", "steel_keras.download"),
    ("steel_keras.models",),
    ("steel_keras.train", "steel_keras.pipeline"),
    ("steel_keras.runs", "steel_keras.evaluate", "steel_keras.deploy"),
    ("steel_keras.grading", "steel_keras.chapters"),
    ("steel_keras.cli", "steel_keras.__main__"),
]
_REFERENCE = re.compile(r"^(steel_keras(?:\.[a-z_0-9]+)+):[A-Za-z_]\w*$")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest prefix listed in LAYERS."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            # The package itself is its __init__ only; every other name covers its subpackage.
            inside = module.startswith(name + ".") and name != "steel_keras"
            if (module == name or inside) and len(name) > best:
                best, found = len(name), index
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to "
                             "docs/architecture.md")
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The module an import names: ``a.b.c`` if it is a module, else its longest known prefix."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in known:
            return name
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of the library in one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _REFERENCE.match(node.value)
            targets = [match.group(1)] if match else []
        for target in targets:
            resolved = _resolve(target, known) if target.startswith("steel_keras") else None
            if resolved and resolved != module:
                found.append((resolved, node.lineno))
    return found


def import_graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_goes_up_a_layer():
    known = modules()
    upward = []
    for module, imports in import_graph().items():
        for target, line in imports:
            if layer_of(target) > layer_of(module):
                upward.append(f"{known[module].relative_to(PACKAGE.parent)}:{line} imports "
                              f"{known[target].relative_to(PACKAGE.parent)} (layer "
                              f"{layer_of(module)} -> {layer_of(target)})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    known = modules()
    graph = {m: sorted({t for t, _ in imports}) for m, imports in import_graph().items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        str(known[m].relative_to(PACKAGE.parent)) for m in cycle)


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": ["b"], "b": ["c"], "c": []}, None),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert find_cycle(graph) == expected


def test_the_import_reader_sees_imports_inside_functions(tmp_path):
    """The checks above would miss an upward import hidden in a function; show they do not."""
    known = modules()
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from steel_keras.cli import main\n    return main\n"
                      "RUNNER = 'steel_keras.deploy.runners:OnnxRunner'\n")
    found = imports_of("steel_keras.rle", source, known)
    assert ("steel_keras.cli", 2) in found and ("steel_keras.deploy.runners", 4) in found
    assert layer_of("steel_keras.cli") > layer_of("steel_keras.rle")
