"""Run pytest under resource limits: the process the grader starts for each submission.

    python -m steel_keras.grading.runner --memory-mb 2048 --output-mb 10 -- [pytest args]

The limits are set in this process, before pytest and the student's code are imported, rather
than in a ``preexec_fn`` (which is unsafe when the grader runs students from several threads):

- ``RLIMIT_AS``: address space; an allocation past it raises ``MemoryError`` in the test;
- ``RLIMIT_FSIZE``: the largest file the process may write, which bounds pytest's capture file
  and the log, so printing without end fails that test (``OSError: File too large``) instead of
  filling the disk;
- ``RLIMIT_CORE`` 0: no core dumps from a crashing submission.
"""

from __future__ import annotations

import argparse
import resource
import sys

MB = 1024 * 1024


def set_limits(memory_mb: int, output_mb: int) -> None:
    """Lower this process's address-space, file-size and core-dump limits (0 = leave as is)."""
    if memory_mb:
        _lower(resource.RLIMIT_AS, memory_mb * MB)
    if output_mb:
        _lower(resource.RLIMIT_FSIZE, output_mb * MB)
    _lower(resource.RLIMIT_CORE, 0)


def _lower(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard))


def main(argv: list[str] | None = None) -> int:
    """Parse the limits, set them, run pytest with the remaining arguments."""
    parser = argparse.ArgumentParser(prog="python -m steel_keras.grading.runner")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--output-mb", type=int, default=0)
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    set_limits(args.memory_mb, args.output_mb)
    import pytest

    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
