"""What the chapters in ``course/`` share: smoke mode, the data they run on, a folder for runs.

Every chapter starts with::

    from steel_keras.chapters import SMOKE, course_data, pick, work_dir

    DATA = course_data()                  # the synthetic data (or $STEEL_KERAS_DATA)
    EPOCHS = pick(full=6, smoke=1)        # one value for a real run, one for CI

``STEEL_KERAS_SMOKE=1`` in the environment turns smoke mode on: the chapters then run on a
small synthetic dataset (generated once into a cache folder), with tiny images and one epoch,
so that CI executes all of them in minutes. The numbers they print are then noise; the code
paths are the same.

``steel_keras.chapters.notebooks`` keeps the paired ``.ipynb`` files in sync, and
``steel_keras.chapters.check`` executes the chapters (``steel-keras course sync`` / ``check``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from steel_keras.paths import default_runs_dir

__all__ = ["SMOKE", "SMOKE_ENV", "course_data", "pick", "smoke_dataset", "smoke_mode", "work_dir"]

SMOKE_ENV = "STEEL_KERAS_SMOKE"
CACHE_ENV = "STEEL_KERAS_CACHE"
SMOKE_TRAIN = 60
SMOKE_TEST = 20
SMOKE_SEED = 2019

T = TypeVar("T")

# The chapters' progress bars fall back to text where ipywidgets is missing; no need to warn.
warnings.filterwarnings("ignore", message="IProgress not found")


def smoke_mode() -> bool:
    """True when ``$STEEL_KERAS_SMOKE`` is ``1``, ``true``, ``yes`` or ``on``."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


#: Smoke mode, read once when the chapter imports this module.
SMOKE = smoke_mode()


def pick(full: T, smoke: T) -> T:
    """``smoke`` in smoke mode, else ``full``: ``EPOCHS = pick(full=6, smoke=1)``."""
    return smoke if SMOKE else full


def cache_dir() -> Path:
    """``$STEEL_KERAS_CACHE``, else ``$XDG_CACHE_HOME/steel-keras`` or ``~/.cache/steel-keras``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "steel-keras"


def course_data(path: str | Path | None = None) -> Path:
    """The dataset folder a chapter runs on.

    Args:
        path: a Kaggle-layout folder (real or synthetic), or None for the default: the small
            smoke dataset in smoke mode, else the embedded synthetic dataset (made on first
            use; ``$STEEL_KERAS_DATA`` points it at another folder, e.g. the real download).

    Returns:
        The folder.
    """
    from steel_keras.synthetic import resolve_data_dir

    if path is not None:
        return resolve_data_dir(path)
    return smoke_dataset() if SMOKE else resolve_data_dir(None)


def smoke_dataset(n_train: int = SMOKE_TRAIN, n_test: int = SMOKE_TEST,
                  seed: int = SMOKE_SEED) -> Path:
    """A small synthetic dataset in the cache folder, generated on first use (a few seconds).

    The folder's name carries the counts, the seed and the generator's version, so a change of
    any of them makes a new one; a lock keeps two processes from generating it at once.
    """
    from steel_keras.synthetic import GENERATOR_VERSION, generate_dataset

    folder = cache_dir() / f"course-smoke-{n_train}-{n_test}-seed{seed}-v{GENERATOR_VERSION}"
    if _finished(folder):
        return folder
    with _locked(folder):
        if not _finished(folder):
            generate_dataset(folder, n_train, n_test, seed, progress=False)
    return folder


def _finished(folder: Path) -> bool:
    try:
        info = json.loads((folder / "dataset_info.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and (folder / "train.csv").is_file()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; a clash there only regenerates the data
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def work_dir(chapter: str) -> Path:
    """An empty folder for a chapter's runs and files.

    ``runs/course/<chapter>`` (emptied first, so a chapter always starts afresh), or a new
    temporary folder in smoke mode, so that CI runs never touch a student's runs.
    """
    if SMOKE:
        return Path(tempfile.mkdtemp(prefix=f"steel-keras-{chapter}-"))
    folder = default_runs_dir() / "course" / chapter
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
