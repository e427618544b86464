"""The pytest plugin behind the graded exercise tests: points, the ``impl`` fixture, timeouts.

It gives graded tests three things:

- the ``points(n)`` marker: a test is worth ``n`` points (1 without the marker), all or nothing;
- the ``impl`` fixture: the implementation under test, chosen once per run (see
  :func:`chosen_impl`): the library's reference solutions (``solutions``) or a folder of exercise
  files (``course/exercises``, a student's copy);
- with ``STEEL_KERAS_GRADE_TEST_TIMEOUT`` set, a per-test time limit: ``SIGALRM`` raises
  :class:`GradingTimeout` into a looping test (again every second if the code swallows it).

With ``STEEL_KERAS_GRADE_REPORT`` set, every step is appended to that file as one JSON line
(``collected``, ``start``, ``import``, ``imported``, ``result``) and flushed at once, so the grader
can tell which test was running when a submission killed its own process (``os._exit``, a
segfault, a loop in C that ignores signals) and resume with the tests after it.

Load it with ``-p steel_keras.grading.plugin`` or from a ``conftest.py`` with
:func:`register_from_conftest`. A test file says which chapter it grades by its name
(``test_ch01_*.py``) or a module attribute ``EXERCISE_CHAPTER = "ch01"``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ENV_IMPL = "STEEL_KERAS_GRADE_IMPL"
ENV_REPORT = "STEEL_KERAS_GRADE_REPORT"
ENV_TEST_TIMEOUT = "STEEL_KERAS_GRADE_TEST_TIMEOUT"
ENV_HIDDEN = "STEEL_KERAS_GRADE_HIDDEN"
SOLUTIONS = "solutions"
PLUGIN_NAME = "steel_keras.grading.plugin"
MAX_OUTPUT_CHARS = 2000

_CHAPTER_IN_NAME = re.compile(r"(?:^|_)(ch\d\d)(?:_|$|\.)")
_default_impl: str | None = None
_reports: dict[str, list[pytest.TestReport]] = {}
_modules: dict[tuple[str, str], ModuleType | SimpleNamespace | str] = {}


class GradingTimeout(BaseException):
    """Raised into a test that ran past its time limit.

    A ``BaseException`` so that ``except Exception`` in student code does not swallow it.
    """


class ExerciseLoadError(Exception):
    """The exercise file is missing, or importing it failed."""


# --- registration --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("steel-keras grading")
    group.addoption("--impl", default=None, metavar="solutions|DIR",
                    help=f"implementation the graded tests check (else ${ENV_IMPL})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): a graded test worth n points (default 1)")


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
    return (config.getoption("impl", default=None) or os.environ.get(ENV_IMPL)
            or _default_impl or SOLUTIONS)


def chapter_of(test_module: ModuleType) -> str:
    """The chapter (``"ch01"``) a test module grades: ``EXERCISE_CHAPTER`` or its file name."""
    chapter = getattr(test_module, "EXERCISE_CHAPTER", None)
    if chapter:
        return str(chapter)
    match = _CHAPTER_IN_NAME.search(Path(test_module.__file__).name)
    if not match:
        raise ExerciseLoadError(f"{test_module.__file__}: cannot tell which chapter it grades; "
                                "name it test_chNN_*.py or set EXERCISE_CHAPTER = 'chNN'")
    return match.group(1)


@pytest.fixture
def impl(request: pytest.FixtureRequest) -> ModuleType | SimpleNamespace:
    """The exercise functions under test, as attributes (``impl.decode_rle``)."""
    chapter = chapter_of(request.module)
    choice = chosen_impl(request.config)
    key = (choice, chapter)
    if key not in _modules:
        _modules[key] = _load(choice, chapter)
    loaded = _modules[key]
    if isinstance(loaded, str):
        raise ExerciseLoadError(loaded)
    return loaded


def _load(choice: str, chapter: str) -> ModuleType | SimpleNamespace | str:
    """The exercise functions, or why they could not be loaded (for every test that needs them)."""
    if choice == SOLUTIONS:
        from steel_keras.grading.solutions import solutions_for

        return SimpleNamespace(**solutions_for(chapter))
    try:
        path = exercise_file(Path(choice).resolve(), chapter)
    except ExerciseLoadError as exc:
        return str(exc)
    _event({"event": "import", "module": path.stem})
    try:
        module = _import_file(path)
    except BaseException as exc:  # noqa: BLE001 - a student's import may raise anything
        _event({"event": "imported", "module": path.stem, "ok": False})
        return f"importing {path.name} failed: {_describe(exc, path)}"
    _event({"event": "imported", "module": path.stem, "ok": True})
    return module


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
    raise ExerciseLoadError(f"{canonical} not found; put your {chapter} exercises in that file")


def _import_file(path: Path) -> ModuleType:
    name = f"_graded_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        # Lets one exercise file import another (``from ch01_data_and_rle import ...``).
        sys.path.append(str(path.parent))
    spec.loader.exec_module(module)
    return module


def _describe(exc: BaseException, path: Path) -> str:
    """``RuntimeError: boom (line 12)``: the error and the line of ``path`` that raised it."""
    text = str(exc).strip().splitlines()
    described = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
             if Path(f.filename) == path]
    if lines and not isinstance(exc, SyntaxError):
        described += f" (line {lines[-1]})"
    return described


# --- per-test timeout ----------------------------------------------------------------------


def _test_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_TEST_TIMEOUT, "0")))
    except ValueError:
        return 0.0


def _on_alarm(signum: int, frame: object) -> None:
    raise GradingTimeout(f"the test ran longer than its limit of {_test_timeout():g} s")


def _arm(item: pytest.Item, phase: str) -> None:
    limit = _test_timeout()
    if not limit:
        return
    if phase == "setup":
        item.stash[_DEADLINE] = time.monotonic() + limit
    remaining = item.stash.get(_DEADLINE, time.monotonic() + limit) - time.monotonic()
    if phase == "teardown":
        remaining = max(remaining, 1.0)
    signal.signal(signal.SIGALRM, _on_alarm)
    # Repeats every second, in case the code under test swallows the first one.
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.01), 1.0)


def _disarm() -> None:
    if _test_timeout():
        signal.setitimer(signal.ITIMER_REAL, 0)


_DEADLINE = pytest.StashKey[float]()


def _limited(item: pytest.Item, phase: str):
    """Run one phase of a test under its time limit (a hook wrapper's body)."""
    _arm(item, phase)
    try:
        return (yield)
    except KeyboardInterrupt as exc:
        if not os.environ.get(ENV_REPORT):
            raise
        # Under the grader nobody can press Ctrl-C in this process: the code under test raised
        # it. Fail this test instead of letting pytest end the whole run.
        raise StudentInterrupt("the code raised KeyboardInterrupt") from exc
    finally:
        _disarm()


class StudentInterrupt(Exception):
    """A KeyboardInterrupt raised by the code under test, while grading."""


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
        raise pytest.UsageError(f"{item.nodeid}: points marker needs a positive number, "
                                f"got {value!r}")
    return float(value)


def _hidden_dirs() -> list[Path]:
    return [Path(p).resolve() for p in os.environ.get(ENV_HIDDEN, "").split(os.pathsep) if p]


def visibility_of(item: pytest.Item) -> str:
    """``"hidden"`` for tests under a folder of ``$STEEL_KERAS_GRADE_HIDDEN``, else visible."""
    path = Path(item.path).resolve()
    return "hidden" if any(path.is_relative_to(h) for h in _hidden_dirs()) else "visible"


def locator(item: pytest.Item) -> str:
    """An id that selects the test from any folder: ``/abs/test_x.py::test_name[param]``."""
    return str(Path(item.path).resolve()) + item.nodeid[item.nodeid.index("::"):]


def display_name(item: pytest.Item) -> str:
    name = Path(item.path).name + item.nodeid[item.nodeid.index("::"):]
    return f"hidden/{name}" if visibility_of(item) == "hidden" else name


def pytest_collection_finish(session: pytest.Session) -> None:
    tests = []
    for item in session.items:
        module = getattr(item, "module", None)
        try:
            chapter = chapter_of(module) if module is not None else ""
        except ExerciseLoadError:
            chapter = ""
        tests.append({"id": locator(item), "name": display_name(item),
                      "points": points_of(item), "visibility": visibility_of(item),
                      "chapter": chapter})
    _event({"event": "collected", "tests": tests})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    test_id, points, visibility = locator(item), points_of(item), visibility_of(item)
    _event({"event": "start", "id": test_id})
    result = yield
    reports = _reports.pop(item.nodeid, [])
    passed = bool(reports) and all(r.passed for r in reports)
    _event({"event": "result", "id": test_id, "passed": passed,
            "score": points if passed else 0.0, "max_score": points,
            "output": "" if passed else failure_text(reports, visibility)})
    if "impl" in getattr(item, "fixturenames", ()):
        # Only graded tests count in the summary, not the rest of a session that loaded us.
        item.config.stash.setdefault(_SCORES, []).append((points if passed else 0.0, points,
                                                          visibility))
    return result


_SCORES = pytest.StashKey[list]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _reports.setdefault(report.nodeid, []).append(report)


def failure_text(reports: list[pytest.TestReport], visibility: str) -> str:
    """Why a test scored zero; for hidden tests only the kind of error, never source or values."""
    failed = next((r for r in reports if not r.passed), None)
    if failed is None:
        return "the test did not run"
    if failed.skipped:
        return "skipped (scores zero)"
    crash = getattr(failed.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(failed.longrepr)
    message = message.removeprefix(f"{__name__}.")
    if "GradingTimeout" in message:
        return f"timed out: {message.split(':', 1)[-1].strip()}"
    loading = message.startswith(ExerciseLoadError.__name__)
    where = "" if failed.when == "call" or loading else f" (in test {failed.when})"
    if visibility == "hidden":
        kind = message.split(":", 1)[0].strip()
        kind = kind if kind.replace(".", "").isidentifier() else "an error"
        return f"failed{where}: {kind} (details of hidden tests are not shown)"
    if loading:
        message = message.removeprefix(f"{ExerciseLoadError.__name__}: ")
    return (message + where)[:MAX_OUTPUT_CHARS]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    scores = config.stash.get(_SCORES, [])
    if not scores or os.environ.get(ENV_REPORT):
        return
    got = sum(s for s, _, v in scores if v == "visible")
    out_of = sum(m for _, m, v in scores if v == "visible")
    terminalreporter.write_line(f"graded tests on {chosen_impl(config)}: public tests: "
                                f"{got:g}/{out_of:g} points; hidden tests not run")
