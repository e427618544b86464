"""``steel-keras course``: the course's own chores, one subcommand each.

    steel-keras course student-copy --out DIR [--solutions] [--force]

writes the files a student receives (exercise stubs, public graded tests), or with
``--solutions`` the instructor's copy with every exercise filled in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "course"
HELP = "course chores: hand out the exercises (student-copy)"


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
    # Further subcommands (``check``: execute every chapter) register here the same way.


def run(args: argparse.Namespace) -> int:
    return args.course_run(args)


def _student_copy(args: argparse.Namespace) -> int:
    from steel_keras.grading.student_copy import write_student_copy

    written = write_student_copy(args.out, solutions=args.solutions, force=args.force)
    kind = "instructor copy with solutions" if args.solutions else "student copy"
    print(f"wrote the {kind} to {args.out} ({len(written)} files); grade it with:\n"
          f"  steel-keras grade --path {args.out / 'exercises'}")
    return 0
