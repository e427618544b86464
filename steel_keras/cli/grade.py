"""``steel-keras grade``: grade your own exercises, or (instructors) a folder of submissions.

Student::

    steel-keras grade [--chapter N] [--path DIR]

prints each public test's points and ``public tests: 8/10 points; hidden tests not run``;
exit code 0 on full marks, 1 otherwise.

Instructor::

    steel-keras grade --submissions DIR --out DIR [--hidden DIR] [--timeout S] [--memory-mb M]

grades each subfolder of DIR (one student's ``exercises/``) in a sandbox of its own and writes
``OUT/grades.csv`` and ``OUT/students/STUDENT/results.json`` (Gradescope's format). The first
line says which isolation is in force (``--isolation`` forces a weaker one). SIGTERM or Ctrl-C
stops every student at once and writes the grades finished so far, marked partial.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from steel_keras.cli._args import existing_dir, positive_int

NAME = "grade"
HELP = "grade exercises: your own against the public tests, or a class's submissions"


def positive_float(text: str) -> float:
    """A number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chapter", metavar="N", help="grade one chapter only (e.g. 1)")
    parser.add_argument(
        "--path",
        type=existing_dir,
        metavar="DIR",
        help="your exercise files (default: course/exercises or exercises)",
    )
    parser.add_argument(
        "--tests",
        type=existing_dir,
        metavar="DIR",
        help="the public graded tests (default: tests/grading beside the "
        "exercises, else the source checkout's)",
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "uid", "none"),
        default="auto",
        help="how to isolate the code under test (default: the strongest "
        "this machine allows; see docs/security.md)",
    )
    group = parser.add_argument_group("instructors")
    group.add_argument(
        "--submissions",
        type=existing_dir,
        metavar="DIR",
        help="one subfolder per student, each a copy of exercises/",
    )
    group.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where grades.csv and students/STUDENT/results.json go",
    )
    group.add_argument(
        "--hidden",
        type=existing_dir,
        metavar="DIR",
        help="extra test_*.py files, reported by name and score only",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="seconds for one submission in all (default 300)",
    )
    group.add_argument(
        "--test-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds for one test (default 30)",
    )
    group.add_argument(
        "--memory-mb",
        type=positive_int,
        default=2048,
        metavar="M",
        help="memory of a student's processes (default 2048)",
    )
    group.add_argument(
        "--output-mb",
        type=positive_int,
        default=16,
        metavar="M",
        help="the most a student's code may print (default 16)",
    )
    group.add_argument(
        "--jobs",
        type=positive_int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="students graded at once (default: cpus, at most 4)",
    )


def run(args: argparse.Namespace) -> int:
    from steel_keras.errors import SteelKerasError
    from steel_keras.grading.discovery import chapter_key

    if args.submissions is None and args.out is not None:
        raise SteelKerasError(
            "--out goes with --submissions DIR; to grade your own exercises, give --path DIR only"
        )
    if args.submissions is not None and args.out is None:
        raise SteelKerasError("--submissions needs --out DIR for grades.csv and the results")
    chapter = chapter_key(args.chapter)
    if args.submissions is not None:
        check_output_folder(args.out, args.submissions, args.hidden)
        return _grade_class(args, chapter)
    return _grade_self(args, chapter)


def check_output_folder(out: Path, submissions: Path, hidden: Path | None) -> None:
    """Refuse, before any grading, an ``--out`` that is a file, lies in the submissions or the
    hidden tests or holds them, or cannot be written; and hidden tests inside the submissions
    (they would be graded as a student)."""
    from steel_keras.errors import OutputError, SteelKerasError
    from steel_keras.paths import check_output

    inputs = [submissions, *([hidden] if hidden else [])]
    check_output(out, kind="dir", inputs=inputs)
    for folder in inputs:
        if folder.resolve().is_relative_to(out.resolve()):
            raise OutputError(
                f"--out {out} holds {folder}, which this command reads; write the "
                "grades to a folder outside it"
            )
    if hidden is not None and hidden.resolve().is_relative_to(submissions.resolve()):
        raise SteelKerasError(
            f"--hidden {hidden} is inside --submissions {submissions}, where "
            "it would be graded as a student; move it out"
        )


def _limits(args: argparse.Namespace):
    from steel_keras.grading.sandbox import Limits

    return Limits(
        timeout=args.timeout,
        test_timeout=min(args.test_timeout, args.timeout),
        memory_mb=args.memory_mb,
        output_mb=args.output_mb,
    )


def _tests(args: argparse.Namespace, exercises: Path | None, chapter: str | None, into: Path):
    """The graded tests, collected from a private copy of the test files made in ``into``."""
    from steel_keras.grading.discovery import find_public_tests, graded_test_files
    from steel_keras.grading.grader import collect_tests, snapshot_tests

    public = graded_test_files(find_public_tests(exercises, args.tests), chapter)
    hidden_sources = [args.hidden] if args.hidden else []
    files, hidden = snapshot_tests(public, hidden_sources, into)
    for folder in hidden:
        files += graded_test_files(folder, chapter, recursive=True)
    return collect_tests(files, hidden), hidden


def _isolation(args: argparse.Namespace, limits):
    """Probe the isolation; print it first (and what a student could still do, if anything)."""
    from steel_keras.grading.sandbox import probe

    isolation = probe(args.isolation)
    print(isolation.describe(limits), flush=True)
    if isolation.warning():
        print(isolation.warning(), file=sys.stderr, flush=True)
    return isolation


def _grade_self(args: argparse.Namespace, chapter: str | None) -> int:
    from steel_keras.errors import SteelKerasError
    from steel_keras.grading.discovery import default_exercises_dir
    from steel_keras.grading.grader import grade_submission
    from steel_keras.grading.reports import student_table, summary_line

    exercises = args.path or default_exercises_dir()
    if not any(exercises.glob("ch[0-9][0-9]_*.py")):
        raise SteelKerasError(
            f"no exercise files (chNN_*.py) in {exercises}; give the folder "
            "that holds them with --path DIR"
        )
    limits = _limits(args)
    isolation = _isolation(args, limits)
    with tempfile.TemporaryDirectory(prefix="steel-keras-tests-") as snapshot:
        tests, hidden = _tests(args, exercises, chapter, Path(snapshot))
        print(f"grading {exercises} with {len(tests)} tests ...", flush=True)
        grade = grade_submission(exercises, tests, limits, hidden_dirs=hidden, isolation=isolation)
    print(student_table(grade))
    print(summary_line(grade, hidden_run=bool(hidden)))
    return 0 if grade.score >= grade.max_score else 1


def _grade_class(args: argparse.Namespace, chapter: str | None) -> int:
    from steel_keras.grading.discovery import student_folders
    from steel_keras.grading.grader import grade_submissions
    from steel_keras.grading.reports import write_grades_csv, write_results_json

    students = student_folders(args.submissions)
    limits = _limits(args)
    isolation = _isolation(args, limits)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="steel-keras-tests-") as snapshot:
        tests, hidden = _tests(args, None, chapter, Path(snapshot))

        def save(grade) -> None:
            write_results_json(
                grade, args.out / "students" / grade.student / "results.json", bool(hidden)
            )

        graded = grade_submissions(
            students,
            tests,
            limits,
            out=args.out,
            hidden_dirs=hidden,
            jobs=args.jobs,
            isolation=isolation,
            on_graded=save,
        )
    sheet = write_grades_csv(
        graded.grades, tests, args.out / "grades.csv", partial=graded.interrupted is not None
    )
    _print_grades(graded.grades)
    if graded.interrupted:
        names = ", ".join(graded.not_graded[:10]) + (" ..." if len(graded.not_graded) > 10 else "")
        print(
            f"interrupted by {graded.interrupted}: {sheet} holds the {len(graded.grades)} "
            f"students graded before it, marked partial; not graded: {names}",
            file=sys.stderr,
        )
        return 130 if graded.interrupted == "SIGINT" else 143
    print(
        f"graded {len(graded.grades)} students on {len(tests)} tests in "
        f"{time.monotonic() - start:.0f} s; grade sheet: {sheet}"
    )
    return 0


def _print_grades(grades) -> None:
    from steel_keras.grading.reports import format_points

    width = max((len(g.student) for g in grades), default=0)
    for grade in grades:
        print(
            f"  {grade.student:<{width}}  {format_points(grade.score):>5}/"
            f"{format_points(grade.max_score)}  ({grade.seconds:.1f} s)"
        )
