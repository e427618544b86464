"""Grades as files and text: Gradescope's ``results.json``, a CSV grade sheet, a student's table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from steel_keras.grading.grader import Grade, GradedTest
from steel_keras.paths import atomic_write_text

__all__ = [
    "format_points",
    "results_json",
    "student_table",
    "write_grades_csv",
    "write_results_json",
    "summary_line",
]

# Gradescope shows "after_published" tests to students once grades are published: by name and
# score only, as the plugin never puts a hidden test's source or values in its output.
HIDDEN_VISIBILITY = "after_published"


def format_points(value: float) -> str:
    """``2.0`` -> ``"2"``, ``1.5`` -> ``"1.5"``."""
    return f"{value:g}"


def summary_line(grade: Grade, hidden_run: bool) -> str:
    """``public tests: 8/10 points; hidden tests not run`` (or the hidden tests' points too)."""
    got, out_of = grade.visible_score()
    line = f"public tests: {format_points(got)}/{format_points(out_of)} points"
    if not hidden_run:
        return line + "; hidden tests not run"
    hidden_got, hidden_max = grade.score - got, grade.max_score - out_of
    return (
        line + f"; hidden tests: {format_points(hidden_got)}/{format_points(hidden_max)}"
        f" points; total {format_points(grade.score)}/{format_points(grade.max_score)}"
    )


def results_json(grade: Grade, hidden_run: bool) -> dict:
    """Gradescope's autograder ``results.json`` for one student."""
    return {
        "score": grade.score,
        "max_score": grade.max_score,
        "execution_time": round(grade.seconds, 2),
        "output": summary_line(grade, hidden_run),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "isolation": grade.isolation
        or {"level": "none", "description": "the reference solutions, run in the judge (trusted)"},
        "tests": [
            {
                "name": r.test.name,
                "score": r.score,
                "max_score": r.test.points,
                "output": r.output,
                "visibility": "visible" if r.test.visibility == "visible" else HIDDEN_VISIBILITY,
            }
            for r in grade.results
        ],
    }


def write_results_json(grade: Grade, path: Path, hidden_run: bool) -> Path:
    return atomic_write_text(path, json.dumps(results_json(grade, hidden_run), indent=2) + "\n")


def write_grades_csv(
    grades: Sequence[Grade], tests: Sequence[GradedTest], path: Path, *, partial: bool = False
) -> Path:
    """One row a student: ``student``, points of each test, ``total``, ``max``, ``percent``,
    and ``partial``: ``yes`` on every row when grading was stopped before every student."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *(t.name for t in tests), "total", "max", "percent", "partial"])
    for grade in grades:
        scores = {r.test.id: r.score for r in grade.results}
        writer.writerow(
            [
                grade.student,
                *(format_points(scores.get(t.id, 0.0)) for t in tests),
                format_points(grade.score),
                format_points(grade.max_score),
                f"{grade.percent:.1f}",
                "yes" if partial else "no",
            ]
        )
    return atomic_write_text(path, buffer.getvalue())


def student_table(grade: Grade, width: int = 100) -> str:
    """A table of a student's public tests by chapter, with points and why a test failed."""
    name_width = max((len(r.test.name.split("::", 1)[-1]) for r in grade.results), default=10)
    lines = []
    chapter = None
    for result in grade.results:
        if result.test.chapter != chapter:
            chapter = result.test.chapter
            lines.append(f"{chapter}  ({result.test.name.split('::', 1)[0]})")
        passed = result.score >= result.test.points
        name = result.test.name.split("::", 1)[-1]
        points = f"{format_points(result.score)}/{format_points(result.test.points)}"
        line = f"  {'PASS' if passed else 'FAIL'}  {name:<{name_width}}  {points:>5}"
        if not passed and result.output:
            why = " ".join(result.output.split())
            room = max(20, width - len(line) - 2)
            line += "  " + (why if len(why) <= room else why[: room - 3] + "...")
        lines.append(line)
    return "\n".join(lines)
