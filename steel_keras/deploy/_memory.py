"""Resident memory of this process, from ``/proc/self/status`` (Linux).

``VmHWM`` (the high-water mark) rather than ``getrusage().ru_maxrss``: Linux carries
``ru_maxrss`` over ``exec``, so a subprocess started from a large parent (one with TensorFlow
loaded) reports the parent's size as its own peak. ``VmHWM`` belongs to the new process only.
Elsewhere both fall back to ``ru_maxrss``.
"""

from __future__ import annotations

import resource
from pathlib import Path


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float:
    """Resident memory now, in MB."""
    value = _status_mb("VmRSS")
    return value if value is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    value = _status_mb("VmHWM")
    if value is not None:
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
