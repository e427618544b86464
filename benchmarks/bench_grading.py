"""Grading a class of misbehaving submissions: wall time, and whether every score is right.

Writes ``--students`` submissions cycling through the kinds of
:mod:`steel_keras.grading.scenarios`: by default the :data:`~steel_keras.grading.scenarios.CLASSIC`
ones (correct, wrong answer, crash on import, ``os._exit`` on import and in a function,
KeyboardInterrupt, a Python loop, a loop that swallows the timeout, a loop in C, a segfault,
endless printing, eating memory, a missing file); ``--kinds all`` adds the hostile ones (forged
results, patched pytest, the library's or the key's answer imported, a detached daemon). Grades
them with ``--jobs`` at once against the public graded tests, in the strongest sandbox the
machine allows (``--isolation`` to force one), and checks each score against the one the
scenario must get.

    python benchmarks/bench_grading.py [--students 30] [--jobs 2] [--test-timeout 5]

Writes ``results/grading.json`` and ``results/grading.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from steel_keras.grading.discovery import graded_test_files, student_folders  # noqa: E402
from steel_keras.grading.grader import Limits, collect_tests, grade_submissions  # noqa: E402
from steel_keras.grading.sandbox import probe  # noqa: E402
from steel_keras.grading.scenarios import MISBEHAVIOURS, expected_score, write_class  # noqa: E402
from steel_keras.paths import project_root  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--test-timeout", type=float, default=5.0)
    # Keras (chapters 03-04) needs about 1.5 GB of address space: the grader's own default.
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--output-mb", type=int, default=4)
    parser.add_argument("--kinds", choices=("classic", "all"), default="classic")
    parser.add_argument("--isolation", choices=("auto", "bwrap", "uid", "none"), default="auto")
    args = parser.parse_args()
    limits = Limits(
        timeout=args.timeout,
        test_timeout=args.test_timeout,
        memory_mb=args.memory_mb,
        output_mb=args.output_mb,
    )
    isolation = probe(args.isolation)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        kinds = write_class(
            Path(tmp) / "submissions",
            args.students,
            None if args.kinds == "classic" else list(MISBEHAVIOURS),
        )
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        tests = collect_tests(graded_test_files(project_root() / "tests" / "grading", None))
        collected = time.perf_counter()
        graded = grade_submissions(
            student_folders(Path(tmp) / "submissions"),
            tests,
            limits,
            jobs=args.jobs,
            progress=False,
            isolation=isolation,
        )
        end = time.perf_counter()
    rows = _rows(graded.grades, kinds, tests)
    all_right = all(row[-1] == "yes" for row in rows)
    header = (
        f"Grading {len(graded.grades)} submissions ({len(tests)} tests, "
        f"{sum(t.points for t in tests):g} points) with {args.jobs} workers on "
        f"{os.cpu_count()} cpus, isolation {isolation.level} ({isolation.method}): "
        f"{end - start:.1f} s in all ({collected - start:.1f} s collecting); every score "
        f"right: {'yes' if all_right else 'NO'}; load average before: "
        f"{load_before:.1f}.\n\n"
    )
    table = header + markdown_table(
        ["submission", "students", "mean s", "mean runs", "score", "expected", "right"], rows
    )
    write_results("grading", {
        "students": len(graded.grades), "jobs": args.jobs, "limits": vars(args),
        "isolation": isolation.as_dict(limits),
        "seconds_total": round(end - start, 2), "seconds_collect": round(collected - start, 2),
        "load_average_before": load_before, "all_scores_right": all_right,
        "per_kind": {r[0]: {"students": r[1], "mean_seconds": float(r[2]),
                            "mean_runs": float(r[3]), "score": float(r[4]),
                            "expected": float(r[5])} for r in rows},
    }, table)  # fmt: skip
    return 0 if all_right else 1


def _rows(grades, kinds: dict[str, str], tests) -> list[list]:
    """One row per kind: students, mean seconds and judge runs, score, expected, right."""
    per_kind: dict[str, list] = defaultdict(list)
    for grade in grades:
        kind = kinds[grade.student]
        per_kind[kind].append((grade.seconds, grade.runs, grade.score, expected_score(kind, tests)))
    return [[kind, len(v), f"{sum(s for s, *_ in v) / len(v):.1f}",
             f"{sum(r for _, r, *_ in v) / len(v):.1f}", f"{v[0][2]:g}", f"{v[0][3]:g}",
             "yes" if all(got == want for *_, got, want in v) else "NO"]
            for kind, v in per_kind.items()]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
