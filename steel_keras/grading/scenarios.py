"""Submissions that misbehave on purpose, to test the grader and to try it before a real class.

Each :class:`Misbehaviour` starts from the reference solutions (an instructor's copy) and
breaks one thing: a wrong answer, a crash on import, ``os._exit`` in a function, loops that do
and do not yield to the per-test timeout, a segfault, endless printing, eating memory. It knows
which tests it breaks, so :func:`expected_score` says what the grader must give it.

    >>> from steel_keras.grading.scenarios import write_class  # doctest: +SKIP
    >>> kinds = write_class(Path("submissions"), n_students=30)  # doctest: +SKIP
    >>> # steel-keras grade --submissions submissions --out grades
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steel_keras.grading.grader import GradedTest
from steel_keras.grading.student_copy import solution_source
from steel_keras.paths import project_root

__all__ = ["MISBEHAVIOURS", "Misbehaviour", "breaks_test", "expected_score", "write_class",
           "write_submission"]


@dataclass(frozen=True)
class Misbehaviour:
    """One way a submission goes wrong.

    Attributes:
        name: short id, used in student folder names.
        chapter: the chapter file it changes (``"ch01"``).
        code: Python source added to the end of that file: a function defined again replaces
            the reference one; module-level code runs when the file is imported.
        breaks: the exercise functions whose tests must score zero; empty: the whole chapter.
        missing: the chapter file is left out of the submission.
    """

    name: str
    chapter: str
    code: str = ""
    breaks: tuple[str, ...] = ()
    missing: bool = False


MISBEHAVIOURS: dict[str, Misbehaviour] = {m.name: m for m in [
    Misbehaviour("correct", "ch01", breaks=("-",)),
    Misbehaviour("wrong_answer", "ch01", "def encode_rle(mask):\n    return ''\n",
                 ("encode_rle",)),
    Misbehaviour("import_error", "ch01", "raise RuntimeError('broken on import')\n"),
    Misbehaviour("exit_on_import", "ch01", "import os\nos._exit(3)\n"),
    Misbehaviour("missing_file", "ch02", missing=True),
    Misbehaviour("os_exit", "ch01", "def mask_area_from_rle(rle):\n    import os\n"
                 "    os._exit(0)\n", ("mask_area_from_rle",)),
    Misbehaviour("keyboard_interrupt", "ch02", "def class_balance(long_table):\n"
                 "    raise KeyboardInterrupt\n", ("class_balance",)),
    Misbehaviour("python_loop", "ch01", "def defect_free_ids(long_table, all_ids):\n"
                 "    while True:\n        pass\n", ("defect_free_ids",)),
    Misbehaviour("stubborn_loop", "ch02", "def empty_pair_share(long_table, n_images):\n"
                 "    while True:\n        try:\n            while True:\n                pass\n"
                 "        except BaseException:\n            pass\n", ("empty_pair_share",)),
    Misbehaviour("c_loop", "ch01", "def mask_area_from_rle(rle):\n"
                 "    return sum(range(10**15))\n", ("mask_area_from_rle",)),
    Misbehaviour("segfault", "ch01", "def defect_free_ids(long_table, all_ids):\n"
                 "    import ctypes\n    return ctypes.string_at(0)\n", ("defect_free_ids",)),
    Misbehaviour("prints_forever", "ch01", "def encode_rle(mask):\n    while True:\n"
                 "        print('x' * 1000)\n", ("encode_rle",)),
    Misbehaviour("eats_memory", "ch01", "def read_long_table(path):\n    blocks = []\n"
                 "    while True:\n        blocks.append(bytearray(64 * 2**20))\n",
                 ("read_long_table",)),
]}


def write_submission(folder: Path, kind: str, exercises_dir: Path | None = None) -> Path:
    """Write the reference solutions into ``folder``, broken the way ``kind`` says."""
    behaviour = MISBEHAVIOURS[kind]
    exercises_dir = exercises_dir or project_root() / "course" / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    for stub in sorted(exercises_dir.glob("ch[0-9][0-9]_*.py")):
        chapter = stub.name[:4]
        if chapter == behaviour.chapter and behaviour.missing:
            continue
        source = solution_source(stub.read_text(), chapter)
        if chapter == behaviour.chapter and behaviour.code:
            source += "\n\n" + behaviour.code
        (folder / stub.name).write_text(source)
    return folder


def write_class(out: Path, n_students: int, kinds: Sequence[str] | None = None) -> dict[str, str]:
    """Write ``n_students`` submissions cycling through ``kinds``; ``{student: kind}``."""
    kinds = list(kinds or MISBEHAVIOURS)
    students = {}
    for i in range(n_students):
        kind = kinds[i % len(kinds)]
        student = f"s{i + 1:02d}_{kind}"
        write_submission(out / student, kind)
        students[student] = kind
    return students


def breaks_test(kind: str, test: GradedTest) -> bool:
    """Whether a submission of ``kind`` must score zero on ``test``."""
    behaviour = MISBEHAVIOURS[kind]
    if test.chapter != behaviour.chapter:
        return False
    function_test = test.name.split("::", 1)[-1]
    return not behaviour.breaks or any(function_test.startswith(f"test_{name}")
                                       for name in behaviour.breaks)


def expected_score(kind: str, tests: Sequence[GradedTest]) -> float:
    """The points a submission of ``kind`` must get on ``tests``.

    A test breaks when it grades a broken function, which it says by its name:
    ``test_<function>...`` (hidden tests included).
    """
    return sum(t.points for t in tests if not breaks_test(kind, t))
