"""The pytest plugin behind the graded exercise tests: points, the ``impl`` fixture, time limits.

It gives graded tests three things:

- the ``points(n)`` marker: a test is worth ``n`` points (1 without the marker), all or nothing;
- the ``impl`` fixture: the implementation under test, chosen once per run (see
  :func:`chosen_impl`). For the library's reference solutions (``solutions``) it holds the
  functions themselves. For a folder of exercise files it is a proxy
  (:class:`~steel_keras.grading.remote.RemoteChapter`): the student's code runs in a sandboxed
  worker, never in this process, and only the values it returns come back. Either way
  ``impl.harness(name, ...)`` runs a trusted helper of :mod:`~steel_keras.grading.harness`
  around an exercise whose arguments cannot cross a pipe (a Keras tensor, a callable);
- time limits: a call into the student's code stops at the test's deadline
  (``$STEEL_KERAS_GRADE_TEST_TIMEOUT``), importing an exercise file at the start-up limit, and
  ``SIGALRM`` stops a test that runs past them in this process.

With ``$STEEL_KERAS_GRADE_REPORT`` set, each step (``collected``, ``start``, ``result``) is
appended to that file as one JSON line for the grader. The grader passes the sandbox to use in
``$STEEL_KERAS_GRADE_SANDBOX``; run by hand (``pytest tests/grading``) the plugin makes its own,
as strong as the machine allows, and says which in the summary.

Load it with ``-p steel_keras.grading.plugin`` or from a ``conftest.py`` with
:func:`register_from_conftest`. A test file says which chapter it grades by its name
(``test_ch01_*.py``) or a module attribute ``EXERCISE_CHAPTER = "ch01"``.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import json
import os
import re
import signal
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

from steel_keras.grading.remote import (
    ExerciseLoadError,
    GradingTimeout,
    LocalImplementation,
    RemoteChapter,
    RemoteSession,
    WorkerFailure,
)

ENV_IMPL = "STEEL_KERAS_GRADE_IMPL"
ENV_REPORT = "STEEL_KERAS_GRADE_REPORT"
ENV_TEST_TIMEOUT = "STEEL_KERAS_GRADE_TEST_TIMEOUT"
ENV_HIDDEN = "STEEL_KERAS_GRADE_HIDDEN"
ENV_SANDBOX = "STEEL_KERAS_GRADE_SANDBOX"
ENV_LOGS = "STEEL_KERAS_GRADE_LOGS"
SOLUTIONS = "solutions"
PLUGIN_NAME = "steel_keras.grading.plugin"
MAX_OUTPUT_CHARS = 2000
_CHAPTER_IN_NAME = re.compile(r"(?:^|_)(ch\d\d)(?:_|$|\.)")
_default_impl: str | None = None
_reports: dict[str, list[pytest.TestReport]] = {}
_state: dict[str, object] = {}

__all__ = [
    "ExerciseLoadError",
    "GradingTimeout",
    "chapter_of",
    "chosen_impl",
    "exercise_file",
    "failure_text",
    "points_of",
    "register_from_conftest",
    "visibility_of",
]


# --- registration --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("steel-keras grading")
    group.addoption(
        "--impl",
        default=None,
        metavar="solutions|DIR",
        help=f"implementation the graded tests check (else ${ENV_IMPL})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): a graded test worth n points (default 1)")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = _state.pop("session", None)
    if session is not None:
        session.close()
    sandbox = _state.pop("sandbox", None)
    if sandbox is not None:
        sandbox.close()


def register_from_conftest(config: pytest.Config, default_impl: str | Path) -> None:
    """Load this plugin from a ``conftest.py`` unless ``-p`` already did; set the default impl.

    ``default_impl`` is used when neither ``--impl`` nor ``$STEEL_KERAS_GRADE_IMPL`` is given.
    """
    global _default_impl
    _default_impl = str(default_impl)
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        # register(), not import_plugin(): the conftest has imported this module already.
        config.pluginmanager.register(sys.modules[__name__], PLUGIN_NAME)


# --- which implementation ------------------------------------------------------------------


def chosen_impl(config: pytest.Config) -> str:
    """``--impl``, else ``$STEEL_KERAS_GRADE_IMPL``, else the conftest's default, else solutions."""
    return (
        config.getoption("impl", default=None)
        or os.environ.get(ENV_IMPL)
        or _default_impl
        or SOLUTIONS
    )


def chapter_of(test_module: ModuleType) -> str:
    """The chapter (``"ch01"``) a test module grades: ``EXERCISE_CHAPTER`` or its file name."""
    chapter = getattr(test_module, "EXERCISE_CHAPTER", None)
    if chapter:
        return str(chapter)
    match = _CHAPTER_IN_NAME.search(Path(test_module.__file__).name)
    if not match:
        raise ExerciseLoadError(
            f"{test_module.__file__}: cannot tell which chapter it grades; "
            "name it test_chNN_*.py or set EXERCISE_CHAPTER = 'chNN'"
        )
    return match.group(1)


@pytest.fixture
def impl(request: pytest.FixtureRequest) -> LocalImplementation | RemoteChapter:
    """The exercise functions under test, as attributes (``impl.decode_rle``)."""
    chapter = chapter_of(request.module)
    choice = chosen_impl(request.config)
    if choice == SOLUTIONS:
        from steel_keras.grading.solutions import solutions_for

        functions = solutions_for(chapter)
        _import_lazy_modules(functions.values())
        return LocalImplementation(**functions)
    return _session(choice).chapter(chapter, exercise_file)


def _import_lazy_modules(functions) -> None:
    """Import now, in the test's set-up, what the functions import when called (Keras takes
    seconds to import, which must not count against a test's time limit)."""
    for function in functions:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            for name in names:
                importlib.import_module(name)


def _session(choice: str) -> RemoteSession:
    """The student's worker for this run: in the grader's sandbox, or in one made here."""
    if "session" not in _state:
        if os.environ.get(ENV_SANDBOX):
            spec = json.loads(os.environ[ENV_SANDBOX])
        else:
            from steel_keras.grading.sandbox import Limits, Sandbox, probe

            limits = Limits(test_timeout=_test_timeout() or Limits.test_timeout)
            sandbox = Sandbox(probe(), Path(choice).resolve(), limits)
            _state["sandbox"] = sandbox
            spec = {
                **sandbox.spec(),
                "limits": asdict(limits),
                "isolation": sandbox.isolation.describe(limits),
            }
        logs = os.environ.get(ENV_LOGS)
        _state["session"] = RemoteSession(spec, Path(logs) if logs else None)
        _state["isolation"] = spec.get("isolation", spec["level"])
    return _state["session"]


def exercise_file(folder: Path, chapter: str) -> Path:
    """The exercise file of ``chapter`` in ``folder``: its canonical name, else the only match."""
    from steel_keras.grading.solutions import module_name

    canonical = folder / f"{module_name(chapter)}.py"
    if canonical.is_file():
        return canonical
    candidates = sorted(folder.glob(f"{chapter}_*.py"))
    if len(candidates) == 1:
        return candidates[0]
    if not folder.is_dir():
        raise ExerciseLoadError(f"exercise folder {folder} does not exist")
    raise ExerciseLoadError(
        f"{canonical.name} not found; put your {chapter} exercises in that file"
    )


# --- time limits ---------------------------------------------------------------------------


def _test_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_TEST_TIMEOUT, "0")))
    except ValueError:
        return 0.0


def _on_alarm(signum: int, frame: object) -> None:
    raise GradingTimeout(f"the test ran longer than its limit of {_test_timeout():g} s")


def _phase_limit(phase: str) -> float:
    """Seconds a phase may take in this process: the call, the test's limit (calls into the
    student's code stop at it; the alarm is a backstop a second later); the set-up may import
    the exercise file in the worker first."""
    limit = _test_timeout()
    session = _state.get("session")
    startup = float(session.limits["startup"]) if session is not None else 60.0
    return {"setup": startup + limit, "call": limit + 1.0, "teardown": 5.0}[phase]


def _limited(item: pytest.Item, phase: str):
    """Run one phase of a test under its time limit (a hook wrapper's body)."""
    limit = _test_timeout()
    session = _state.get("session")
    if limit and phase == "call" and isinstance(session, RemoteSession):
        session.deadline = time.monotonic() + limit
    if limit:
        signal.signal(signal.SIGALRM, _on_alarm)
        # Repeats every second, in case the test's own code swallows the first one.
        signal.setitimer(signal.ITIMER_REAL, _phase_limit(phase), 1.0)
    try:
        return (yield)
    finally:
        if limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(session, RemoteSession):
            session.deadline = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    return (yield from _limited(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _limited(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    return (yield from _limited(item, "teardown"))


# --- the event report ----------------------------------------------------------------------


def _event(payload: dict) -> None:
    path = os.environ.get(ENV_REPORT)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(payload) + "\n")


def points_of(item: pytest.Item) -> float:
    """The points a test is worth: its ``points`` marker, else 1."""
    marker = item.get_closest_marker("points")
    if marker is None:
        return 1.0
    value = marker.args[0] if marker.args else marker.kwargs.get("n")
    if not isinstance(value, int | float) or value <= 0:
        raise pytest.UsageError(
            f"{item.nodeid}: points marker needs a positive number, got {value!r}"
        )
    return float(value)


def _hidden_dirs() -> list[Path]:
    return [Path(p).resolve() for p in os.environ.get(ENV_HIDDEN, "").split(os.pathsep) if p]


def visibility_of(item: pytest.Item) -> str:
    """``"hidden"`` for tests under a folder of ``$STEEL_KERAS_GRADE_HIDDEN``, else visible."""
    path = Path(item.path).resolve()
    return "hidden" if any(path.is_relative_to(h) for h in _hidden_dirs()) else "visible"


def locator(item: pytest.Item) -> str:
    """An id that selects the test from any folder: ``/abs/test_x.py::test_name[param]``."""
    return str(Path(item.path).resolve()) + item.nodeid[item.nodeid.index("::") :]


def display_name(item: pytest.Item) -> str:
    name = Path(item.path).name + item.nodeid[item.nodeid.index("::") :]
    return f"hidden/{name}" if visibility_of(item) == "hidden" else name


def pytest_collection_finish(session: pytest.Session) -> None:
    tests = []
    for item in session.items:
        module = getattr(item, "module", None)
        try:
            chapter = chapter_of(module) if module is not None else ""
        except ExerciseLoadError:
            chapter = ""
        tests.append(
            {
                "id": locator(item),
                "name": display_name(item),
                "points": points_of(item),
                "visibility": visibility_of(item),
                "chapter": chapter,
            }
        )
    _event({"event": "collected", "tests": tests})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    test_id, points, visibility = locator(item), points_of(item), visibility_of(item)
    _event({"event": "start", "id": test_id})
    result = yield
    reports = _reports.pop(item.nodeid, [])
    passed = bool(reports) and all(r.passed for r in reports)
    _event(
        {
            "event": "result",
            "id": test_id,
            "passed": passed,
            "score": points if passed else 0.0,
            "max_score": points,
            "output": "" if passed else failure_text(reports, visibility),
        }
    )
    if "impl" in getattr(item, "fixturenames", ()):
        # Only graded tests count in the summary, not the rest of a session that loaded us.
        item.config.stash.setdefault(_SCORES, []).append(
            (points if passed else 0.0, points, visibility)
        )
    return result


_SCORES = pytest.StashKey[list]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _reports.setdefault(report.nodeid, []).append(report)


def failure_text(reports: list[pytest.TestReport], visibility: str) -> str:
    """Why a test scored zero. For hidden tests only the kind of error, and only a kind the
    student cannot choose (a builtin exception or the grader's own), never a message: it may
    hold the test's values, or what the student's code learnt from its arguments."""
    failed = next((r for r in reports if not r.passed), None)
    if failed is None:
        return "the test did not run"
    if failed.skipped:
        return "skipped (scores zero)"
    crash = getattr(failed.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(failed.longrepr)
    ours = message.startswith(_OURS)
    message = message.removeprefix(_OURS)
    kind = message.split(":", 1)[0].strip()
    where = "" if failed.when == "call" or ours else f" (in test {failed.when})"
    if visibility == "hidden":
        known = ours or isinstance(getattr(builtins, kind, None), type)
        return (
            f"failed{where}: {kind if known else 'an error'} (details of hidden tests are "
            "not shown)"
        )
    if ours and kind in (GradingTimeout.__name__, WorkerFailure.__name__):
        message = (
            f"{'timed out' if kind == GradingTimeout.__name__ else 'stopped'}: "
            f"{message.split(':', 1)[-1].strip()}"
        )
    elif ours:
        message = message.split(":", 1)[-1].strip()
    return (" ".join(message.split()) + where)[:MAX_OUTPUT_CHARS]


_OURS = "steel_keras.grading.remote."


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    scores = config.stash.get(_SCORES, [])
    if not scores or os.environ.get(ENV_REPORT):
        return
    if "isolation" in _state:
        terminalreporter.write_line(str(_state["isolation"]))
    got = sum(s for s, _, v in scores if v == "visible")
    out_of = sum(m for _, m, v in scores if v == "visible")
    terminalreporter.write_line(
        f"graded tests on {chosen_impl(config)}: public tests: "
        f"{got:g}/{out_of:g} points; hidden tests not run"
    )
