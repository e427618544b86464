"""The worker and its sandbox, for real: what student code can see, reach and do from inside.

Each test writes a small exercise file, starts a real worker through the judge's proxy
(:class:`~steel_keras.grading.remote.RemoteSession`) in the strongest sandbox this machine
allows, calls its functions and checks what comes back: values, errors, crashes, limits.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from steel_keras.errors import SteelKerasError
from steel_keras.grading.plugin import exercise_file
from steel_keras.grading.remote import (
    GradingTimeout,
    LibraryAnswerImported,
    RemoteSession,
    StudentBaseException,
    WorkerFailure,
)
from steel_keras.grading.sandbox import Limits, Sandbox, probe

REPO = Path(__file__).resolve().parents[1]
ISOLATION = probe()


class Student:
    """A worker over one exercise file (as ``ch01_data_and_rle.py``) written from ``code``."""

    def __init__(self, folder: Path, code: str, isolation=None, **limits) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ch01_data_and_rle.py").write_text(code)
        self.limits = Limits(test_timeout=limits.pop("test_timeout", 5), **limits)
        self.sandbox = Sandbox(isolation or ISOLATION, folder, self.limits)
        self.session = RemoteSession({**self.sandbox.spec(), "limits": asdict(self.limits)})

    def __enter__(self):
        return self

    def impl(self):
        return self.session.chapter("ch01", exercise_file)

    def __exit__(self, *exc_info) -> None:
        self.session.close()
        self.sandbox.close()


BEHAVIOURS = """
import os
import numpy as np


class NotPositive(ValueError):
    pass


def check(x):
    if x <= 0:
        raise NotPositive(f"{x} is not positive")
    return x


def interrupt():
    raise KeyboardInterrupt


def exit_now():
    os._exit(7)


def clear(array):
    array[:] = 0


def huge():
    return np.zeros(8 * 2**20, np.uint8)


def unsendable():
    return object()


def loop():
    while True:
        pass


def flood():
    while True:
        print("x" * 10000)


def echo(value):
    return value
"""


def test_values_errors_and_endings_come_back_as_the_judge_needs_them(tmp_path):
    with Student(tmp_path / "s", BEHAVIOURS, test_timeout=2, output_mb=1, reply_mb=4) as s:
        impl = s.impl()
        assert impl.echo({"a": (1, np.float32(2.5))}) == {"a": (1, np.float32(2.5))}
        assert impl.check(3) == 3
        with pytest.raises(ValueError, match="-1 is not positive") as info:
            impl.check(-1)
        assert type(info.value).__name__ == "NotPositive"
        assert "ch01_data_and_rle.py, line 12" in str(info.value.__notes__)
        with pytest.raises(StudentBaseException, match="KeyboardInterrupt"):
            impl.interrupt()
        array = np.ones(4)
        impl.clear(array)
        assert array.tolist() == [0, 0, 0, 0], "an in-place change is written back"
        with pytest.raises(WorkerFailure, match="cannot send a value of type builtins.object"):
            impl.unsendable()
        with pytest.raises(AttributeError, match="has no function missing"):
            impl.missing()
        for call, error, message in [
            (impl.exit_now, WorkerFailure, "exit code 7"),
            (impl.huge, WorkerFailure, "over the limit of 4 MiB"),
            (impl.flood, WorkerFailure, "more than 1 MiB"),
            (impl.loop, GradingTimeout, "time limit"),
        ]:
            start = time.monotonic()
            with pytest.raises(error, match=message):
                call()
            assert time.monotonic() - start < 10
            impl = s.impl()  # a fresh worker, the file imported again
            assert impl.check(1) == 1
        assert s.session.starts == 5


SPY = """
import os
import resource
import socket


def look(port):
    seen = {}
    for path in TARGETS:
        try:
            os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(1)
            seen[path] = "read"
        except OSError as exc:
            seen[path] = type(exc).__name__
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        seen["network"] = "reached"
    except OSError:
        seen["network"] = "none"
    for target in ("/usr/escaped", "/submission/mine.txt", "/tmp/mine.txt"):
        try:
            with open(target, "w") as f:
                f.write("x")
            seen[target] = "wrote"
        except OSError as exc:
            seen[target] = type(exc).__name__
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        seen["raise limit"] = "raised"
    except (ValueError, OSError):
        seen["raise limit"] = "refused"
    seen["uid"] = os.getuid()
    seen["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    return seen


def use_library():
    from steel_keras.rle import decode_rle
    return decode_rle("1 1")
"""


@pytest.mark.skipif(ISOLATION.level != "bwrap", reason="no bubblewrap sandbox on this machine")
def test_in_bwrap_the_student_sees_only_its_own_files_and_no_network(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("other students' work")
    server = socket.create_server(("127.0.0.1", 0))
    targets = [
        str(secret),
        str(tmp_path),
        str(REPO / "steel_keras" / "grading"),
        str(REPO / "tests" / "grading"),
    ]
    # The paths are in the code, not in the call: a file the test passes travels as a copy.
    with Student(tmp_path / "s", f"TARGETS = {targets!r}\n{SPY}") as s:
        seen = s.impl().look(server.getsockname()[1])
        with pytest.raises(LibraryAnswerImported, match="from steel_keras.rle import decode_rle"):
            s.impl().use_library()
    server.close()
    assert all(seen[t] != "read" for t in targets), seen
    assert seen["network"] == "none" and seen["raise limit"] == "refused"
    assert seen["/usr/escaped"] != "wrote" and seen["/submission/mine.txt"] == "wrote"
    assert seen["uid"] != 0 and seen["processes"] < 10
    assert not (tmp_path / "s" / "mine.txt").exists(), "its copy is private"


MEMORY = """
import subprocess
import sys


def children_eat(count, mb):
    code = f"b = bytearray({mb} * 2**20); import time; time.sleep(3)"
    kids = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    return [kid.wait() for kid in kids]
"""


@pytest.mark.skipif(ISOLATION.cgroup is None, reason="no writable cgroup on this machine")
def test_the_memory_limit_covers_child_processes(tmp_path):
    with Student(tmp_path / "s", MEMORY, memory_mb=400, test_timeout=30) as s:
        impl = s.impl()
        assert impl.children_eat(1, 150) == [0], "one child within the limit"
        try:
            codes = impl.children_eat(4, 150)
        except WorkerFailure:
            codes = [-9]  # the kernel chose the worker itself
    assert any(code < 0 for code in codes), f"600 MB in four children, all alive: {codes}"


DAEMON = """
import subprocess


def leave_a_daemon(mark):
    subprocess.Popen(["sh", "-c", "while true; do sleep 1; done", mark], start_new_session=True)
    return "left"
"""


def test_no_process_outlives_the_students_sandbox(tmp_path):
    if ISOLATION.level == "none":
        pytest.skip("without isolation a daemon in its own session may outlive the worker")
    mark = f"steel-keras-test-{uuid.uuid4().hex[:8]}"
    with Student(tmp_path / "s", DAEMON) as s:
        assert s.impl().leave_a_daemon(mark) == "left"
        assert _running(mark)
    assert not _running(mark)


def _uid_level():
    try:
        return probe("uid")
    except SteelKerasError:
        return None


UID_LEVEL = _uid_level() if os.geteuid() == 0 else None


@pytest.mark.skipif(
    UID_LEVEL is None or UID_LEVEL.level != "uid", reason="the uid level needs root and setpriv"
)
def test_at_the_uid_level_a_student_cannot_touch_your_files_or_outlive_its_run(tmp_path):
    # pytest's own tmp_path is private to root: this folder is traversable by anyone.
    shared = Path(tempfile.mkdtemp(prefix="steel-keras-test-"))
    try:
        os.chmod(shared, 0o755)
        mine = shared / "grader-file.txt"
        mine.write_text("the grader's")
        os.chmod(mine, 0o644)
        (shared / "private").mkdir(mode=0o700)
        key = shared / "private" / "key.txt"
        key.write_text("answers")
        mark = f"steel-keras-test-{uuid.uuid4().hex[:8]}"
        code = f"TARGETS = {[str(mine), str(key)]!r}\n{SPY}\n{DAEMON}"
        server = socket.create_server(("127.0.0.1", 0))
        with Student(tmp_path / "s", code, isolation=UID_LEVEL) as s:
            impl = s.impl()
            seen = impl.look(server.getsockname()[1])
            assert impl.leave_a_daemon(mark) == "left" and _running(mark)
        server.close()
        assert not _running(mark), "the daemon outlived the student's run"
        assert seen["uid"] != 0 and seen["raise limit"] == "refused"
        assert seen[str(mine)] == "read", "world-readable files stay readable at this level"
        assert seen[str(key)] == "PermissionError" and seen["/usr/escaped"] != "wrote"
        assert mine.read_text() == "the grader's"
    finally:
        shutil.rmtree(shared)


def _running(text: str) -> bool:
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text.encode() in cmdline and state != "Z":
            return True
    return False


def test_every_level_says_what_is_in_force_and_what_a_student_could_do():
    assert ISOLATION.describe().startswith(f"isolation: {ISOLATION.level}: ")
    from steel_keras.grading.sandbox import Isolation

    none = Isolation("none", "none", None)
    assert "runs as you" in none.warning() and "bubblewrap" in none.warning()
    assert "read every world-readable file" in Isolation("uid", "uid", 1).warning()
    assert Isolation("bwrap", "bwrap+uid", 1).warning() is None
    assert "cgroup v1" in Isolation("bwrap", "bwrap+uid", 1).describe()
    assert "together up to" in Isolation("uid", "uid", None).describe()
