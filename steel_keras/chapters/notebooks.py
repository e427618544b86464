"""The chapters and their paired notebooks: ``course/NN_slug.py`` is the source of truth.

Each chapter is a jupytext percent-format script (``# %%`` code cells, ``# %% [markdown]``
prose cells). :func:`sync_notebooks` writes the paired ``course/NN_slug.ipynb`` from it, without
outputs, with fixed cell ids (so an unchanged chapter gives an unchanged file) and with jupytext's
pairing metadata (so Jupyter with jupytext installed saves edits to both files).
:func:`out_of_sync` lists the notebooks that differ from their script in their cells' kinds or
sources; CI runs it through ``tests/test_course.py``.

    steel-keras course sync            # or: make notebooks
    steel-keras course sync --check    # exit 1 if a notebook is stale
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from steel_keras.errors import SteelKerasError
from steel_keras.paths import atomic_write_text, project_root

__all__ = ["Chapter", "chapters", "out_of_sync", "sync_notebooks", "to_notebook"]

CHAPTER_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")
PAIRING = "ipynb,py:percent"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class Chapter:
    """One chapter: its number (1), its name (``01_data_and_rle``) and its two files."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self.name = script.stem
        self.number = int(script.name[:2])
        self.notebook = script.with_suffix(".ipynb")

    def __repr__(self) -> str:
        return f"Chapter({self.name!r})"


def course_dir() -> Path:
    return project_root() / "course"


def chapters(folder: Path | None = None, numbers: list[int] | None = None) -> list[Chapter]:
    """The chapters in ``folder`` (the checkout's ``course/``), in order; ``numbers`` picks some.

    Raises:
        SteelKerasError: no chapters there, or a chapter number that does not exist.
    """
    folder = folder or course_dir()
    scripts = sorted(folder.glob("[0-9][0-9]_*.py"))
    found = [Chapter(p) for p in scripts if CHAPTER_NAME.match(p.name)]
    if not found:
        raise SteelKerasError(f"no chapters (NN_slug.py) in {folder}; run this from a "
                              "steel-keras source checkout")
    if numbers:
        known = {c.number for c in found}
        missing = sorted(set(numbers) - known)
        if missing:
            raise SteelKerasError(f"no chapter {', '.join(map(str, missing))}; chapters: "
                                  f"{', '.join(str(c.number) for c in found)}")
        found = [c for c in found if c.number in numbers]
    return found


def to_notebook(script: Path) -> nbformat.NotebookNode:
    """The notebook jupytext makes of a percent-format script, cleaned for checking in."""
    import jupytext

    notebook = jupytext.read(script, fmt="py:percent")
    notebook.metadata = {
        "jupytext": {"formats": PAIRING},
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python"},
    }
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:03d}"
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def sync_notebooks(chosen: list[Chapter] | None = None) -> list[Path]:
    """Write each chapter's ``.ipynb`` from its ``.py``; return the notebooks that changed."""
    changed = []
    for chapter in chosen or chapters():
        text = nbformat.writes(to_notebook(chapter.script)) + "\n"
        if not chapter.notebook.is_file() or chapter.notebook.read_text() != text:
            atomic_write_text(chapter.notebook, text)
            changed.append(chapter.notebook)
    return changed


def out_of_sync(chosen: list[Chapter] | None = None) -> dict[Path, str]:
    """``{notebook: why}`` for each notebook missing, with outputs, or unlike its script.

    Cells are compared by kind and source; metadata and outputs are not (outputs are reported
    on their own: checked-in notebooks carry none).
    """
    problems = {}
    for chapter in chosen or chapters():
        if not chapter.notebook.is_file():
            problems[chapter.notebook] = "missing"
            continue
        stored = nbformat.read(chapter.notebook, as_version=4)
        expected = _cells(to_notebook(chapter.script))
        if _cells(stored) != expected:
            problems[chapter.notebook] = _first_difference(_cells(stored), expected)
        elif any(c.get("outputs") or c.get("execution_count") for c in stored.cells):
            problems[chapter.notebook] = "has outputs; check in notebooks without outputs"
    return problems


def _first_difference(stored: list[tuple[str, str]], expected: list[tuple[str, str]]) -> str:
    for index, (have, want) in enumerate(zip(stored, expected, strict=False)):
        if have != want:
            return f"cell {index} differs from the script ({want[0]} cell: {want[1][:60]!r})"
    return f"differs from the script: {len(stored)} cells, the script has {len(expected)}"
