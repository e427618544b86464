"""The judge's side of a student's code: a proxy whose functions run in a sandboxed worker.

The graded tests run in the judge, a process that never imports student code. Their ``impl``
fixture is a :class:`RemoteChapter`: ``impl.decode_rle(rle, shape)`` sends the call to the worker
(:mod:`~steel_keras.grading.worker`) over a pipe the judge owns, waits at most until the test's
deadline, and returns the decoded value (:mod:`~steel_keras.grading.wire`); the test compares
it with what it expects. An exception raised by the student's function is raised again here as
a class with the same builtin base (``pytest.raises(ValueError)`` works), named after the
student's class. What ends the worker (a timeout, ``os._exit``, a crash, printing without end,
a reply too large) fails the test with a :class:`WorkerFailure` that ``except Exception`` in a
test cannot catch, and the next test gets a fresh worker.

:class:`LocalImplementation` gives the same interface over functions in this process: the
reference solutions, which are trusted.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from steel_keras.grading import harness as harness_module
from steel_keras.grading import wire
from steel_keras.grading.library_check import library_uses
from steel_keras.grading.sandbox import stop_worker, worker_command

__all__ = [
    "ExerciseLoadError",
    "GradingTimeout",
    "LibraryAnswerImported",
    "LocalImplementation",
    "RemoteChapter",
    "RemoteSession",
    "StudentBaseException",
    "WorkerFailure",
]

MB = 2**20


class GradingTimeout(BaseException):
    """A test ran past its time limit. A ``BaseException``: ``except Exception`` cannot catch it."""


class WorkerFailure(BaseException):
    """The student's process ended, was stopped, or replied with something unreadable."""


class LibraryAnswerImported(BaseException):  # noqa: N818 - read as a sentence in messages
    """The exercise uses the library, which holds its answer."""


class StudentBaseException(BaseException):
    """The student's code raised ``KeyboardInterrupt``, ``SystemExit`` or another non-Exception."""


class ExerciseLoadError(Exception):
    """The exercise file is missing, or importing it failed."""


# --- the worker process ---------------------------------------------------------------------


class WorkerClient:
    """One worker process in the sandbox of ``spec``; requests and replies over two pipes."""

    def __init__(self, spec: dict, log: Path | None = None) -> None:
        self.spec = spec
        limits = spec["limits"]
        self.max_reply = int(limits["reply_mb"]) * MB
        self.max_output = int(limits["output_mb"]) * MB
        self.log = log
        self.loaded: dict[str, list[str]] = {}
        self.flooded = False
        self.proc: subprocess.Popen | None = None

    def start(self, deadline: float) -> None:
        """Start the worker and wait for it to say it is ready."""
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        cmd = worker_command(
            self.spec,
            [self.spec["worker"], json.dumps(self.spec["config"]), str(req_r), str(rep_w)],
        )
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.spec["cwd"],
                env=self.spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(req_r, rep_w),
                start_new_session=True,
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self._drain = threading.Thread(target=self._drain_output, daemon=True)
        self._drain.start()
        reply = self._read(deadline, "starting")
        if not reply.get("ready"):
            self.stop()
            raise WorkerFailure("the worker did not start")

    def _drain_output(self) -> None:
        """Keep the student's output (up to the limit) and stop a worker that prints too much."""
        total = 0
        out = self.log.open("ab") if self.log else None
        try:
            while chunk := self.proc.stdout.read1(65536):
                if out and total < self.max_output:
                    out.write(chunk[: self.max_output - total])
                total += len(chunk)
                if self.max_output and total > self.max_output and not self.flooded:
                    self.flooded = True
                    self._kill_now()
        except (OSError, ValueError):
            pass
        finally:
            if out:
                out.close()

    def _kill_now(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            for child in children.split():
                with contextlib.suppress(OSError):
                    os.kill(int(child), signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, message: dict, deadline: float, doing: str) -> dict:
        """Send ``message``, return the reply; on any failure stop the worker and raise
        :class:`GradingTimeout` or :class:`WorkerFailure` saying what happened while ``doing``."""
        buffers: list[bytes] = []
        try:
            header = {
                k: wire.encode(v, buffers, (tempfile.gettempdir(),)) for k, v in message.items()
            }
        except wire.WireError as exc:
            raise WorkerFailure(f"the test's arguments cannot be sent: {exc}") from None
        self._write(header, buffers, deadline, doing)
        return self._read(deadline, doing)

    def _write(self, header: dict, buffers: list[bytes], deadline: float, doing: str) -> None:
        header["_buffers"] = [len(b) for b in buffers]
        text = json.dumps(header).encode()
        body = b"".join([struct.pack("<I", len(text)), text, *buffers])
        data = memoryview(struct.pack("<Q", len(body)) + body)
        os.set_blocking(self._req_w, False)
        while data:
            self._wait(self._req_w, deadline, doing, write=True)
            try:
                data = data[os.write(self._req_w, data) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise self._ended(doing) from None

    def _read(self, deadline: float, doing: str) -> dict:
        buffer, need, length = bytearray(), 8, None
        while len(buffer) < need:
            self._wait(self._rep_r, deadline, doing)
            chunk = os.read(self._rep_r, min(need - len(buffer), 4 * MB))
            if not chunk:
                raise self._ended(doing)
            buffer += chunk
            if length is None and len(buffer) == 8:
                (length,) = struct.unpack("<Q", buffer)
                if length > self.max_reply:
                    self.stop()
                    raise WorkerFailure(
                        f"{doing}: the reply was {length / MB:.0f} MiB, over the "
                        f"limit of {self.max_reply // MB} MiB"
                    )
                need = 8 + length
        try:
            return wire.decode_frame(bytes(buffer[8:]))
        except wire.WireError as exc:
            self.stop()
            raise WorkerFailure(f"{doing}: unreadable reply ({exc})") from None

    def _wait(self, fd: int, deadline: float, doing: str, write: bool = False) -> None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise GradingTimeout(
                    f"{doing}: still running at the time limit; a loop that never ends?"
                )
            ready = (
                select.select([], [fd], [], remaining)
                if write
                else select.select([fd], [], [], remaining)
            )
            if any(ready):
                return

    def _ended(self, doing: str) -> WorkerFailure:
        natural = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            natural = self.proc.wait(timeout=1)
        stopped = self.stop()
        code = natural if natural is not None else stopped
        if self.flooded:
            return WorkerFailure(
                f"{doing}: stopped after printing more than {self.max_output // MB} MiB"
            )
        return WorkerFailure(f"{doing}: the process ended ({_exit_reason(code)})")

    def stop(self) -> int | None:
        """Kill the worker and everything it started; its exit status."""
        if self.proc is None:
            return None
        code = stop_worker(self.proc, self.spec)
        self._drain.join(timeout=5)
        for fd in (self._req_w, self._rep_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdout.close()
        self.proc = None
        return code


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "it was not running"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        hint = {
            "SIGKILL": "; out of memory, or stopped",
            "SIGSEGV": ": a segmentation fault",
            "SIGXFSZ": ": a file over the size limit",
        }.get(name, "")
        return f"killed by {name}{hint}"
    return f"exit code {code}; does the code call os._exit() or exit()?"


# --- exceptions from the student's code -----------------------------------------------------

_CLASSES: dict[tuple[str, str], type] = {}


def student_exception(error: dict) -> BaseException:
    """The exception a reply's ``error`` describes, as an instance the test can catch."""
    message = str(error.get("message", ""))
    name = str(error.get("type", "Exception")).split(".")[-1] or "Exception"
    where = error.get("where")
    if error.get("library"):
        return LibraryAnswerImported(message)
    base = next(
        (
            getattr(builtins, b)
            for b in error.get("bases", [])
            if isinstance(getattr(builtins, b, None), type)
            and issubclass(getattr(builtins, b), Exception)
        ),
        None,
    )
    if base is None:
        return StudentBaseException(f"the code raised {name}" + (f": {message}" if message else ""))
    key = (name, base.__name__)
    if key not in _CLASSES:
        try:
            # "builtins": shown as ``ValueError: ...``, like the student's own traceback.
            _CLASSES[key] = type(name, (base,), {"__module__": "builtins"})
            _CLASSES[key](message)
        except TypeError:  # a base whose constructor wants more than a message
            _CLASSES[key] = type(name, (Exception,), {"__module__": "builtins"})
    exc = _CLASSES[key](message)
    if where:
        exc.add_note(f"(raised at {where})")
    exc.student_where = where
    return exc


# --- one student's implementation -----------------------------------------------------------


class RemoteSession:
    """A student's exercises for one judge: the worker, which files loaded, the static check.

    Args:
        spec: the sandbox (:meth:`Sandbox.spec`), with ``limits`` and the exercise folder
            (``cwd``: the private copy).
        log_dir: where the student's output goes (``worker-N.log``); none kept if None.
    """

    def __init__(self, spec: dict, log_dir: Path | None = None) -> None:
        self.spec, self.log_dir = spec, log_dir
        self.limits = spec["limits"]
        self.folder = Path(spec["cwd"])
        self.worker: WorkerClient | None = None
        self.starts = 0
        self.failed: dict[str, str] = {}
        self.flagged: dict[str, dict[str, str]] = {}
        self.deadline: float | None = None

    def chapter(self, chapter: str, exercise_file: Callable[[Path, str], Path]) -> RemoteChapter:
        """The proxy of a chapter's exercise file, loaded in the worker (raises
        :class:`ExerciseLoadError` if it is missing or fails to import)."""
        path = exercise_file(self.folder, chapter)
        module = path.stem
        if module not in self.flagged:
            source = path.read_text(encoding="utf-8", errors="replace")
            self.flagged[module] = library_uses(source, _top_level_functions(source))
        self._load(module, path.name)
        return RemoteChapter(self, module, path.name)

    def _load(self, module: str, file_name: str) -> None:
        if module in self.failed:
            raise ExerciseLoadError(self.failed[module])
        if self.worker is not None and module in self.worker.loaded:
            return
        doing = f"importing {file_name}"
        deadline = time.monotonic() + float(self.limits["startup"])
        try:
            worker = self._worker(deadline)
            reply = worker.request(
                {"op": "load", "module": module, "file": file_name}, deadline, doing
            )
        except (GradingTimeout, WorkerFailure) as exc:
            self.worker = None
            self.failed[module] = f"{exc}"
            raise ExerciseLoadError(self.failed[module]) from None
        if not reply.get("ok"):
            exc = student_exception(reply["error"])
            where = f" ({reply['error']['where']})" if reply["error"].get("where") else ""
            self.failed[module] = f"{doing} failed: {_one_line(exc)}{where}"
            raise ExerciseLoadError(self.failed[module])
        worker.loaded[module] = list(reply.get("functions", []))

    def _worker(self, deadline: float) -> WorkerClient:
        if self.worker is not None and self.worker.alive:
            return self.worker
        self.starts += 1
        log = self.log_dir / f"worker-{self.starts}.log" if self.log_dir else None
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
        self.worker = WorkerClient(self.spec, log)
        try:
            self.worker.start(deadline)
        except BaseException:
            self.worker = None
            raise
        return self.worker

    def request(self, module: str, message: dict, doing: str) -> dict:
        """Send a call to the worker, which must have ``module`` loaded."""
        deadline = self.deadline or time.monotonic() + float(self.limits["test_timeout"])
        worker = self.worker
        if worker is None or not worker.alive or module not in worker.loaded:
            raise WorkerFailure(f"{doing}: the worker stopped earlier in this test")
        try:
            return worker.request(message, deadline, doing)
        except BaseException:
            # Also a signal (the judge's own time limit) landing mid-call: the worker's state is
            # unknown, so the next test gets a fresh one.
            worker.stop()
            self.worker = None
            raise

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


def _top_level_functions(source: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    except (SyntaxError, ValueError):
        return []


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class RemoteChapter:
    """``impl`` for a student's chapter: attributes are functions that run in the worker."""

    def __init__(self, session: RemoteSession, module: str, file_name: str) -> None:
        self._session, self._module, self._file = session, module, file_name

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("_"):
            raise AttributeError(name)
        self._check(name)
        return lambda *args, **kwargs: self._call(
            {"op": "call", "function": name}, args, kwargs, f"calling {name}"
        )

    def _check(self, name: str) -> None:
        flagged = self._session.flagged.get(self._module, {})
        if name in flagged:
            raise LibraryAnswerImported(flagged[name])
        worker = self._session.worker
        if worker is not None and name not in worker.loaded.get(self._module, [name]):
            raise AttributeError(f"{self._file} has no function {name}")

    def harness(self, name: str, *args, **kwargs):
        """Run the trusted helper ``name`` of :mod:`~steel_keras.grading.harness` on this
        chapter's functions in the worker; return its data."""
        for used in harness_module.exercises_used(name, args):
            self._check(used)
        return self._call({"op": "harness", "name": name}, args, kwargs, f"running {name}")

    def _call(self, message: dict, args: tuple, kwargs: dict, doing: str):
        message = {**message, "module": self._module, "args": list(args), "kwargs": kwargs}
        reply = self._session.request(self._module, message, doing)
        if not reply.get("ok"):
            if reply["error"].get("type") == "UnsendableValue":
                # Not an exception of the student's: no ``pytest.raises`` may take it for one.
                raise WorkerFailure(f"{doing}: {reply['error'].get('message', '')}")
            raise student_exception(reply["error"])
        for index, value in reply.get("mutated") or []:
            _write_back(args, index, value)
        return reply.get("value")


def _write_back(args: tuple, index, value) -> None:
    """Copy an array the student's function changed in place back into the test's array, as if
    the call had run here (tests check that inputs are left alone)."""
    if not isinstance(index, int) or not 0 <= index < len(args):
        return
    original = args[index]
    if (
        isinstance(original, np.ndarray)
        and isinstance(value, np.ndarray)
        and original.shape == value.shape
        and original.dtype == value.dtype
        and original.flags.writeable
    ):
        np.copyto(original, value)


class LocalImplementation(SimpleNamespace):
    """``impl`` over functions in this process (the reference solutions), with ``harness``."""

    def harness(self, name: str, *args, **kwargs):
        """Run the helper ``name`` on these functions, here."""
        return getattr(harness_module, name)(self, *args, **kwargs)
