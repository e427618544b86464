"""Grade exercise folders: each in its own pytest process, with time, memory and output limits.

One submission is graded by :func:`grade_submission`:

1. pytest runs the graded tests in a child process (:mod:`steel_keras.grading.runner`) whose
   address space and file sizes are limited; the plugin stops a test after ``test_timeout``
   seconds and appends every step to an event file;
2. a watchdog here kills the child's whole process group when no event came for
   ``test_timeout`` plus a grace period (a loop that ignores signals) or when the submission's
   own ``timeout`` runs out;
3. when the child ended early (killed, ``os._exit``, a segfault), the test that was running
   scores zero — every test of the chapter when it died importing the exercise file — and a
   new child runs the tests not yet graded. Every run grades at least one test, so this ends.

:func:`grade_submissions` grades a folder of students, several at a time, with a progress bar.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import steel_keras
from steel_keras.errors import SteelKerasError
from steel_keras.grading import plugin

__all__ = [
    "Grade",
    "GradedTest",
    "Limits",
    "TestResult",
    "collect_tests",
    "grade_submission",
    "grade_submissions",
]

POLL_S = 0.1
PYTEST_OPTIONS = ["-p", plugin.PLUGIN_NAME, "-p", "no:cacheprovider", "--import-mode=importlib",
                  "-q", "--tb=no", "--no-header", "-rN", "-W", "ignore"]


@dataclass(frozen=True)
class GradedTest:
    """One graded test: ``id`` selects it (``/abs/test_x.py::name``), ``name`` is shown."""

    id: str
    name: str
    points: float
    visibility: str
    chapter: str


@dataclass(frozen=True)
class TestResult:
    """The points one test gave a submission, and why it gave no more."""

    __test__ = False  # not a pytest test class

    test: GradedTest
    score: float
    output: str


@dataclass(frozen=True)
class Limits:
    """What one submission may use.

    Attributes:
        timeout: seconds of wall-clock time for the whole submission.
        test_timeout: seconds one test may run before it is stopped and scores zero.
        memory_mb: address-space limit of the test process, in MiB (0: none).
        output_mb: the most a test may print, in MiB; also caps each log file (0: none).
        startup: seconds pytest may take to start and collect before the watchdog steps in.
        grace: seconds past ``test_timeout`` before the watchdog kills a test that did not stop.
    """

    timeout: float = 300.0
    test_timeout: float = 30.0
    memory_mb: int = 2048
    output_mb: int = 16
    startup: float = 60.0
    grace: float = 5.0


@dataclass
class Grade:
    """A submission's results, one per test, in the order the tests were collected."""

    student: str
    results: list[TestResult]
    seconds: float = 0.0
    runs: int = 0
    log_files: list[Path] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.test.points for r in self.results)

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    def visible_score(self) -> tuple[float, float]:
        """(points, out of) over the public tests only."""
        public = [r for r in self.results if r.test.visibility == "visible"]
        return sum(r.score for r in public), sum(r.test.points for r in public)


@dataclass(frozen=True)
class _RunEnding:
    returncode: int
    killed_for: str | None  # "stall", "deadline" or None


# --- collection ----------------------------------------------------------------------------


def collect_tests(files: Sequence[Path], hidden_dirs: Sequence[Path] = ()) -> list[GradedTest]:
    """Collect the graded tests of ``files`` (in a child process) with their points.

    Raises:
        SteelKerasError: no files, or a test file that pytest cannot collect.
    """
    if not files:
        raise SteelKerasError("no graded test files to run; check --chapter and the test folder")
    with tempfile.TemporaryDirectory(prefix="steel-keras-collect-") as work:
        events = Path(work) / "events.jsonl"
        cmd = _command(Path(work), Limits(memory_mb=0, output_mb=0), "--collect-only",
                       *map(str, files))
        env = _environment(Path(work), events, Limits(), hidden_dirs)
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=Limits().startup * 2, stdin=subprocess.DEVNULL)
        collected = [e for e in _read_events(events) if e["event"] == "collected"]
        if proc.returncode != 0 or not collected:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise SteelKerasError(f"could not collect the graded tests ({tail}); fix the test "
                                  "files or run pytest on them to see why")
    return [GradedTest(**t) for t in collected[0]["tests"]]


# --- one submission ------------------------------------------------------------------------


def grade_submission(
    exercises: Path | str,
    tests: Sequence[GradedTest],
    limits: Limits | None = None,
    *,
    student: str | None = None,
    log_dir: Path | None = None,
    hidden_dirs: Sequence[Path] = (),
) -> Grade:
    """Grade one folder of exercise files against ``tests`` (see the module docstring).

    Args:
        exercises: the folder holding ``chNN_*.py`` files, or ``"solutions"`` for the
            library's reference solutions.
        tests: what :func:`collect_tests` returned.
        limits: time, memory and output limits.
        student: the name in the grade (defaults to the folder's name).
        log_dir: where to keep each run's pytest output (``run-N.log``); none kept by default.
        hidden_dirs: folders whose tests are hidden (their output never shows source).
    """
    limits = limits or Limits()
    start = time.monotonic()
    grade = Grade(student or Path(exercises).name, [])
    results: dict[str, TestResult] = {}
    with tempfile.TemporaryDirectory(prefix="steel-keras-grade-") as tmp:
        work = Path(tmp)
        while pending := [t for t in tests if t.id not in results]:
            if time.monotonic() - start >= limits.timeout:
                _give_zero(results, pending, f"not run: the submission's time limit of "
                           f"{limits.timeout:g} s ran out")
                break
            grade.runs += 1
            events, ending, log = _run_once(exercises, pending, limits, work, grade.runs,
                                            start + limits.timeout, log_dir, hidden_dirs)
            grade.log_files.append(log)
            _record_run(results, pending, events, ending, limits)
    grade.results = [results[t.id] for t in tests]
    grade.seconds = time.monotonic() - start
    return grade


def _record_run(results: dict[str, TestResult], pending: list[GradedTest], events: list[dict],
                ending: _RunEnding, limits: Limits) -> None:
    """Take the results of one run; give zero to the tests the run's ending broke."""
    by_id = {t.id: t for t in pending}
    graded_before = len(results)
    for event in events:
        if event["event"] == "result" and event["id"] in by_id:
            test = by_id[event["id"]]
            results[test.id] = TestResult(test, float(event["score"]), event["output"])
    remaining = [t for t in pending if t.id not in results]
    culprits, importing = _culprits(events, remaining)
    if culprits:
        where = f"while importing {importing}.py, " if importing else ""
        _give_zero(results, culprits, where + _ending_reason(ending, limits))
    elif len(results) == graded_before:
        # Nothing graded and nobody to blame: running again would not help.
        normal = ending.killed_for is None and ending.returncode in (0, 1)
        why = "pytest did not select this test" if normal else _ending_reason(ending, limits)
        _give_zero(results, remaining, f"not run: {why}")


def _culprits(events: list[dict],
              remaining: list[GradedTest]) -> tuple[list[GradedTest], str | None]:
    """The test running when the process ended, or all its chapter's tests if it died
    importing the exercise file (then also that file's module name)."""
    running = [e for e in events if e["event"] in ("start", "result", "import", "imported")]
    if not running or running[-1]["event"] == "result":
        return [], None
    last = running[-1]
    starts = [e for e in running if e["event"] == "start"]
    current = [t for t in remaining if starts and t.id == starts[-1]["id"]]
    if last["event"] == "import" and current:
        chapter = current[0].chapter
        return [t for t in remaining if t.chapter == chapter], last["module"]
    return current, None


def _ending_reason(ending: _RunEnding, limits: Limits) -> str:
    if ending.killed_for == "stall":
        return (f"stopped: still running {limits.test_timeout + limits.grace:g} s after the test "
                f"started (limit {limits.test_timeout:g} s); a loop that ignores the time limit?")
    if ending.killed_for == "deadline":
        return f"stopped: the submission's time limit of {limits.timeout:g} s ran out"
    code = ending.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = {"SIGKILL": "; out of memory?", "SIGSEGV": " (segmentation fault)",
                "SIGXFSZ": f"; more than {limits.output_mb} MB of output?"}.get(name, "")
        return f"the test process was killed by {name}{hint}"
    if code == 2:
        return ("pytest was interrupted during this test; does the code raise "
                "KeyboardInterrupt or call pytest.exit()?")
    return (f"the test process exited with code {code}; "
            "does the code call os._exit() or exit()?")


def _give_zero(results: dict[str, TestResult], tests: Sequence[GradedTest], why: str) -> None:
    for test in tests:
        results.setdefault(test.id, TestResult(test, 0.0, why))


def _run_once(exercises: Path | str, pending: Sequence[GradedTest], limits: Limits, work: Path,
              run: int, deadline: float, log_dir: Path | None,
              hidden_dirs: Sequence[Path]) -> tuple[list[dict], _RunEnding, Path]:
    """One pytest child over ``pending``: its events, how it ended, its log file."""
    events = work / f"events-{run}.jsonl"
    log = (log_dir or work) / f"run-{run}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    scratch = work / f"cwd-{run}"
    scratch.mkdir()
    env = _environment(scratch, events, limits, hidden_dirs, exercises)
    cmd = _command(scratch, limits, *(t.id for t in pending))
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ending = _watch(proc, events, limits, deadline)
    finally:
        _kill_group(proc)
    return _read_events(events), ending, log


def _watch(proc: subprocess.Popen, events: Path, limits: Limits, deadline: float) -> _RunEnding:
    """Wait for the child; kill it when it stalls or the submission's time runs out."""
    started = time.time()
    while True:
        try:
            return _RunEnding(proc.wait(timeout=POLL_S), None)
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            return _RunEnding(_kill_group(proc), "deadline")
        last_event = events.stat().st_mtime if events.exists() else None
        quiet = time.time() - (last_event or started)
        allowed = limits.startup if last_event is None else limits.test_timeout + limits.grace
        if quiet > allowed:
            return _RunEnding(_kill_group(proc), "stall")


def _kill_group(proc: subprocess.Popen) -> int:
    """Kill the child and anything it started; return its exit status."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()


def _command(rootdir: Path, limits: Limits, *args: str) -> list[str]:
    ini = rootdir / "pytest.ini"
    ini.write_text("[pytest]\n")
    return [sys.executable, "-m", "steel_keras.grading.runner",
            "--memory-mb", str(limits.memory_mb), "--output-mb", str(limits.output_mb), "--",
            *PYTEST_OPTIONS, "-c", str(ini), "--rootdir", str(rootdir), *args]


def _environment(scratch: Path, events: Path, limits: Limits, hidden_dirs: Sequence[Path],
                 exercises: Path | str = plugin.SOLUTIONS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    package_parent = str(Path(steel_keras.__file__).resolve().parents[1])
    env.update({
        plugin.ENV_IMPL: (plugin.SOLUTIONS if exercises == plugin.SOLUTIONS
                          else str(Path(exercises).resolve())),
        plugin.ENV_REPORT: str(events),
        plugin.ENV_TEST_TIMEOUT: f"{limits.test_timeout:g}",
        plugin.ENV_HIDDEN: os.pathsep.join(str(Path(h).resolve()) for h in hidden_dirs),
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        # TensorFlow (the Keras exercises) starts a thread pool per core and glibc gives each
        # thread its own 64 MB malloc arena: capping both keeps the address space, which
        # RLIMIT_AS limits, near 1.5 GB with Keras loaded instead of growing with the cores.
        "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "MALLOC_ARENA_MAX": "2",
        "TMPDIR": str(scratch),
    })
    return env


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short when the process was killed mid-write
    return events


# --- a class -------------------------------------------------------------------------------


def grade_submissions(
    students: dict[str, Path],
    tests: Sequence[GradedTest],
    limits: Limits | None = None,
    *,
    out: Path | None = None,
    hidden_dirs: Sequence[Path] = (),
    jobs: int = 1,
    progress: bool = True,
) -> list[Grade]:
    """Grade ``{student: exercise folder}``, ``jobs`` at a time; grades sorted by student.

    With ``out``, each student's pytest logs go to ``out/STUDENT/logs/``.
    """
    from tqdm.auto import tqdm

    limits = limits or Limits()

    def one(name: str) -> Grade:
        log_dir = out / name / "logs" if out is not None else None
        return grade_submission(students[name], tests, limits, student=name, log_dir=log_dir,
                                hidden_dirs=hidden_dirs)

    grades = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, name) for name in students]
        bar = tqdm(as_completed(futures), total=len(futures), desc="grading", unit="student",
                   disable=not progress)
        for future in bar:
            grades.append(future.result())
    return sorted(grades, key=lambda g: g.student)
