"""A hostile class, graded for real: students who attack the grader, and the grader's signals.

The class is graded through the command line, in the strongest sandbox the machine allows,
on chapters 01-02 (no Keras, so it runs in well under two minutes on two cores). Its students
forge results, patch pytest, import the answer from the library or the key, read other
students' files, the tests and the key, rewrite the tests, another student's file and the grade
sheet, leave a detached daemon, loop, exit, eat memory and print without end. Each must get
exactly what its honest code earns, nobody else's grade or file may change, and no process may
outlive the grader. Then SIGTERM and Ctrl-C stop a grading run in the middle.

Hostile code is only run where it is contained: the tests skip where the grader would fall back
to no isolation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from steel_keras.grading.discovery import graded_test_files
from steel_keras.grading.grader import collect_tests
from steel_keras.grading.sandbox import probe
from steel_keras.grading.scenarios import DAEMON_MARK, expected_score, write_submission

REPO = Path(__file__).resolve().parents[1]
GRADED_TESTS = REPO / "tests" / "grading"
PACKAGE = REPO / "steel_keras"
SECRET = "HIDDEN-TEST-SOURCE-51c9"
HIDDEN_ARG = "HIDDEN-ARG-51c9"

HIDDEN_TEST = f'''
import pandas as pd
import pytest

@pytest.mark.points(2)
def test_decode_rle_hidden_corner(impl):
    secret = "{SECRET}"
    mask = impl.decode_rle("4 2", (3, 2))
    assert mask[:, 1].tolist() == [1, 1, 0], secret


@pytest.mark.points(1)
def test_defect_free_ids_hidden(impl):
    empty = pd.DataFrame({{"ImageId": [], "ClassId": [], "EncodedPixels": []}})
    assert list(impl.defect_free_ids(empty, ["{HIDDEN_ARG}.jpg"])) == ["{HIDDEN_ARG}.jpg"]
'''

# Smuggles the arguments it gets into its exception's class name and message.
LEAKER = """
def defect_free_ids(long_table, all_ids):
    name = "Leak_" + "_".join(i.replace(".", "_").replace("-", "_") for i in all_ids)
    raise type(name, (ValueError,), {})(repr(all_ids))
"""

ISOLATION = probe()
contained = pytest.mark.skipif(
    ISOLATION.level == "none",
    reason="no sandbox and not root here: hostile code would run with the tester's rights "
    "(install bubblewrap)",
)


def steel_keras(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fingerprint(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def processes_with(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def spy_code(targets: list[Path], writes: list[Path], port: int) -> str:
    """An encode_rle that reports what it could read, write and reach, as its (wrong) answer."""
    return f"""
import os as _os
import socket as _socket


def encode_rle(mask):
    read = wrote = 0
    for path in {[str(t) for t in targets]!r}:
        try:
            if _os.path.isdir(path):
                _os.listdir(path)
            else:
                open(path, "rb").read(1)
            read += 1
        except OSError:
            pass
    for path in {[str(w) for w in writes]!r}:
        try:
            with open(path, "a") as f:
                f.write("spy was here")
            wrote += 1
        except OSError:
            pass
    try:
        _socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        net = "reached"
    except OSError:
        net = "none"
    return (f"read {{read}} of {len(targets)}, wrote {{wrote}} of {len(writes)}, "
            f"network {{net}}, uid {{_os.getuid()}}")
"""


def saboteur_code(victim: Path, tests: list[Path], sheet: Path) -> str:
    """Module-level code that tries to change others' grades, then behaves."""
    return f"""
import os as _os
import signal as _signal

for _path in {[str(t) for t in tests]!r}:
    try:
        with open(_path, "w") as _f:
            _f.write("def test_ch01_always_passes():\\n    pass\\n")
    except OSError:
        pass
for _path, _text in [({str(victim)!r}, "raise SystemExit\\n"), ({str(sheet)!r}, "hacked\\n")]:
    try:
        with open(_path, "w") as _f:
            _f.write(_text)
    except OSError:
        pass
try:
    _os.kill(-1, _signal.SIGKILL)  # every process this uid may signal (not this one)
except OSError:
    pass
"""


def daemon_code(sheet: Path, mark: str) -> str:
    """A detached daemon that keeps rewriting the grade sheet, and twenty children."""
    script = f"while true; do echo hacked > {sheet}; sleep 0.2; done"
    return f'''
import subprocess as _subprocess

_kids = [_subprocess.Popen(["sh", "-c", "sleep 1000", "{mark}-child"]) for _ in range(20)]
_subprocess.Popen(["sh", "-c", {script!r}, "{mark}"], start_new_session=True,
                  stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL)
'''


def add_code(folder: Path, chapter_file: str, code: str) -> None:
    path = folder / chapter_file
    path.write_text(path.read_text() + "\n\n" + code)


def hostile_class(tmp_path: Path, port: int, mark: str):
    """Write the class, its public and hidden tests; return folders and {student: kind}."""
    subs, public, hidden, out = (tmp_path / n for n in ("subs", "public", "hidden", "out"))
    public.mkdir()
    for test_file in [
        GRADED_TESTS / "conftest.py",
        *graded_test_files(GRADED_TESTS, "ch01"),
        *graded_test_files(GRADED_TESTS, "ch02"),
    ]:
        shutil.copyfile(test_file, public / test_file.name)
    hidden.mkdir()
    (hidden / "test_ch01_hidden.py").write_text(HIDDEN_TEST)
    kinds = {
        "alice": "correct",
        "carol": "forge_results",
        "dave": "patch_pytest",
        "erin": "imports_answer",
        "frank": "imports_key",
        "judy": "python_loop",
        "kim": "os_exit",
        "leo": "eats_memory",
        "mia": "prints_forever",
        "grades.csv": "correct",
        "heidi": "correct",
    }
    for student, kind in kinds.items():
        write_submission(subs / student, kind)
    shutil.copytree(REPO / "course" / "exercises", subs / "bob")  # blank stubs
    kinds["bob"] = "stubs"
    ch01, ch02 = "ch01_data_and_rle.py", "ch02_eda.py"
    victim = subs / "alice" / ch01
    targets = [
        victim,
        subs / "bob",
        hidden / "test_ch01_hidden.py",
        public / "test_ch02_eda.py",
        PACKAGE / "grading" / "solutions.py",
        PACKAGE / "rle.py",
        out,
    ]
    writes = [
        victim,
        public / "test_ch01_data_and_rle.py",
        hidden / "test_ch01_hidden.py",
        out / "grades.csv",
    ]
    # heidi spies (encode_rle), smuggles hidden arguments (defect_free_ids) and sabotages (at
    # import); the student named like the grade sheet leaves a daemon that rewrites it.
    sabotage = saboteur_code(
        victim,
        [public / "test_ch01_data_and_rle.py", hidden / "test_ch01_hidden.py"],
        out / "grades.csv",
    )
    add_code(subs / "heidi", ch01, spy_code(targets, writes, port) + LEAKER + sabotage)
    kinds["heidi"] = "spy"
    add_code(subs / "grades.csv", ch02, daemon_code(out / "grades.csv", mark))
    return subs, public, hidden, out, kinds


def expected(kind: str, tests) -> float:
    if kind == "stubs":
        return 0.0
    if kind == "spy":
        broken = ("test_encode_rle", "test_defect_free_ids")
        return sum(
            t.points
            for t in tests
            if not (t.chapter == "ch01" and t.name.split("::")[-1].startswith(broken))
        )
    return expected_score(kind, tests)


@contained
def test_a_hostile_class_gets_what_its_honest_code_earns(tmp_path):
    mark = f"steel-keras-test-{uuid.uuid4().hex[:8]}"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    subs, public, hidden, out, kinds = hostile_class(tmp_path, port, mark)
    before = fingerprint(subs, public, hidden)
    start = time.monotonic()
    result = steel_keras(
        "grade",
        "--submissions",
        str(subs),
        "--tests",
        str(public),
        "--hidden",
        str(hidden),
        "--out",
        str(out),
        "--timeout",
        "60",
        "--test-timeout",
        "3",
        "--memory-mb",
        "512",
        "--output-mb",
        "2",
        "--jobs",
        "2",
    )
    seconds = time.monotonic() - start
    server.close()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == ISOLATION.describe(_limits(512, 2))
    tests = collect_tests(
        [*graded_test_files(public, None), hidden / "test_ch01_hidden.py"], [hidden]
    )
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(kinds)
    for student, kind in kinds.items():
        assert float(rows[student]["total"]) == expected(kind, tests), (
            student,
            kind,
            rows[student],
        )
        text = (out / "students" / student / "results.json").read_text()
        assert SECRET not in text and "secret =" not in text, student
        assert HIDDEN_ARG not in text and HIDDEN_ARG.replace("-", "_") not in text, student
        assert json.loads(text)["isolation"]["level"] == ISOLATION.level
    assert max(float(r["total"]) for r in rows.values()) <= sum(t.points for t in tests)
    assert fingerprint(subs, public, hidden) == before, "a student changed another's files"
    spy = json.loads((out / "students" / "heidi" / "results.json").read_text())
    said = " ".join(t["output"] for t in spy["tests"])
    assert "wrote 0 of 4" in said and "uid 0," not in said
    if ISOLATION.level == "bwrap":
        assert "read 0 of 7" in said and "network none" in said
    why_erin = {
        t["name"]: t["output"]
        for t in json.loads((out / "students" / "erin" / "results.json").read_text())["tests"]
    }
    assert all(
        "from steel_keras.rle import decode_rle" in why and "out of reach" in why
        for name, why in why_erin.items()
        if "test_decode_rle" in name and not name.startswith("hidden/")
    )
    sheet = (out / "grades.csv").read_text()
    time.sleep(1.0)  # a daemon that survived would rewrite the sheet by now
    assert (out / "grades.csv").read_text() == sheet and sheet.startswith("student,")
    assert processes_with(mark) == [] and processes_with(DAEMON_MARK) == []
    assert seconds < 120, f"the hostile class took {seconds:.0f} s"


def _limits(memory_mb: int, output_mb: int):
    from steel_keras.grading.sandbox import Limits

    return Limits(timeout=60, test_timeout=3, memory_mb=memory_mb, output_mb=output_mb)


LOOP_WITH_DAEMON = """
import subprocess as _subprocess


def decode_rle(rle, shape=(256, 1600)):
    _subprocess.Popen(["sh", "-c", "while true; do sleep 1; done", "{mark}"],
                      start_new_session=True)
    while True:
        pass
"""


@contained
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_student_at_once_and_keeps_the_grades(tmp_path, sig, code):
    mark = f"steel-keras-test-{uuid.uuid4().hex[:8]}"
    subs, out = tmp_path / "subs", tmp_path / "out"
    for student in ("a_done", "b_loops", "c_waiting"):
        write_submission(subs / student, "correct")
    add_code(subs / "b_loops", "ch01_data_and_rle.py", LOOP_WITH_DAEMON.format(mark=mark))
    grader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steel_keras",
            "grade",
            "--submissions",
            str(subs),
            "--out",
            str(out),
            "--chapter",
            "1",
            "--jobs",
            "1",
            "--test-timeout",
            "120",
            "--timeout",
            "300",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not processes_with(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with(mark), "the looping student never started"
        assert (out / "students" / "a_done" / "results.json").is_file()
        below = descendants(grader.pid)
        start = time.monotonic()
        grader.send_signal(sig)
        stdout, stderr = grader.communicate(timeout=30)
        stopped_in = time.monotonic() - start
    finally:
        if grader.poll() is None:
            os.killpg(grader.pid, signal.SIGKILL)
    assert grader.returncode == code, stderr[-2000:]
    assert stopped_in < 10, f"took {stopped_in:.1f} s to stop"
    assert f"interrupted by {sig.name}" in stderr and "not graded: b_loops, c_waiting" in stderr
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student"], r["partial"], r["total"]) for r in rows] == [("a_done", "yes", "10")]
    assert not (out / "students" / "b_loops" / "results.json").exists()
    time.sleep(0.5)
    assert alive(below) == set(), "processes outlived the grader"
    assert processes_with(mark) == []


def test_bad_outputs_are_refused_before_grading(tmp_path):
    subs = tmp_path / "subs"
    write_submission(subs / "grades.csv", "correct")  # a student named like the sheet
    (tmp_path / "a-file").write_text("keep me")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    cases = [
        (tmp_path / "a-file", "is a file"),
        (subs / "out", "lies inside"),
        (subs, "which this command reads"),
        (hidden / "out", "lies inside"),
        (tmp_path, "holds"),
        (tmp_path / "a-file" / "below", "no folder can be made there"),
    ]
    for out, needle in cases:
        result = steel_keras(
            "grade",
            "--submissions",
            str(subs),
            "--out",
            str(out),
            "--hidden",
            str(hidden),
            "--chapter",
            "1",
        )
        assert result.returncode == 2 and needle in result.stderr, (out, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert (tmp_path / "a-file").read_text() == "keep me"
    inside = steel_keras(
        "grade",
        "--submissions",
        str(tmp_path),
        "--out",
        str(tmp_path.parent / f"{tmp_path.name}-out"),
        "--hidden",
        str(hidden),
    )
    assert inside.returncode == 2 and "inside --submissions" in inside.stderr
