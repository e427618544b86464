"""A control group per student: one memory limit and one process limit for everything it starts.

Per-process limits (``RLIMIT_AS``) do not stop a submission that forks: ten children may use ten
times the memory. A cgroup counts them together. :func:`create` makes one under the memory and
pids controllers this process may write to (cgroup v2 with the controllers delegated, or cgroup
v1 as a container's root often has them), with the cpu controller too where it is there, and
returns ``None`` where none can be made; the grader then says that memory is limited per
process only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroup", "available", "create"]

CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Cgroup:
    """One cgroup: its folders (one for v2; memory and pids for v1) and its version."""

    version: int
    folders: tuple[str, ...]

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Where a process writes its pid to join (every folder's ``cgroup.procs``)."""
        return tuple(os.path.join(f, "cgroup.procs") for f in self.folders)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in Path(path).read_text().split()}
        return found

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, until it is empty (a fork races the kill)."""
        for folder in self.folders:
            with contextlib.suppress(OSError):
                Path(folder, "cgroup.kill").write_text("1")
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup."""
        self.kill()
        for folder in self.folders:
            for _ in range(50):
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """``(mount point, type, options)`` of each cgroup file system."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            dash = fields.index("-")
            kind = fields[dash + 1]
            if kind in ("cgroup", "cgroup2"):
                found.append((fields[4], kind, set(fields[dash + 3].split(","))))
    return found


def _own_path(version: int, controller: str = "") -> str:
    """This process's cgroup path (``/a/b``) in the v2 tree or a v1 controller's tree."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (version == 2 and controllers == "") or controller in controllers.split(","):
                return path
    return "/"


def _parents() -> tuple[int, dict[str, str]] | None:
    """Where new cgroups can go: (version, {controller: parent folder}), or None. cgroup v2
    has one folder for every controller (key ``""``); ``cpu`` is used where it is there."""
    mounts = _mounts()
    v1 = {c: m for m, kind, opts in mounts if kind == "cgroup" for c in CONTROLLERS if c in opts}
    if {"memory", "pids"} <= set(v1):
        parents = {}
        for c, mount in v1.items():
            own = os.path.join(mount, _own_path(1, c).lstrip("/"))
            parents[c] = own if os.access(own, os.W_OK) else mount
        parents = {c: p for c, p in parents.items() if os.access(p, os.W_OK)}
        if {"memory", "pids"} <= set(parents):
            return 1, parents
    for mount, kind, _ in mounts:
        if kind != "cgroup2":
            continue
        parent = os.path.join(mount, _own_path(2).lstrip("/"))
        with contextlib.suppress(OSError):
            enabled = Path(parent, "cgroup.subtree_control").read_text().split()
            if {"memory", "pids"} <= set(enabled) and os.access(parent, os.W_OK):
                return 2, {"": parent, **({"cpu": parent} if "cpu" in enabled else {})}
    return None


def available() -> int | None:
    """The cgroup version new per-student cgroups would use here, or None."""
    found = _parents()
    return found[0] if found else None


def create(
    memory_bytes: int, max_pids: int, cpus: float = 1.0, prefix: str = "steel-keras-grade"
) -> Cgroup | None:
    """A new cgroup limited to ``memory_bytes``, ``max_pids`` and (where the cpu controller is
    there) ``cpus`` processors' time, so that a student's processes cannot slow another
    student's tests into their time limits; None where no cgroup can be made."""
    found = _parents()
    if found is None:
        return None
    version, parents = found
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folders = {c: os.path.join(p, name) for c, p in parents.items()}
    quota = int(cpus * 100_000)
    settings = [
        ("memory", "memory.max" if version == 2 else "memory.limit_in_bytes", str(memory_bytes)),
        ("pids", "pids.max", str(max_pids)),
    ]
    if "cpu" in parents:
        settings.append(
            ("cpu", "cpu.max", f"{quota} 100000")
            if version == 2
            else ("cpu", "cpu.cfs_quota_us", str(quota))
        )
    group = Cgroup(version, tuple(dict.fromkeys(folders.values())))
    try:
        for folder in group.folders:
            os.mkdir(folder, 0o755)
        for controller, key, value in settings:
            Path(folders[controller if version == 1 else ""], key).write_text(value)
    except OSError:
        group.remove()
        return None
    # No swapping past the limit either, where the kernel accounts for swap.
    swap = "memory.swap.max" if version == 2 else "memory.memsw.limit_in_bytes"
    with contextlib.suppress(OSError):
        Path(folders["memory" if version == 1 else ""], swap).write_text(
            "0" if version == 2 else str(memory_bytes)
        )
    return group
