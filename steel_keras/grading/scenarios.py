"""Submissions that misbehave on purpose, to test the grader and to try it before a real class.

Each :class:`Misbehaviour` starts from the reference solutions (an instructor's copy) and
breaks one thing: a wrong answer, a crash on import, ``os._exit`` in a function, loops that do
and do not yield to the per-test timeout, a segfault, endless printing, eating memory. The
:data:`HOSTILE` ones attack the grader instead: forging results, patching pytest, importing the
answer from the library or the answer key, leaving processes behind. Each knows which tests it
breaks, so :func:`expected_score` says what the grader must give it.

    >>> from steel_keras.grading.scenarios import write_class  # doctest: +SKIP
    >>> kinds = write_class(Path("submissions"), n_students=30)  # doctest: +SKIP
    >>> # steel-keras grade --submissions submissions --out grades
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steel_keras.grading.grader import GradedTest
from steel_keras.grading.student_copy import solution_source
from steel_keras.paths import project_root

__all__ = [
    "CLASSIC",
    "DAEMON_MARK",
    "HOSTILE",
    "MISBEHAVIOURS",
    "Misbehaviour",
    "breaks_test",
    "expected_score",
    "write_class",
    "write_submission",
]


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


MISBEHAVIOURS: dict[str, Misbehaviour] = {
    m.name: m
    for m in [
        Misbehaviour("correct", "ch01", breaks=("-",)),
        Misbehaviour(
            "wrong_answer", "ch01", "def encode_rle(mask):\n    return ''\n", ("encode_rle",)
        ),
        Misbehaviour("import_error", "ch01", "raise RuntimeError('broken on import')\n"),
        Misbehaviour("exit_on_import", "ch01", "import os\nos._exit(3)\n"),
        Misbehaviour("missing_file", "ch02", missing=True),
        Misbehaviour(
            "os_exit",
            "ch01",
            "def mask_area_from_rle(rle):\n    import os\n    os._exit(0)\n",
            ("mask_area_from_rle",),
        ),
        Misbehaviour(
            "keyboard_interrupt",
            "ch02",
            "def class_balance(long_table):\n    raise KeyboardInterrupt\n",
            ("class_balance",),
        ),
        Misbehaviour(
            "python_loop",
            "ch01",
            "def defect_free_ids(long_table, all_ids):\n    while True:\n        pass\n",
            ("defect_free_ids",),
        ),
        Misbehaviour(
            "stubborn_loop",
            "ch02",
            "def empty_pair_share(long_table, n_images):\n"
            "    while True:\n        try:\n            while True:\n                pass\n"
            "        except BaseException:\n            pass\n",
            ("empty_pair_share",),
        ),
        Misbehaviour(
            "c_loop",
            "ch01",
            "def mask_area_from_rle(rle):\n    return sum(range(10**15))\n",
            ("mask_area_from_rle",),
        ),
        Misbehaviour(
            "segfault",
            "ch01",
            "def defect_free_ids(long_table, all_ids):\n"
            "    import ctypes\n    return ctypes.string_at(0)\n",
            ("defect_free_ids",),
        ),
        Misbehaviour(
            "prints_forever",
            "ch01",
            "def encode_rle(mask):\n    while True:\n        print('x' * 1000)\n",
            ("encode_rle",),
        ),
        Misbehaviour(
            "eats_memory",
            "ch01",
            "def read_long_table(path):\n    blocks = []\n"
            "    while True:\n        blocks.append(bytearray(64 * 2**20))\n",
            ("read_long_table",),
        ),
    ]
}


# The string in the command line of the process the ``forks_daemon`` kind leaves behind.
DAEMON_MARK = "steel-keras-hostile-daemon"

FORGE_RESULTS = """
import glob as _glob
import json as _json
import os as _os


def _forge():
    # Find the grader's event file (in this process's environment, or any process's) and
    # append a passing result worth 10,000 points for every test id in it.
    paths = {_os.environ.get("STEEL_KERAS_GRADE_REPORT", "")}
    for environ in _glob.glob("/proc/*/environ"):
        try:
            items = open(environ, "rb").read().split(b"\\0")
        except OSError:
            continue
        key = b"STEEL_KERAS_GRADE_REPORT="
        paths |= {i[len(key):].decode() for i in items if i.startswith(key)}
    for path in filter(None, paths):
        try:
            text = open(path).read()
            events = [_json.loads(line) for line in text.splitlines()]
            ids = {t["id"] for event in events for t in event.get("tests", [])}
            with open(path, "a") as f:
                for test_id in ids:
                    f.write(_json.dumps({"event": "result", "id": test_id, "passed": True,
                                         "score": 10000, "max_score": 10000, "output": ""}))
                    f.write("\\n")
        except (OSError, ValueError):
            pass


_forge()


def encode_rle(mask):
    raise NotImplementedError("a stub that forged its results")
"""

PATCH_PYTEST = """
try:
    import _pytest.reports as _reports

    _reports.TestReport.passed = property(lambda self: True)
    _reports.TestReport.failed = property(lambda self: False)
    _reports.TestReport.outcome = "passed"
except ImportError:
    pass


def encode_rle(mask):
    raise NotImplementedError("a stub that patched pytest")
"""

FORKS_DAEMON = f"""
import subprocess as _subprocess

_children = [_subprocess.Popen(["sleep", "1000"]) for _ in range(20)]
# A daemon in a session of its own, as `setsid` would leave it.
_subprocess.Popen(["sh", "-c", "while true; do sleep 1; done", "{DAEMON_MARK}"],
                  start_new_session=True, stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL)
"""

HOSTILE: dict[str, Misbehaviour] = {
    m.name: m
    for m in [
        Misbehaviour("forge_results", "ch01", FORGE_RESULTS, ("encode_rle",)),
        Misbehaviour("patch_pytest", "ch01", PATCH_PYTEST, ("encode_rle",)),
        Misbehaviour(
            "imports_answer", "ch01", "from steel_keras.rle import decode_rle\n", ("decode_rle",)
        ),
        Misbehaviour("imports_key", "ch02", "from steel_keras.grading.solutions import *\n"),
        Misbehaviour("forks_daemon", "ch02", FORKS_DAEMON, ("-",)),
    ]
}
CLASSIC = tuple(MISBEHAVIOURS)
MISBEHAVIOURS.update(HOSTILE)


@functools.lru_cache(maxsize=32)
def _reference(stub_source: str, chapter: str) -> str:
    return solution_source(stub_source, chapter)


def write_submission(folder: Path, kind: str, exercises_dir: Path | None = None) -> Path:
    """Write the reference solutions into ``folder``, broken the way ``kind`` says."""
    behaviour = MISBEHAVIOURS[kind]
    exercises_dir = exercises_dir or project_root() / "course" / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    for stub in sorted(exercises_dir.glob("ch[0-9][0-9]_*.py")):
        chapter = stub.name[:4]
        if chapter == behaviour.chapter and behaviour.missing:
            continue
        source = _reference(stub.read_text(), chapter)
        if chapter == behaviour.chapter and behaviour.code:
            source += "\n\n" + behaviour.code
        (folder / stub.name).write_text(source)
    return folder


def write_class(out: Path, n_students: int, kinds: Sequence[str] | None = None) -> dict[str, str]:
    """Write ``n_students`` submissions cycling through ``kinds`` (default: the
    :data:`CLASSIC` ones, which only misbehave); ``{student: kind}``."""
    kinds = list(kinds or CLASSIC)
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
    return not behaviour.breaks or any(
        function_test.startswith(f"test_{name}") for name in behaviour.breaks
    )


def expected_score(kind: str, tests: Sequence[GradedTest]) -> float:
    """The points a submission of ``kind`` must get on ``tests``.

    A test breaks when it grades a broken function, which it says by its name:
    ``test_<function>...`` (hidden tests included).
    """
    return sum(t.points for t in tests if not breaks_test(kind, t))
