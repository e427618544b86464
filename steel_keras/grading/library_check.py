"""Which exercises of a student's file use the library, read from its source (never run).

The library holds the exercises' answers, so an exercise that imports from it earns nothing.
In the sandbox the import itself is answered by a stand-in that fails when used (see the
worker); this check, run by the judge on the file's text, names the import in the message of
every test of that exercise, however the code reaches it: an import inside the function, a name
imported at the top and used by the function or by a helper it calls, ``import *``, or
``importlib.import_module("steel_keras...")``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

__all__ = ["LIBRARY", "library_uses"]

LIBRARY = "steel_keras"
OUT_OF_REACH = "the library's answer is out of reach while grading; write the function yourself"


def _is_library(name: str | None) -> bool:
    return bool(name) and (name == LIBRARY or name.startswith(LIBRARY + "."))


def _library_imports(node: ast.AST) -> list[ast.AST]:
    """The imports of the library in ``node``: import statements and module names as strings
    (``importlib.import_module("steel_keras.rle")``)."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import) and any(_is_library(a.name) for a in sub.names):
            found.append(sub)
        elif isinstance(sub, ast.ImportFrom) and not sub.level and _is_library(sub.module):
            found.append(sub)
        elif (
            isinstance(sub, ast.Constant)
            and isinstance(sub.value, str)
            and _is_library(sub.value.strip())
        ):
            found.append(sub)
    return found


def _describe(node: ast.AST, source: str) -> str:
    text = ast.get_source_segment(source, node) or ast.unparse(node)
    return f"`{' '.join(text.split())}` (line {node.lineno})"


def _defined(statement: ast.stmt) -> set[str]:
    """The top-level names a statement binds."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in statement.names if a.name != "*"}
    targets = [
        n for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    ]
    return {n.id for n in targets}


def _used(statement: ast.stmt) -> set[str]:
    return {
        n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def library_uses(source: str, exercises: Iterable[str]) -> dict[str, str]:
    """``{exercise: message}`` for each exercise function of ``source`` that uses the library.

    A file that does not parse gives ``{}``: importing it fails on its own, with its error.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    exercises = set(exercises)
    tainted: dict[str, str] = {}
    for statement in tree.body:
        imports = _library_imports(statement)
        if not imports:
            if isinstance(statement, ast.FunctionDef | ast.ClassDef):
                tainted.pop(statement.name, None)  # defined again, after the import
            continue
        why = _describe(imports[0], source)
        star = isinstance(statement, ast.ImportFrom) and any(a.name == "*" for a in statement.names)
        for name in exercises if star else _defined(statement):
            tainted.setdefault(name, why)
    changed = True
    while changed:  # a helper that uses a tainted name taints the names it defines
        changed = False
        for statement in tree.body:
            used = _used(statement) & set(tainted)
            for name in _defined(statement) - set(tainted):
                if used:
                    tainted[name] = tainted[sorted(used)[0]]
                    changed = True
    return {
        name: f"{name} uses {tainted[name]}: {OUT_OF_REACH}"
        for name in sorted(exercises & set(tainted))
    }
