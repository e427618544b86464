"""``steel-keras course``: the course's own chores, one subcommand each.

    steel-keras course student-copy --out DIR [--solutions] [--force]
    steel-keras course sync [--check]
    steel-keras course check [--chapter N] [--timeout S] [--smoke] [--out DIR]

``student-copy`` writes the files a student receives (exercise stubs, public graded tests), or
with ``--solutions`` the instructor's copy with every exercise filled in. ``sync`` writes each
chapter's ``.ipynb`` from its jupytext ``.py`` (``--check``: only say which are stale). ``check``
executes the chapters, each in a fresh kernel, and reports which passed and how long each took.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "course"
HELP = "course chores: hand out the exercises, sync the notebooks, execute the chapters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="course_command", metavar="COMMAND",
                                parser_class=type(parser))
    sub.required = True
    copy = sub.add_parser("student-copy", help="write the files a student receives",
                          description="Write exercise stubs and public graded tests to DIR.")
    copy.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="the folder to create")
    copy.add_argument("--solutions", action="store_true",
                      help="fill every exercise with its reference solution (for instructors)")
    copy.add_argument("--force", action="store_true",
                      help="write into a folder that already has files")
    copy.set_defaults(course_run=_student_copy)

    sync = sub.add_parser("sync", help="write each chapter's .ipynb from its .py (jupytext)",
                          description="Write course/NN_slug.ipynb from course/NN_slug.py for "
                                      "every chapter, without outputs.")
    sync.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if a notebook is missing or stale")
    sync.set_defaults(course_run=_sync)

    check = sub.add_parser("check", help="execute the chapters and report which passed",
                           description="Execute each chapter top to bottom in a fresh kernel "
                                       "(STEEL_KERAS_SMOKE=1 or --smoke: small data, one "
                                       "epoch) and print which passed and how long each took; "
                                       "exit 1 if any failed.")
    check.add_argument("--chapter", type=_chapter_number, action="append", metavar="N",
                       help="run chapter N only (repeat for several); default: all")
    check.add_argument("--timeout", type=_seconds, default=1800.0, metavar="S",
                       help="seconds one chapter may run, kernel start included (default 1800)")
    check.add_argument("--smoke", action="store_true",
                       help="smoke mode for the chapters, as STEEL_KERAS_SMOKE=1 does")
    check.add_argument("--out", type=Path, metavar="DIR",
                       help="also write the executed notebooks, with outputs, to DIR")
    check.set_defaults(course_run=_check)


def _chapter_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"chapter must be a number like 3, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    return args.course_run(args)


def _student_copy(args: argparse.Namespace) -> int:
    from steel_keras.grading.student_copy import write_student_copy

    copy = write_student_copy(args.out, solutions=args.solutions, force=args.force)
    if copy.backed_up:
        print(f"moved {len(copy.backed_up)} changed file(s) to {copy.backup_dir} first: "
              + ", ".join(str(p.relative_to(copy.backup_dir)) for p in copy.backed_up))
    kind = "instructor copy with solutions" if args.solutions else "student copy"
    print(f"wrote the {kind} to {args.out} ({len(copy.files)} files, {len(copy.written)} "
          f"changed); grade it with:\n  steel-keras grade --path {args.out / 'exercises'}")
    return 0


#: What ``course sync`` and ``course check`` import: the ``course`` extra of pyproject.toml.
_SYNC_MODULES = ("nbformat", "jupytext")
_CHECK_MODULES = (*_SYNC_MODULES, "nbclient", "ipykernel")


def _sync(args: argparse.Namespace) -> int:
    from steel_keras.errors import require_modules

    require_modules("course sync", "course", *_SYNC_MODULES)
    from steel_keras.chapters.notebooks import out_of_sync, sync_notebooks

    if args.check:
        stale = out_of_sync()
        for notebook, why in stale.items():
            print(f"{notebook.name}: {why}")
        if stale:
            print("run `steel-keras course sync` (or `make notebooks`) to regenerate them")
            return 1
        print("every notebook matches its chapter script")
        return 0
    changed = sync_notebooks()
    for notebook in changed:
        print(f"wrote {notebook}")
    print(f"{len(changed)} notebook(s) written; the others were up to date")
    return 0


def _check(args: argparse.Namespace) -> int:
    import time

    from steel_keras.errors import require_modules
    from steel_keras.paths import check_output, project_root

    if args.out is not None:  # never over the chapters' own notebooks
        check_output(args.out, kind="dir", inputs=[project_root() / "course"])
    require_modules("course check", "course", *_CHECK_MODULES)
    from steel_keras.chapters import smoke_mode
    from steel_keras.chapters.check import check_chapters, format_result
    from steel_keras.chapters.notebooks import chapters

    chosen = chapters(numbers=args.chapter)
    smoke = True if args.smoke else None
    mode = "smoke mode" if args.smoke or smoke_mode() else "full mode"
    print(f"executing {len(chosen)} chapter(s) in {mode}, at most {args.timeout:g} s each",
          flush=True)
    start = time.monotonic()
    results = check_chapters(chosen, args.timeout, smoke=smoke, out=args.out,
                             report=lambda r: print(format_result(r), flush=True))
    failed = [r for r in results if not r.passed]
    total = time.monotonic() - start
    cpu = sum(r.cpu_seconds for r in results)
    print(f"{len(results) - len(failed)}/{len(results)} chapters passed in {total:.0f} s, "
          f"CPU {cpu:.0f} s ({mode})")
    return 1 if failed else 0
