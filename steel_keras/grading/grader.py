"""Grade exercise folders: a trusted judge per student, the student's code in a sandbox.

One submission is graded by :func:`grade_submission`:

1. the grader makes the student a :class:`~steel_keras.grading.sandbox.Sandbox` (a private copy
   of its files, an unprivileged uid, a cgroup: as much as the machine allows);
2. a **judge** process runs the graded tests with pytest (the instructor's test files, read by
   the grader itself from a private copy); its ``impl`` fixture sends each call to a **worker**
   in the sandbox, compares the values that come back, and appends every result to an event
   file in a folder the student cannot reach. The student's code never runs in the judge, so it
   can neither decide a test's outcome nor see a hidden test's source or expected values;
3. a watchdog here kills the judge when no event came for longer than a test may take, or when
   the submission's own ``timeout`` runs out; a new judge then runs the tests not yet graded.

Scores come from the judge's events only, for tests the grader collected itself, capped at
each test's points. :func:`grade_submissions` grades a class, several at a time; SIGTERM or
Ctrl-C stops every student's processes at once and returns the grades already finished.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import steel_keras
from steel_keras.errors import SteelKerasError
from steel_keras.grading import plugin
from steel_keras.grading.sandbox import Isolation, Limits, Sandbox, SubmissionError, probe

__all__ = [
    "ClassGrading",
    "Grade",
    "GradedTest",
    "Limits",
    "TestResult",
    "collect_tests",
    "grade_submission",
    "grade_submissions",
    "snapshot_tests",
]

POLL_S = 0.1
PYTEST_OPTIONS = [
    "-p",
    plugin.PLUGIN_NAME,
    "-p",
    "no:cacheprovider",
    "--import-mode=importlib",
    "-q",
    "--tb=no",
    "--no-header",
    "-rN",
    "-W",
    "ignore",
]


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


@dataclass
class Grade:
    """A submission's results, one per test, in the order the tests were collected."""

    student: str
    results: list[TestResult]
    seconds: float = 0.0
    runs: int = 0
    isolation: dict = field(default_factory=dict)

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
    killed_for: str | None  # "stall", "deadline", "stop" or None


# --- the tests ------------------------------------------------------------------------------


def snapshot_tests(
    public: Sequence[Path], hidden_dirs: Sequence[Path], into: Path
) -> tuple[list[Path], list[Path]]:
    """Copy the test files into ``into`` (a private folder) and return the copies' paths:
    (public test files, hidden folders). Grading reads only the copies, so nothing a student
    does to the originals during grading changes what the tests are."""
    into.mkdir(parents=True, exist_ok=True)
    os.chmod(into, 0o700)
    files = []
    for folder in sorted({p.parent for p in public}):
        target = into / f"public-{len(files)}"
        target.mkdir()
        for source in folder.glob("*.py"):
            shutil.copyfile(source, target / source.name)
        files += [target / p.name for p in public if p.parent == folder]
    hidden = []
    for i, folder in enumerate(hidden_dirs):
        target = into / f"hidden-{i}"
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", ".*"))
        hidden.append(target)
    return files, hidden


def collect_tests(files: Sequence[Path], hidden_dirs: Sequence[Path] = ()) -> list[GradedTest]:
    """Collect the graded tests of ``files`` (in a child process) with their points.

    Raises:
        SteelKerasError: no files, or a test file that pytest cannot collect.
    """
    if not files:
        raise SteelKerasError("no graded test files to run; check --chapter and the test folder")
    with tempfile.TemporaryDirectory(prefix="steel-keras-collect-") as work:
        events = Path(work) / "events.jsonl"
        cmd = _command(Path(work), "--collect-only", *map(str, files))
        env = _environment(Path(work), events, Limits(), hidden_dirs)
        proc = subprocess.run(
            cmd,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=Limits().startup * 2,
            stdin=subprocess.DEVNULL,
        )
        collected = [e for e in _read_events(events) if e["event"] == "collected"]
        if proc.returncode != 0 or not collected:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise SteelKerasError(
                f"could not collect the graded tests ({tail}); fix the test "
                "files or run pytest on them to see why"
            )
    tests = [GradedTest(**t) for t in collected[0]["tests"]]
    # Hidden tests run last, so nothing a student's code learns from their arguments can
    # show up in the output of a public test.
    return sorted(tests, key=lambda t: t.visibility == "hidden")


# --- one submission ------------------------------------------------------------------------


class _Stop:
    """Set when the grader is told to stop; running judges register here to be killed."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, tuple[subprocess.Popen, Sandbox | None]] = {}

    def add(self, proc: subprocess.Popen, sandbox: Sandbox | None) -> None:
        with self._lock:
            self._running[proc.pid] = (proc, sandbox)
        if self.event.is_set():
            self.kill_all()

    def remove(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.pop(proc.pid, None)

    def kill_all(self) -> None:
        """SIGKILL every judge and everything in every sandbox, at once."""
        with self._lock:
            running = list(self._running.values())
        for proc, _ in running:
            _kill_group(proc, wait=False)
        for _, sandbox in running:
            if sandbox is not None:
                sandbox.kill_all()


def grade_submission(
    exercises: Path | str,
    tests: Sequence[GradedTest],
    limits: Limits | None = None,
    *,
    student: str | None = None,
    log_dir: Path | None = None,
    hidden_dirs: Sequence[Path] = (),
    isolation: Isolation | None = None,
    stop: _Stop | None = None,
) -> Grade:
    """Grade one folder of exercise files against ``tests`` (see the module docstring).

    Args:
        exercises: the folder holding ``chNN_*.py`` files, or ``"solutions"`` for the
            library's reference solutions (trusted: called in the judge, no sandbox).
        tests: what :func:`collect_tests` returned.
        limits: time, memory and output limits.
        student: the name in the grade (defaults to the folder's name).
        log_dir: where to keep the judge's output (``run-N.log``) and the student's
            (``worker-N.log``); none kept by default.
        hidden_dirs: folders whose tests are hidden (their output never shows source).
        isolation: how to isolate the student's code; defaults to :func:`probe`'s strongest.
        stop: set by :func:`grade_submissions` on SIGTERM or Ctrl-C.
    """
    limits = limits or Limits()
    start = time.monotonic()
    grade = Grade(student or Path(exercises).name, [])
    results: dict[str, TestResult] = {}
    with tempfile.TemporaryDirectory(prefix="steel-keras-grade-") as tmp:
        sandbox = None
        try:
            if exercises != plugin.SOLUTIONS:
                isolation = isolation or probe()
                grade.isolation = isolation.as_dict(limits)
                sandbox = Sandbox(isolation, Path(exercises), limits)
            _run_until_graded(
                exercises,
                tests,
                limits,
                Path(tmp),
                grade,
                results,
                start,
                log_dir,
                hidden_dirs,
                sandbox,
                stop,
            )
        except SubmissionError as exc:
            _give_zero(results, tests, f"not graded: {exc}")
        finally:
            if sandbox is not None:
                sandbox.close()
    grade.results = [results[t.id] for t in tests if t.id in results]
    grade.seconds = time.monotonic() - start
    return grade


def _run_until_graded(
    exercises, tests, limits, work, grade, results, start, log_dir, hidden_dirs, sandbox, stop
) -> None:
    """Run judges over the tests not yet graded until each has a result (or time runs out)."""
    while pending := [t for t in tests if t.id not in results]:
        if stop is not None and stop.event.is_set():
            return
        if time.monotonic() - start >= limits.timeout:
            _give_zero(
                results,
                pending,
                f"not run: the submission's time limit of {limits.timeout:g} s ran out",
            )
            return
        grade.runs += 1
        events, ending = _run_once(
            exercises,
            pending,
            limits,
            work,
            grade.runs,
            start + limits.timeout,
            log_dir,
            hidden_dirs,
            sandbox,
            stop,
        )
        if ending.killed_for == "stop":
            return
        _record_run(results, pending, events, ending, limits)


def _record_run(
    results: dict[str, TestResult],
    pending: list[GradedTest],
    events: list[dict],
    ending: _RunEnding,
    limits: Limits,
) -> None:
    """Take the results of one run; give zero to the test the run's ending broke."""
    by_id = {t.id: t for t in pending}
    graded_before = len(results)
    for event in events:
        if event.get("event") == "result" and event.get("id") in by_id:
            test = by_id[event["id"]]
            score = test.points if event.get("passed") is True else 0.0
            results[test.id] = TestResult(test, score, str(event.get("output", ""))[:4000])
    remaining = [t for t in pending if t.id not in results]
    starts = [e.get("id") for e in events if e.get("event") == "start"]
    running = [t for t in remaining if starts and t.id == starts[-1]]
    if running:
        _give_zero(results, running, _ending_reason(ending, limits))
    elif len(results) == graded_before:
        # Nothing graded and nobody to blame: running again would not help.
        normal = ending.killed_for is None and ending.returncode in (0, 1)
        why = "pytest did not select this test" if normal else _ending_reason(ending, limits)
        _give_zero(results, remaining, f"not run: {why}")


def _ending_reason(ending: _RunEnding, limits: Limits) -> str:
    if ending.killed_for == "stall":
        return (
            f"stopped: the judge was still running this test {_allowed(limits):g} s after "
            "it started"
        )
    if ending.killed_for == "deadline":
        return f"stopped: the submission's time limit of {limits.timeout:g} s ran out"
    code = ending.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"the judge process was killed by {name}"
    return f"the judge process exited with code {code}"


def _give_zero(results: dict[str, TestResult], tests: Sequence[GradedTest], why: str) -> None:
    for test in tests:
        results.setdefault(test.id, TestResult(test, 0.0, why))


def _allowed(limits: Limits) -> float:
    """How long the judge may go without a new event while a test runs: importing the file in
    a fresh worker, then the test's own limit."""
    return limits.startup + limits.test_timeout + 2 * limits.grace


def _run_once(
    exercises,
    pending: Sequence[GradedTest],
    limits: Limits,
    work: Path,
    run: int,
    deadline: float,
    log_dir: Path | None,
    hidden_dirs: Sequence[Path],
    sandbox: Sandbox | None,
    stop: _Stop | None,
) -> tuple[list[dict], _RunEnding]:
    """One judge over ``pending``: its events and how it ended."""
    events = work / f"events-{run}.jsonl"
    log = (log_dir or work) / f"run-{run}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    scratch = work / f"cwd-{run}"
    scratch.mkdir()
    env = _environment(scratch, events, limits, hidden_dirs, exercises)
    if sandbox is not None:
        spec = {
            **sandbox.spec(),
            "limits": asdict(limits),
            "isolation": sandbox.isolation.describe(limits),
        }
        env[plugin.ENV_SANDBOX] = json.dumps(spec)
        env[plugin.ENV_LOGS] = str(log_dir or work)
    cmd = _command(scratch, *(t.id for t in pending))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if stop is not None:
        stop.add(proc, sandbox)
    try:
        ending = _watch(proc, events, limits, deadline, stop)
    finally:
        _kill_group(proc)
        if sandbox is not None:
            sandbox.kill_all()
        if stop is not None:
            stop.remove(proc)
    return _read_events(events), ending


def _watch(
    proc: subprocess.Popen, events: Path, limits: Limits, deadline: float, stop: _Stop | None
) -> _RunEnding:
    """Wait for the judge; kill it when it stalls, the time runs out or the grader stops."""
    started = time.time()
    while True:
        try:
            code = proc.wait(timeout=POLL_S)
            return _RunEnding(code, "stop" if stop and stop.event.is_set() else None)
        except subprocess.TimeoutExpired:
            pass
        if stop is not None and stop.event.is_set():
            return _RunEnding(_kill_group(proc), "stop")
        if time.monotonic() >= deadline:
            return _RunEnding(_kill_group(proc), "deadline")
        last_event = events.stat().st_mtime if events.exists() else None
        quiet = time.time() - (last_event or started)
        allowed = limits.startup if last_event is None else _allowed(limits)
        if quiet > allowed:
            return _RunEnding(_kill_group(proc), "stall")


def _kill_group(proc: subprocess.Popen, wait: bool = True) -> int | None:
    """Kill the judge and its process group (its workers die with it); its exit status."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait() if wait else None


def _command(rootdir: Path, *args: str) -> list[str]:
    ini = rootdir / "pytest.ini"
    ini.write_text("[pytest]\n")
    return [
        sys.executable,
        "-m",
        "pytest",
        *PYTEST_OPTIONS,
        "-c",
        str(ini),
        "--rootdir",
        str(rootdir),
        *args,
    ]


def _environment(
    scratch: Path,
    events: Path,
    limits: Limits,
    hidden_dirs: Sequence[Path],
    exercises: Path | str = plugin.SOLUTIONS,
) -> dict[str, str]:
    """The judge's environment (the student's worker gets none of it)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "STEEL_KERAS_GRADE_"))
    }
    package_parent = str(Path(steel_keras.__file__).resolve().parents[1])
    env.update(
        {
            plugin.ENV_IMPL: (
                plugin.SOLUTIONS
                if exercises == plugin.SOLUTIONS
                else str(Path(exercises).resolve())
            ),
            plugin.ENV_REPORT: str(events),
            plugin.ENV_TEST_TIMEOUT: f"{limits.test_timeout:g}",
            plugin.ENV_HIDDEN: os.pathsep.join(str(Path(h).resolve()) for h in hidden_dirs),
            "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            "MALLOC_ARENA_MAX": "2",
            "TMPDIR": str(scratch),
        }
    )
    return env


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the judge was killed mid-write
        if isinstance(event, dict):
            events.append(event)
    return events


# --- a class -------------------------------------------------------------------------------


@dataclass
class ClassGrading:
    """What :func:`grade_submissions` finished: the grades, and who was not graded if a signal
    stopped it (``interrupted`` names the signal)."""

    grades: list[Grade]
    not_graded: list[str]
    interrupted: str | None = None


def grade_submissions(
    students: dict[str, Path],
    tests: Sequence[GradedTest],
    limits: Limits | None = None,
    *,
    out: Path | None = None,
    hidden_dirs: Sequence[Path] = (),
    jobs: int = 1,
    progress: bool = True,
    isolation: Isolation | None = None,
    on_graded: Callable[[Grade], None] | None = None,
) -> ClassGrading:
    """Grade ``{student: exercise folder}``, ``jobs`` at a time; grades sorted by student.

    With ``out``, each student's logs go to ``out/students/STUDENT/logs/``. ``on_graded`` is
    called (in this thread) with each grade as soon as it is finished. SIGTERM and SIGINT
    (Ctrl-C) stop every student's processes at once; the grades finished before come back,
    with ``interrupted`` set.
    """
    from tqdm.auto import tqdm

    limits = limits or Limits()
    isolation = isolation or probe()
    stop = _Stop()

    def one(name: str) -> Grade | None:
        if stop.event.is_set():
            return None
        log_dir = out / "students" / name / "logs" if out is not None else None
        grade = grade_submission(
            students[name],
            tests,
            limits,
            student=name,
            log_dir=log_dir,
            hidden_dirs=hidden_dirs,
            isolation=isolation,
            stop=stop,
        )
        return None if stop.event.is_set() else grade

    grades: list[Grade] = []
    with _stop_on_signals(stop) as caught, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, name): name for name in students}
        bar = tqdm(total=len(futures), desc="grading", unit="student", disable=not progress)
        for future in as_completed(futures):
            grade = future.result()
            if grade is not None:
                grades.append(grade)
                if on_graded is not None:
                    on_graded(grade)
            bar.update()
        bar.close()
    done = {g.student for g in grades}
    return ClassGrading(
        sorted(grades, key=lambda g: g.student),
        [s for s in students if s not in done],
        caught.get("signal"),
    )


class _stop_on_signals:  # noqa: N801 - used as a context manager, like contextlib's
    """While inside: SIGTERM and SIGINT set ``stop`` and kill everything running at once."""

    def __init__(self, stop: _Stop) -> None:
        self.stop, self.caught, self.previous = stop, {}, {}

    def __enter__(self) -> dict:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self.caught

    def _handle(self, signum: int, frame: object) -> None:
        self.caught.setdefault("signal", signal.Signals(signum).name)
        self.stop.event.set()
        self.stop.kill_all()

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
