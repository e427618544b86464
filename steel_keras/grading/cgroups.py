"""A control group per student: one memory limit and one process limit for everything it starts.

Per-process limits (``RLIMIT_AS``) do not stop a submission that forks: ten children may use ten
times the memory. A cgroup counts them together. :func:`create` makes one under the memory and
pids controllers this process may write to (cgroup v2 with the controllers delegated, or cgroup
v1 as a container's root often has them), and returns ``None`` where neither is writable; the
grader then says that memory is limited per process only.
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


def _parents() -> tuple[int, list[str]] | None:
    """Where new cgroups can go: (version, [parent folder per controller]), or None."""
    mounts = _mounts()
    v1 = {
        c: m
        for m, kind, opts in mounts
        if kind == "cgroup"
        for c in ("memory", "pids")
        if c in opts
    }
    if set(v1) == {"memory", "pids"}:
        folders = []
        for c in ("memory", "pids"):
            own = os.path.join(v1[c], _own_path(1, c).lstrip("/"))
            folders.append(own if os.access(own, os.W_OK) else v1[c])
        if all(os.access(f, os.W_OK) for f in folders):
            return 1, folders
    for mount, kind, _ in mounts:
        if kind != "cgroup2":
            continue
        parent = os.path.join(mount, _own_path(2).lstrip("/"))
        with contextlib.suppress(OSError):
            enabled = Path(parent, "cgroup.subtree_control").read_text().split()
            if {"memory", "pids"} <= set(enabled) and os.access(parent, os.W_OK):
                return 2, [parent]
    return None


def available() -> int | None:
    """The cgroup version new per-student cgroups would use here, or None."""
    found = _parents()
    return found[0] if found else None


def create(memory_bytes: int, max_pids: int, prefix: str = "steel-keras-grade") -> Cgroup | None:
    """A new cgroup limited to ``memory_bytes`` and ``max_pids``; None where none can be made."""
    found = _parents()
    if found is None:
        return None
    version, parents = found
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folders = tuple(os.path.join(p, name) for p in parents)
    try:
        for folder in folders:
            os.mkdir(folder, 0o755)
        settings = (
            {"memory.max": memory_bytes, "pids.max": max_pids}
            if version == 2
            else {"memory.limit_in_bytes": memory_bytes, "pids.max": max_pids}
        )
        for key, value in settings.items():
            folder = folders[0] if version == 2 or key.startswith("memory") else folders[1]
            Path(folder, key).write_text(str(value))
    except OSError:
        Cgroup(version, folders).remove()
        return None
    # No swapping past the limit either, where the kernel accounts for swap.
    swap = "memory.swap.max" if version == 2 else "memory.memsw.limit_in_bytes"
    with contextlib.suppress(OSError):
        Path(folders[0], swap).write_text("0" if version == 2 else str(memory_bytes))
    return Cgroup(version, folders)
