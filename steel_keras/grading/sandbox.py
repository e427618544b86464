"""Where a student's code runs: the strongest isolation this machine allows, one sandbox a student.

Three levels, strongest first; :func:`probe` tries each by running Python through it:

- ``bwrap``: a bubblewrap sandbox. The worker sees the Python installation read-only, the grader's
  worker files, a private copy of the student's own files in memory, and nothing else: not the
  other students, the tests, the library (the answer key), the output folder or the network.
  It has its own PID namespace (every process it starts dies with it). A grader running as root
  also drops the worker to an unprivileged uid of its own; otherwise the user namespace maps
  the grader's user to ``nobody``.
- ``uid`` (root only, without bwrap): the worker runs as an unprivileged uid of its own, in its
  own session, in a private copy of its files; it can read what is world-readable and use the
  network.
- ``none``: the worker runs as the grader's user; a warning says what it can do.

At every level the worker's address space, file sizes and core dumps are limited, and a cgroup
(where one can be made) limits the memory and the number of processes of its whole tree;
without one, a dedicated uid gets a process limit (``RLIMIT_NPROC``) instead.

A :class:`Sandbox` belongs to one student: it makes the private copy, holds the uid (a lock file
keeps two graders from sharing one), the cgroup, and kills whatever is left when closed. Its
:meth:`~Sandbox.spec` is what the judge needs to start workers in it (:func:`worker_command`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import steel_keras
from steel_keras.errors import SteelKerasError
from steel_keras.grading import cgroups

__all__ = [
    "LEVELS",
    "Isolation",
    "Limits",
    "Sandbox",
    "SubmissionError",
    "kill_leftovers",
    "probe",
    "stop_worker",
    "worker_command",
]

LEVELS = ("bwrap", "uid", "none")
UID_BASE = 1_900_000_000  # far above real users and the usual subordinate-uid ranges
UID_COUNT = 4096
INSIDE_LIB = "/grader"
INSIDE_SUBMISSION = "/submission"
INSIDE_STAGING = "/staging"
WORKER_FILES = ("worker.py", "wire.py", "harness.py")
MAX_COPY_FILES = 2000
MAX_COPY_MB = 64
TMPFS_MB = 256


class SubmissionError(SteelKerasError):
    """A submission that cannot be graded as it is (too large, too many files)."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use.

    Attributes:
        timeout: seconds of wall-clock time for the whole submission.
        test_timeout: seconds one test may run before it is stopped and scores zero.
        memory_mb: memory of the student's processes, in MiB: the address space of each, and
            of all together where a cgroup is available (0: none).
        output_mb: the most the student's code may print, and the largest file it may write,
            in MiB (0: none).
        startup: seconds a worker may take to start and import an exercise file.
        grace: seconds past a limit before the grader kills a judge that did not stop.
        processes: processes and threads the student's code may have at once.
        reply_mb: the largest value a function may return, in MiB.
    """

    timeout: float = 300.0
    test_timeout: float = 30.0
    memory_mb: int = 2048
    output_mb: int = 16
    startup: float = 60.0
    grace: float = 5.0
    processes: int = 128
    reply_mb: int = 64


@dataclass(frozen=True)
class Isolation:
    """How student code is isolated here: a level of :data:`LEVELS` and how it is reached.

    ``method``: ``bwrap+uid`` (bwrap as root, then an unprivileged uid), ``bwrap+userns``
    (bwrap in a user namespace), ``uid`` or ``none``. ``cgroup``: 1, 2 or None.
    """

    level: str
    method: str
    cgroup: int | None
    bwrap: str | None = None
    setpriv: str | None = None

    @property
    def dedicated_uid(self) -> bool:
        return self.method in ("bwrap+uid", "uid")

    def describe(self, limits: Limits | None = None) -> str:
        """One line: what is in force."""
        limits = limits or Limits()
        what = {
            "bwrap+uid": "bubblewrap sandbox (private mount, PID, network and IPC namespaces; "
            "only the Python installation and the student's own files visible) "
            "running as an unprivileged uid of its own",
            "bwrap+userns": "bubblewrap sandbox (private user, mount, PID, network and IPC "
            "namespaces; only the Python installation and the student's own "
            "files visible)",
            "uid": "an unprivileged uid of its own per student, in its own session, in a "
            "private copy of its files",
            "none": "no isolation: student code runs as the grader's user",
        }[self.method]
        return f"isolation: {self.level}: {what}; {self._memory(limits)}"

    def _memory(self, limits: Limits) -> str:
        if self.cgroup:
            return (
                f"{limits.memory_mb} MiB and {limits.processes} processes for a student's "
                f"whole process tree (cgroup v{self.cgroup})"
            )
        per_process = f"{limits.memory_mb} MiB of address space per process"
        if self.dedicated_uid:
            return (
                f"{per_process} and {limits.processes} processes (no cgroup here: together "
                f"up to {limits.memory_mb * limits.processes} MiB)"
            )
        return f"{per_process}, processes not limited in number (no cgroup here)"

    def warning(self) -> str | None:
        """What a student could still do at this level; None at the strongest."""
        if self.level == "bwrap":
            return None
        install = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) for a sandbox"
        if self.level == "uid":
            return (
                "warning: no sandbox (bwrap not available): a student cannot write your "
                "files or signal your processes, but can read every world-readable file "
                "(other students' submissions, the hidden tests and the library's source, "
                "which holds the answers, unless their permissions forbid it) and use the "
                f"network; {install}"
            )
        return (
            "warning: no isolation: student code runs as you: it can read other students' "
            "submissions, the hidden tests and the library's answers, change any file you "
            "can (other students' files, the tests, the grade sheet, its own results), and "
            "leave processes that outlive the grader; grade only code you trust, or "
            f"{install}"
        )

    def as_dict(self, limits: Limits | None = None) -> dict:
        return {
            "level": self.level,
            "method": self.method,
            "cgroup": self.cgroup,
            "description": self.describe(limits),
            "warning": self.warning(),
        }


# --- probing --------------------------------------------------------------------------------


def candidates(requested: str = "auto") -> list[Isolation]:
    """The ways to isolate a worker that this machine has the tools for, strongest first,
    from ``requested`` down (``auto``: from the strongest)."""
    if requested not in ("auto", *LEVELS):
        raise SteelKerasError(f"--isolation {requested!r}: choose auto, {', '.join(LEVELS)}")
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    root = os.geteuid() == 0
    cgroup = cgroups.available() if root or os.access("/sys/fs/cgroup", os.W_OK) else None
    found = []
    if bwrap and root and setpriv:
        found.append(Isolation("bwrap", "bwrap+uid", cgroup, bwrap, setpriv))
    if bwrap:
        found.append(Isolation("bwrap", "bwrap+userns", cgroup, bwrap))
    if root and setpriv:
        found.append(Isolation("uid", "uid", cgroup, None, setpriv))
    found.append(Isolation("none", "none", cgroup, None, setpriv))
    start = 0 if requested == "auto" else LEVELS.index(requested)
    return [c for c in found if LEVELS.index(c.level) >= start]


_PROBED: dict[str, Isolation] = {}


def probe(requested: str = "auto") -> Isolation:
    """The strongest isolation at or below ``requested`` that runs Python with numpy here.

    Raises:
        SteelKerasError: ``requested`` names a level that does not work on this machine.
    """
    if requested in _PROBED:
        return _PROBED[requested]
    failures = []
    for isolation in candidates(requested):
        why = _try(isolation)
        if why is None:
            _PROBED[requested] = isolation
            return isolation
        failures.append(f"{isolation.method}: {why}")
        if requested != "auto" and isolation.level == requested:
            continue
    if requested != "auto" and requested != "none":
        raise SteelKerasError(
            f"--isolation {requested} does not work here ("
            f"{'; '.join(failures) or 'bwrap/setpriv not found, or not root'})"
            "; choose a weaker level or install bubblewrap"
        )
    raise SteelKerasError(f"cannot start a Python worker at all: {'; '.join(failures)}")


def _try(isolation: Isolation) -> str | None:
    """None if a Python worker starts under ``isolation``, else why not (one line)."""
    with tempfile.TemporaryDirectory(prefix="steel-keras-probe-") as empty:
        try:
            sandbox = Sandbox(isolation, Path(empty), Limits(), use_cgroup=False)
        except (OSError, SteelKerasError) as exc:
            return str(exc)
        try:
            spec = sandbox.spec()
            code = "import numpy, pandas; print('steel-keras-ok')"
            cmd = worker_command(spec, ["-c", code])
            proc = subprocess.run(
                cmd,
                cwd=spec["cwd"],
                env=spec["env"],
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        finally:
            sandbox.close()
    if "steel-keras-ok" in proc.stdout:
        return None
    return (
        " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-2:])
        or f"exit code {proc.returncode}"
    )


# --- uids -----------------------------------------------------------------------------------


class UidLease:
    """An unprivileged uid held by this process alone (a lock file per uid), until released."""

    def __init__(self) -> None:
        # One folder for every grader on the machine (not $TMPDIR, which may differ), so that two
        # graders never take the same uid.
        base = Path("/run") if os.access("/run", os.W_OK) else Path("/tmp")
        folder = base / f"steel-keras-uids-{os.geteuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if info.st_uid != os.geteuid() or folder.is_symlink() or info.st_mode & 0o022:
            raise SteelKerasError(f"{folder} is not a private folder of this user; remove it")
        for uid in range(UID_BASE, UID_BASE + UID_COUNT):
            fd = os.open(folder / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            kill_uid(uid)  # whatever a grader that crashed left behind
            return
        raise SteelKerasError(f"all {UID_COUNT} sandbox uids are in use")

    def release(self) -> None:
        kill_uid(self.uid)
        os.close(self._fd)


def processes_of(uid: int) -> list[int]:
    """The pids whose real uid is ``uid`` (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path(f"/proc/{entry}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip()[0] == "Z":
                pids.append(int(entry))
    return pids


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``: ``kill(-1)`` run as that uid, until none is left."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return
    for _ in range(20):
        if not processes_of(uid):
            return
        subprocess.run(
            [
                setpriv,
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                sys.executable,
                "-I",
                "-S",
                "-c",
                "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\n"
                "except ProcessLookupError: pass",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        time.sleep(0.02)


# --- one student's sandbox ------------------------------------------------------------------


class Sandbox:
    """One student's place to run: a private copy of its files, a uid, a cgroup.

    Args:
        isolation: from :func:`probe`.
        exercises: the student's folder (its regular files are copied; links are not).
        limits: memory, output and process limits of the worker.
        use_cgroup: make a cgroup when ``isolation.cgroup`` says one can be made.
    """

    def __init__(
        self, isolation: Isolation, exercises: Path, limits: Limits, *, use_cgroup: bool = True
    ) -> None:
        self.isolation, self.limits = isolation, limits
        self.base = Path(tempfile.mkdtemp(prefix="steel-keras-sandbox-"))
        self.lease = self.cgroup = None
        try:
            os.chmod(self.base, 0o711)
            self.lib = self._copy_worker_files(self.base / "lib")
            self.home = self.base / "home"
            copy_submission(exercises, self.home)
            # $TMPDIR and $HOME outside bwrap: deleted with the sandbox, never shared.
            self.tmp = self.base / "tmp"
            self.tmp.mkdir(mode=0o700)
            if isolation.dedicated_uid:
                self.lease = UidLease()
                if isolation.method == "uid":
                    _chown_tree(self.home, self.lease.uid)
                    _chown_tree(self.tmp, self.lease.uid)
            if use_cgroup and isolation.cgroup:
                self.cgroup = cgroups.create(limits.memory_mb * 2**20, limits.processes)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _copy_worker_files(folder: Path) -> Path:
        folder.mkdir(mode=0o755)
        here = Path(__file__).resolve().parent
        for name in WORKER_FILES:
            shutil.copyfile(here / name, folder / name)
            os.chmod(folder / name, 0o644)
        return folder

    def spec(self) -> dict:
        """What a judge needs to start workers here (JSON-able; see :func:`worker_command`)."""
        method, limits = self.isolation.method, self.limits
        inside = method.startswith("bwrap")
        config = {
            "submission": INSIDE_SUBMISSION if inside else str(self.home),
            "copy_from": INSIDE_STAGING if inside else None,
            "memory_mb": limits.memory_mb,
            "fsize_mb": limits.output_mb,
            "nproc": limits.processes if self.isolation.dedicated_uid else 0,
            "max_reply_mb": limits.reply_mb,
        }
        return {
            "level": self.isolation.level,
            "method": method,
            "prefix": self._prefix(),
            "python": sys.executable,
            "worker": f"{INSIDE_LIB}/worker.py" if inside else str(self.lib / "worker.py"),
            "config": config,
            "cwd": str(self.home),
            "env": worker_environment(None if inside else self.tmp),
            "cgroup_procs": list(self.cgroup.procs_files) if self.cgroup else [],
            "uid": self.lease.uid if self.lease else None,
        }

    def _prefix(self) -> list[str]:
        method = self.isolation.method
        drop = [
            self.isolation.setpriv or "setpriv",
            f"--reuid={self.lease.uid}" if self.lease else "",
            f"--regid={self.lease.uid}" if self.lease else "",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]
        if method == "none":
            # Dies with the judge; what it starts in a session of its own may not.
            return (
                [self.isolation.setpriv, "--pdeathsig=KILL", "--"] if self.isolation.setpriv else []
            )
        if method == "uid":
            return [*drop, "--pdeathsig=KILL", "--"]
        mounts = _bwrap_mounts(self.lib, self.home, self.limits)
        if method == "bwrap+uid":
            return [
                self.isolation.bwrap,
                *mounts,
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
                "--",
                *drop,
                "--",
            ]
        return [
            self.isolation.bwrap,
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            *mounts,
            "--",
        ]

    def kill_all(self) -> None:
        """SIGKILL every process this student started (by cgroup and by uid)."""
        if self.cgroup:
            self.cgroup.kill()
        if self.lease:
            kill_uid(self.lease.uid)

    def close(self) -> None:
        """Kill what is left, free the uid and the cgroup, delete the private copy."""
        if self.cgroup:
            self.cgroup.remove()
        if self.lease:
            self.lease.release()
        shutil.rmtree(self.base, ignore_errors=True)


def copy_submission(source: Path, target: Path) -> None:
    """Copy the regular files under ``source`` into ``target`` (links and devices are left out,
    so that no link can point the grader at another student's file).

    Raises:
        SubmissionError: more than ``MAX_COPY_FILES`` files or ``MAX_COPY_MB`` MiB.
    """
    target.mkdir(mode=0o755)
    count, size = 0, 0
    for root, dirs, files in os.walk(source, followlinks=False):
        dirs[:] = [
            d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(root, d))
        ]
        out = target / os.path.relpath(root, source)
        out.mkdir(mode=0o755, exist_ok=True)
        for name in files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if not (info.st_mode & 0o170000 == 0o100000):  # regular files only
                continue
            count, size = count + 1, size + info.st_size
            if count > MAX_COPY_FILES or size > MAX_COPY_MB * 2**20:
                raise SubmissionError(
                    f"{source} has more than {MAX_COPY_FILES} files or "
                    f"{MAX_COPY_MB} MiB; hand in the exercise files only"
                )
            shutil.copyfile(path, out / name, follow_symlinks=False)
            os.chmod(out / name, 0o644)


def _chown_tree(folder: Path, uid: int) -> None:
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, uid)
    os.chown(folder, uid, uid)
    os.chmod(folder, 0o700)


def worker_environment(scratch: Path | None) -> dict[str, str]:
    """The worker's whole environment: nothing of the grader's but a few settings
    (``scratch``: its temporary and home folder outside bwrap; inside, its private /tmp)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # TensorFlow starts a thread pool per core and glibc gives each thread its own 64 MB
        # malloc arena: capping both keeps the address space, which RLIMIT_AS limits, near
        # 1.5 GB with Keras loaded instead of growing with the cores.
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SM_FRAMEWORK": "tf.keras",
    }
    if "KERAS_BACKEND" in os.environ:
        env["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
    folder = "/tmp" if scratch is None else str(scratch)
    env.update(HOME=folder, TMPDIR=folder, MPLCONFIGDIR=folder)
    return env


def _bwrap_mounts(lib: Path, home: Path, limits: Limits) -> list[str]:
    """bwrap's arguments: namespaces, the Python installation read-only, the worker files, the
    student's copy (staged read-only, copied into a private tmpfs by the worker)."""
    args = [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]
    for top in ("bin", "lib", "lib32", "lib64", "sbin"):
        path = Path("/", top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "fonts"):
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    made = {"/", "/usr", "/etc"}
    for folder in _python_folders():
        args += _parents_of(folder, made) + ["--ro-bind", folder, folder]
    package = str(Path(steel_keras.__file__).resolve().parent)
    if any(package.startswith(f + os.sep) for f in ["/usr", *_python_folders()]):
        args += ["--tmpfs", package, "--remount-ro", package]  # the library stays out of reach
    tmp = str(limits.output_mb * 2**20 * 4 or TMPFS_MB * 2**20)
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        tmp,
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        str(lib),
        INSIDE_LIB,
        "--ro-bind",
        str(home),
        INSIDE_STAGING,
        "--perms",
        "1777",
        "--size",
        str(MAX_COPY_MB * 2**20 * 2),
        "--tmpfs",
        INSIDE_SUBMISSION,
        "--chdir",
        INSIDE_SUBMISSION,
    ]
    return args


def _python_folders() -> list[str]:
    """The folders of the Python installation: the venv, its base, the interpreter's own."""
    found: list[str] = []
    for folder in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))):
        real = os.path.realpath(folder)
        for path in {folder, real}:
            if path.startswith("/usr/") or path == "/usr":
                continue
            if not any(path == f or path.startswith(f + os.sep) for f in found):
                found = [f for f in found if not f.startswith(path + os.sep)] + [path]
    return sorted(found)


def _parents_of(folder: str, made: set[str]) -> list[str]:
    """``--dir`` arguments for the folders above ``folder``, traversable by anyone."""
    args = []
    parts = Path(folder).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def worker_command(spec: dict, python_args: list[str]) -> list[str]:
    """The command that runs ``python -I -B`` with ``python_args`` in the sandbox of ``spec``
    (joining its cgroup first, where it has one)."""
    prefix = [p for p in spec["prefix"] if p]
    command = [*prefix, spec["python"], "-I", "-B", *python_args]
    if not spec["cgroup_procs"]:
        return command
    joins = " && ".join(f"echo $$ > {shlex.quote(p)}" for p in spec["cgroup_procs"])
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *command]


def stop_worker(proc: subprocess.Popen, spec: dict) -> int:
    """Kill a worker started by :func:`worker_command` and everything it started; return its
    exit status.

    In bwrap, killing the sandbox's first process takes its PID namespace along, and bwrap,
    left without a child, exits and reaps it; then the process group, the cgroup and the uid.
    """
    if spec["method"].startswith("bwrap") and proc.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for child in children:
                with contextlib.suppress(OSError):
                    os.kill(int(child), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    kill_leftovers(spec)
    return code


def kill_leftovers(spec: dict) -> None:
    """SIGKILL whatever the student's processes left in the cgroup or under the uid."""
    if spec["cgroup_procs"]:
        folders = tuple(os.path.dirname(p) for p in spec["cgroup_procs"])
        cgroups.Cgroup(0, folders).kill()
    if spec["uid"] is not None:
        kill_uid(spec["uid"])
