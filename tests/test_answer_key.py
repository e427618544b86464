"""The answer key is the library: the grader keeps a table of which library function answers
which exercise, and the instructor's copy holds those functions' own source."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from steel_keras.grading import solutions
from steel_keras.grading.solutions import CHAPTERS, resolve
from steel_keras.grading.student_copy import write_student_copy

REPO = Path(__file__).resolve().parents[1]


def test_the_grader_keeps_only_the_table_of_library_functions():
    tree = ast.parse(Path(solutions.__file__).read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions == {"chapters", "module_name", "resolve", "solutions_for"}
    for _, references in CHAPTERS.values():
        for reference in references.values():
            module, _, name = reference.partition(":")
            assert module.startswith("steel_keras.") and ".grading" not in module, reference
            function = resolve(reference)
            assert (function.__module__, function.__name__) == (module, name), reference


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("key")
    write_student_copy(out, solutions=True)
    return out / "exercises"


def _body(definition: ast.FunctionDef) -> list[ast.stmt]:
    """The statements after the docstring and the imports that open the body."""
    body = definition.body[1:] if ast.get_docstring(definition) else definition.body
    while body and isinstance(body[0], ast.Import | ast.ImportFrom):
        body = body[1:]
    return body


def test_each_answer_is_its_library_function_renamed(key):
    for chapter, (module, references) in CHAPTERS.items():
        tree = ast.parse((key / f"{module}.py").read_text())
        answers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        renames = {resolve(r).__name__: name for name, r in references.items()}
        for name, reference in references.items():
            library = resolve(reference)
            source = textwrap.dedent(inspect.getsource(library))
            expected = ast.unparse(_body(ast.parse(source).body[0]))
            for old, new in renames.items():
                expected = re.sub(rf"\b{old}\b(?=\()", new, expected)
            assert ast.unparse(_body(answers[name])) == expected, (chapter, name)
            own = {
                (n.module, a.name)
                for n in ast.walk(answers[name])
                if isinstance(n, ast.ImportFrom)
                for a in n.names
            }
            assert (library.__module__, library.__name__) not in own, (chapter, name)


def test_an_answer_calls_the_files_own_exercise_not_the_librarys(key):
    text = (key / "ch04_segmentation.py").read_text()
    assert "def soft_dice_loss(" in text and "def bce_dice_loss(" in text
    assert "soft_dice_loss(y_true, y_pred, smooth, per_image)" in text
    assert "import soft_dice" not in text
    assert "def roc_auc_by_ranks(" in (key / "ch03_classifier.py").read_text()


def test_instructor_copy_scores_full_marks_on_every_chapter(key):
    graded = subprocess.run(
        [sys.executable, "-m", "steel_keras", "grade", "--path", str(key)],
        cwd=key.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-2000:]
    got, out_of = re.search(r"public tests: ([\d.]+)/([\d.]+) points", graded.stdout).groups()
    assert float(got) == float(out_of) > 0, graded.stdout[-3000:]
