"""The grader, for real: judges, sandboxed workers, time and memory limits, misbehaving classes.

The CI check of the course lives here: the reference solutions score 100 % and the stubs 0 % on
every chapter with exercises, and so does the instructor's answer key, graded in the sandbox.
Then a class of submissions that crash, exit, loop, print and eat memory is graded through the
command line, with hidden tests whose source must not leak. The hostile class (submissions that
attack the grader) is in ``test_grading_hostile.py``.
"""

from __future__ import annotations

import ast
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steel_keras.grading.discovery import graded_test_files, student_folders
from steel_keras.grading.grader import Limits, collect_tests, grade_submission, grade_submissions
from steel_keras.grading.library_check import library_uses
from steel_keras.grading.sandbox import probe
from steel_keras.grading.scenarios import expected_score, write_class
from steel_keras.grading.solutions import CHAPTERS, chapters, solutions_for

REPO = Path(__file__).resolve().parents[1]
EXERCISES = REPO / "course" / "exercises"
GRADED_TESTS = REPO / "tests" / "grading"
# 2048 MiB: the chapter 03+ tests load Keras, about 1.5 GB of address space.
FAST = Limits(timeout=60, test_timeout=5, grace=3, memory_mb=2048, output_mb=2)
SECRET = "HIDDEN-TEST-SOURCE-7f3a"

HIDDEN_TEST = f'''
import pytest

@pytest.mark.points(2)
def test_decode_rle_hidden_corner(impl):
    mask = impl.decode_rle("4 2", (3, 2))
    assert mask[:, 1].tolist() == [1, 1, 0], "{SECRET} in an assertion message"

@pytest.mark.points(1)
def test_mask_area_from_rle_hidden(impl):
    secret_input = "{SECRET}"
    assert impl.mask_area_from_rle("2 3 9 4") == 7
    assert secret_input.startswith("HIDDEN")
'''


def steel_keras(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def public_tests():
    return collect_tests(graded_test_files(GRADED_TESTS, None))


def by_chapter(grade) -> dict[str, tuple[float, float]]:
    totals: dict[str, tuple[float, float]] = {}
    for r in grade.results:
        got, out_of = totals.get(r.test.chapter, (0.0, 0.0))
        totals[r.test.chapter] = (got + r.score, out_of + r.test.points)
    return totals


def test_every_exercise_has_a_reference_solution_and_a_stub():
    files = sorted(EXERCISES.glob("ch[0-9][0-9]_*.py"))
    assert [f.name[:4] for f in files] == chapters()
    for path in files:
        module_name, references = CHAPTERS[path.name[:4]]
        assert path.stem == module_name
        functions = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)]
        assert sorted(f.name for f in functions) == sorted(references), path.name
        for function in functions:
            assert ast.get_docstring(function), f"{path.name}: {function.name} has no docstring"
            last = function.body[-1]
            assert isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last)
        assert all(callable(f) for f in solutions_for(path.name[:4]).values())


def test_solutions_score_full_marks_and_stubs_zero_on_every_chapter(public_tests):
    assert {t.chapter for t in public_tests} == set(chapters())
    solutions = grade_submission("solutions", public_tests, FAST)
    stubs = grade_submission(EXERCISES, public_tests, FAST)
    for chapter, (got, out_of) in by_chapter(solutions).items():
        assert got == out_of > 0, f"{chapter}: solutions score {got}/{out_of}"
    for chapter, (got, out_of) in by_chapter(stubs).items():
        assert got == 0 < out_of, f"{chapter}: stubs score {got}/{out_of}"
    assert all("NotImplementedError" in r.output for r in stubs.results)
    assert solutions.runs == stubs.runs == 1
    assert stubs.isolation["level"] == probe().level


def test_student_copy_grades_zero_and_instructor_copy_full_marks(tmp_path, public_tests):
    student, instructor = tmp_path / "student", tmp_path / "instructor"
    assert steel_keras("course", "student-copy", "--out", str(student)).returncode == 0
    made = steel_keras("course", "student-copy", "--out", str(instructor), "--solutions")
    assert made.returncode == 0, made.stderr
    assert (student / "exercises" / "ch01_data_and_rle.py").read_text() == (
        EXERCISES / "ch01_data_and_rle.py"
    ).read_text()
    # Graded from inside the copy, with no source checkout in sight of the working folder.
    graded = steel_keras("grade", "--path", "exercises", cwd=student)
    assert graded.returncode == 1, graded.stderr
    total = sum(t.points for t in public_tests)
    assert f"public tests: 0/{total:g} points; hidden tests not run" in graded.stdout
    assert "NotImplementedError: Exercise 1.1" in graded.stdout
    # The key calls no library function (the sandbox keeps the library out of reach): it carries
    # a copy of the library code its answers use.
    key = (instructor / "exercises" / "ch01_data_and_rle.py").read_text()
    assert library_uses(key, CHAPTERS["ch01"][1]) == {}
    graded = steel_keras("grade", "--path", str(instructor / "exercises"), "--chapter", "1")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert graded.stdout.startswith("isolation: ")
    assert "public tests: 10/10 points; hidden tests not run" in graded.stdout
    refused = steel_keras("course", "student-copy", "--out", str(student))
    assert refused.returncode == 2 and "--force" in refused.stderr


def test_misbehaving_class_scores_right_and_hidden_source_never_leaks(tmp_path):
    kinds = write_class(
        tmp_path / "submissions",
        9,
        [
            "correct",
            "wrong_answer",
            "import_error",
            "os_exit",
            "python_loop",
            "c_loop",
            "segfault",
            "prints_forever",
            "eats_memory",
        ],
    )
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_ch01_hidden.py").write_text(HIDDEN_TEST)
    # The misbehaviours break chapters 01-02, which need no Keras: grading only their tests
    # keeps each of the many restarted test processes from loading TensorFlow again.
    public = tmp_path / "public"
    public.mkdir()
    for test_file in [
        GRADED_TESTS / "conftest.py",
        *graded_test_files(GRADED_TESTS, "ch01"),
        *graded_test_files(GRADED_TESTS, "ch02"),
    ]:
        shutil.copyfile(test_file, public / test_file.name)
    start = time.monotonic()
    result = steel_keras(
        "grade",
        "--submissions",
        str(tmp_path / "submissions"),
        "--tests",
        str(public),
        "--out",
        str(tmp_path / "out"),
        "--hidden",
        str(hidden),
        "--timeout",
        "60",
        "--test-timeout",
        "3",
        "--memory-mb",
        "2048",
        "--output-mb",
        "2",
        "--jobs",
        "2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - start < 240
    assert result.stdout.splitlines()[0].startswith("isolation: ")
    hidden_file = hidden / "test_ch01_hidden.py"
    tests = collect_tests([*graded_test_files(public, None), hidden_file], [hidden])
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(kinds)
    for student, kind in kinds.items():
        row = rows[student]
        assert float(row["total"]) == expected_score(kind, tests), (student, row)
        hidden_score = row["hidden/test_ch01_hidden.py::test_mask_area_from_rle_hidden"]
        assert float(row["max"]) == sum(t.points for t in tests)
        assert float(hidden_score) in (0, 1)
        results_file = tmp_path / "out" / "students" / student / "results.json"
        text = results_file.read_text()
        assert SECRET not in text and "secret_input" not in text
        results = json.loads(text)
        assert results["score"] == expected_score(kind, tests)
        assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
        assert all({"name", "score", "max_score", "output"} <= set(t) for t in results["tests"])
        assert results["isolation"]["level"] in ("bwrap", "uid", "none")
    assert SECRET not in (tmp_path / "out" / "grades.csv").read_text()


def test_grade_usage_errors_are_one_line(tmp_path):
    for args, needle in [
        (("--submissions", str(REPO)), "--out"),
        (("--path", str(tmp_path)), "no exercise files"),
        (("--chapter", "x"), "not a number"),
    ]:
        result = steel_keras("grade", *args)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_thirty_mixed_submissions_on_two_workers(tmp_path, public_tests):
    kinds = write_class(tmp_path / "submissions", 30)
    start = time.monotonic()
    graded = grade_submissions(
        student_folders(tmp_path / "submissions"),
        public_tests,
        Limits(timeout=120, test_timeout=5, memory_mb=2048, output_mb=4),
        jobs=2,
        progress=False,
    )
    assert time.monotonic() - start < 600
    for grade in graded.grades:
        assert grade.score == expected_score(kinds[grade.student], public_tests), grade.student
