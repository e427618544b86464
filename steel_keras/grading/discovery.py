"""Where the grader finds things: exercise folders, public and hidden test files, submissions."""

from __future__ import annotations

import re
from pathlib import Path

from steel_keras.errors import SteelKerasError
from steel_keras.paths import project_root

__all__ = [
    "chapter_key",
    "default_exercises_dir",
    "find_public_tests",
    "student_folders",
    "graded_test_files",
]


def chapter_key(chapter: int | str | None) -> str | None:
    """``1``, ``"1"``, ``"01"`` or ``"ch01"`` -> ``"ch01"``; ``None`` stays ``None``."""
    if chapter is None:
        return None
    text = str(chapter).lower().removeprefix("ch")
    if not text.isdigit():
        raise SteelKerasError(f"chapter {chapter!r} is not a number; give e.g. --chapter 1")
    return f"ch{int(text):02d}"


def default_exercises_dir(cwd: Path | None = None) -> Path:
    """``course/exercises`` (the source checkout) or ``exercises`` (a student's copy), in cwd."""
    cwd = cwd or Path.cwd()
    for candidate in (cwd / "course" / "exercises", cwd / "exercises"):
        if candidate.is_dir():
            return candidate
    raise SteelKerasError(
        f"no course/exercises or exercises folder in {cwd}; "
        "give the folder of your exercise files with --path DIR"
    )


def find_public_tests(exercises_dir: Path | None, explicit: Path | None = None) -> Path:
    """The graded tests: ``explicit``, else ``tests/grading`` beside the exercises (a student's
    copy), else the source checkout's ``tests/grading``."""
    candidates = (
        [explicit]
        if explicit
        else [
            *([exercises_dir.resolve().parent / "tests" / "grading"] if exercises_dir else []),
            project_root() / "tests" / "grading",
        ]
    )
    for candidate in candidates:
        if any(candidate.glob("test_ch*.py")):
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise SteelKerasError(
        f"no graded tests (test_chNN_*.py) in {where}; give their folder with --tests DIR"
    )


def graded_test_files(folder: Path, chapter: str | None, *, recursive: bool = False) -> list[Path]:
    """``test_*.py`` files of ``folder`` (of one chapter when ``chapter`` is given), sorted."""
    found = folder.rglob("test_*.py") if recursive else folder.glob("test_*.py")
    files = sorted(p.resolve() for p in found if p.is_file())
    if chapter is not None:
        pattern = re.compile(rf"(?:^|_){chapter}(?:_|\.py$)")
        files = [p for p in files if pattern.search(p.name)]
    return files


def student_folders(submissions: Path) -> dict[str, Path]:
    """``{student: exercise folder}``: each subfolder, or its ``exercises/`` if it has one."""
    students = {}
    for folder in sorted(submissions.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "__")):
            continue
        inner = folder / "exercises"
        students[folder.name] = inner if inner.is_dir() else folder
    if not students:
        raise SteelKerasError(
            f"{submissions} has no subfolders; put each student's exercise "
            "files in a folder named after the student"
        )
    return students
