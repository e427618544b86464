"""The library's code that an answer calls, copied out of the library into an exercise file.

The reference answers are the library's own functions, and the grader keeps the library out of
reach of the code it grades. So an answer key (``steel-keras course student-copy --solutions``)
cannot just import them: :class:`LibraryCode` copies a function, and whatever it uses from the
library (helpers, constants, error classes, across modules), into plain source that runs on its
own. A copied name that clashes with a name of the exercise file gets a ``_library_`` prefix.
Imports from outside the library (numpy, pandas, keras) are kept as imports.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable

__all__ = ["LIBRARY", "LibraryCode"]

LIBRARY = "steel_keras"


def _is_library(module: str | None) -> bool:
    return bool(module) and (module == LIBRARY or module.startswith(LIBRARY + "."))


def _top_level(tree: ast.Module) -> dict[str, ast.stmt]:
    """Each name a module's top level binds, and the (last) statement that binds it."""
    defs: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[stmt.name] = stmt
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                defs[(alias.asname or alias.name).split(".")[0]] = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        defs[node.id] = stmt
    return defs


def _names(stmt: ast.AST) -> set[str]:
    """Names a statement reads or writes, annotations and its functions' parameters left out
    (annotations are not evaluated in files with ``from __future__ import annotations``)."""
    params = {a.arg for a in ast.walk(stmt) if isinstance(a, ast.arg)}
    skip = set()
    for node in ast.walk(stmt):
        for annotation in _annotations(node):
            skip |= {id(n) for n in ast.walk(annotation)}
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and id(n) not in skip} - params


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.arg) and node.annotation:
        return [node.annotation]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
        return [node.returns]
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    return []


class _Rename(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str], params: set[str]) -> None:
        self.mapping, self.params = mapping, params

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.mapping and node.id not in self.params:
            node.id = self.mapping[node.id]
        return node

    def visit_FunctionDef(self, node):
        node.name = self.mapping.get(node.name, node.name)
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self.mapping.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_ImportFrom(self, node):
        return None if _is_library(node.module) else node

    def visit_Import(self, node):
        return None if any(_is_library(a.name) for a in node.names) else node

    def generic_visit(self, node):
        super().generic_visit(node)
        if isinstance(getattr(node, "body", None), list) and not node.body:
            node.body = [ast.Pass()]  # an import of the library was all the block held
        return node


class LibraryCode:
    """Copies library functions, with what they use, into one block of source.

    Args:
        taken: names the target file already defines (copies with these names are renamed).
    """

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)
        self.final: dict[tuple[str, str], str] = {}
        self.statements: list[tuple[str, ast.stmt]] = []
        self.imports: list[str] = []
        self._modules: dict[str, tuple[ast.Module, dict[str, ast.stmt]]] = {}

    def add(self, module: str, name: str) -> str:
        """Copy ``module.name`` and what it needs; return its name in the copied block."""
        key = (module, name)
        if key in self.final:
            return self.final[key]
        stmt = self._module(module)[1].get(name)
        if stmt is None:
            raise KeyError(f"{module} defines no {name}")
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            return self._imported(key, stmt)
        self.final[key] = self._unique(name, module)
        copy = self._copy(module, stmt)
        self.statements.append((module, copy))
        return self.final[key]

    def _imported(self, key: tuple[str, str], stmt: ast.Import | ast.ImportFrom) -> str:
        module, name = key
        alias = next(a for a in stmt.names if (a.asname or a.name).split(".")[0] == name)
        if isinstance(stmt, ast.ImportFrom) and _is_library(stmt.module):
            self.final[key] = self.add(stmt.module, alias.name)
            return self.final[key]
        if isinstance(stmt, ast.Import) and _is_library(alias.name):
            raise ValueError(f"{module} uses `import {alias.name}`; copy by name only")
        line = ast.unparse(
            ast.Import(names=[alias])
            if isinstance(stmt, ast.Import)
            else ast.ImportFrom(module=stmt.module, names=[alias], level=0)
        )
        if line not in self.imports:
            self.imports.append(line)
        self.final[key] = name
        return name

    def _copy(self, module: str, stmt: ast.stmt) -> ast.stmt:
        """``stmt`` with the names it uses from its module (or imports from the library inside
        a function) pointing at their copies."""
        defs = self._module(module)[1]
        mapping = {}
        for node in ast.walk(stmt):
            if isinstance(node, ast.ImportFrom) and _is_library(node.module) and node is not stmt:
                for alias in node.names:
                    mapping[alias.asname or alias.name] = self.add(node.module, alias.name)
        own = getattr(stmt, "name", None)
        for name in sorted(_names(stmt) - set(mapping)):
            if name in defs and name != own:
                mapping[name] = self.add(module, name)
        if own is not None:
            mapping[own] = self.final[(module, own)]
        params = {a.arg for a in ast.walk(stmt) if isinstance(a, ast.arg)}
        copy = ast.parse(ast.unparse(stmt)).body[0]
        return _Rename(mapping, params).visit(copy)

    def _unique(self, name: str, module: str) -> str:
        for candidate in (name, f"_library_{name}", f"_library_{module.rsplit('.', 1)[-1]}_{name}"):
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise ValueError(f"cannot find a free name for {module}.{name}")

    def _module(self, module: str) -> tuple[ast.Module, dict[str, ast.stmt]]:
        if module not in self._modules:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise KeyError(f"no module {module}")
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            self._modules[module] = (tree, _top_level(tree))
        return self._modules[module]

    def source(self) -> str:
        """The copied block: the imports it needs, then each definition after what it uses."""
        lines = [*self.imports, ""] if self.imports else []
        module = None
        for origin, stmt in self.statements:
            if origin != module:
                lines += ["", f"# from {origin.replace('.', '/')}.py"]
                module = origin
            lines += [ast.unparse(stmt), ""]
        return "\n".join(lines).strip() + "\n"
