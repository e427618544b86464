"""Execute the chapters, each in a fresh Jupyter kernel; say which passed and how long each took.

    steel-keras course check [--chapter N] [--timeout S] [--smoke] [--out DIR]

A chapter passes when every cell of its notebook (jupytext's conversion of ``course/NN_slug.py``,
so the script is what runs) executes without an error within the chapter's time limit. The kernel
runs in ``course/``, inherits this process's environment (``STEEL_KERAS_SMOKE=1`` or ``--smoke``
shrinks data and epochs) and is shut down after each chapter, so chapters never share state.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steel_keras.chapters import SMOKE_ENV
from steel_keras.chapters.notebooks import Chapter, to_notebook
from steel_keras.paths import atomic_output

__all__ = ["ChapterResult", "check_chapters", "format_result", "run_chapter"]

DEFAULT_TIMEOUT = 1800.0
KERNEL_STARTUP_S = 120


@dataclass(frozen=True)
class ChapterResult:
    """How one chapter ran: passed or not, seconds (kernel start included), and why it failed.

    ``cpu_seconds`` is the CPU time of the kernel and everything it started (all cores): on a
    busy machine the wall-clock ``seconds`` grow with the load, the CPU time much less.
    """

    chapter: Chapter
    passed: bool
    seconds: float
    error: str = ""
    cpu_seconds: float = 0.0


def run_chapter(chapter: Chapter, timeout: float = DEFAULT_TIMEOUT, *, smoke: bool | None = None,
                out: Path | None = None) -> ChapterResult:
    """Execute one chapter top to bottom in a new kernel.

    Args:
        chapter: the chapter.
        timeout: seconds for the whole chapter, kernel start included.
        smoke: set (True) or clear (False) ``STEEL_KERAS_SMOKE`` for the kernel; None keeps
            this process's value.
        out: a folder to write the executed notebook to (with its outputs), for reading.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from traitlets.config import Config

    notebook = to_notebook(chapter.script)
    env = dict(os.environ)
    if smoke is not None:
        env[SMOKE_ENV] = "1" if smoke else "0"
    start, cpu_start = time.monotonic(), _children_cpu()
    deadline = start + timeout
    current = {"index": -1}

    def remaining(cell) -> int:
        return max(1, int(deadline - time.monotonic()))

    def on_cell_start(cell, cell_index) -> None:
        current["index"] = cell_index

    sockets = tempfile.TemporaryDirectory(prefix="steel-keras-kernel-")
    # IPC sockets in a private folder: no TCP port open to the machine while a chapter runs.
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(Path(sockets.name) / "kernel")
    client = NotebookClient(notebook, config=config, kernel_name="python3",
                            timeout_func=remaining, startup_timeout=KERNEL_STARTUP_S,
                            on_cell_start=on_cell_start, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(chapter.script.parent)}})
    error = ""
    try:
        client.execute(env=env, cwd=str(chapter.script.parent))
    except CellTimeoutError:
        error = f"timed out: the chapter ran past its limit of {timeout:g} s"
    except CellExecutionError as exc:
        error = f"{exc.ename}: {str(exc.evalue).strip().splitlines()[0] if exc.evalue else ''}"
    except DeadKernelError as exc:
        error = f"the kernel died ({exc}); out of memory?"
    finally:
        sockets.cleanup()
    seconds = time.monotonic() - start
    if error and current["index"] >= 0:
        error = f"cell {current['index']} ({_first_line(notebook, current['index'])}): {error}"
    if out is not None:
        import nbformat

        with atomic_output(out / f"{chapter.name}.ipynb") as partial:
            nbformat.write(notebook, partial)
    return ChapterResult(chapter, not error, seconds, error, _children_cpu() - cpu_start)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished child processes (and theirs)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _first_line(notebook, index: int) -> str:
    lines = [line for line in notebook.cells[index].source.splitlines() if line.strip()]
    return (lines[0][:50] + ("..." if len(lines[0]) > 50 else "")) if lines else "empty cell"


def check_chapters(chosen: list[Chapter], timeout: float = DEFAULT_TIMEOUT, *,
                   smoke: bool | None = None, out: Path | None = None,
                   report: Callable[[ChapterResult], None] | None = None) -> list[ChapterResult]:
    """Run each chapter (see :func:`run_chapter`); ``report`` is called as each one ends."""
    results = []
    for chapter in chosen:
        result = run_chapter(chapter, timeout, smoke=smoke, out=out)
        if report is not None:
            report(result)
        results.append(result)
    return results


def format_result(result: ChapterResult) -> str:
    """``01_data_and_rle   passed   12.3 s  (CPU 10.1 s)``, and the error of a failed chapter."""
    line = f"{result.chapter.name:<26}{'passed' if result.passed else 'FAILED':<8}" \
           f"{result.seconds:7.1f} s  (CPU {result.cpu_seconds:6.1f} s)"
    return line + (f"  {result.error}" if result.error else "")
