"""Where things live by default (the synthetic dataset, run directories), and atomic writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from steel_keras.errors import ConfigError

DATA_ENV = "STEEL_KERAS_DATA"


def project_root() -> Path:
    """The source checkout when running from one, else the current folder."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def default_data_dir() -> Path:
    """The embedded synthetic dataset: ``$STEEL_KERAS_DATA`` or ``datasets/synthetic``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else project_root() / "datasets" / "synthetic"


def default_runs_dir() -> Path:
    return project_root() / "runs"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Write a file (or folder) atomically: yield a temporary path beside ``path``, then rename.

    The temporary path is in the same folder, so the rename is atomic: readers see the old file
    or the complete new one, never a partial one, and a failure (a full disk, Ctrl-C) leaves
    the old file as it was.

    Example:
        >>> with atomic_output(tmp / "out.csv") as partial:  # doctest: +SKIP
        ...     frame.to_csv(partial)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as partial:
        partial.write_text(text)
    return Path(path)


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Return ``path`` if it can be (or is) a folder to write in; ConfigError if not.

    Checked before heavy work starts and without creating anything: ``path`` is not a file,
    and its nearest existing folder accepts a new file (tried with a temporary one, which
    tells a read-only or foreign folder apart where permission bits do not, e.g. for root).
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder; give a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: {parent} is a file, so no folder can be made there")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {path}: cannot write in {parent} ({exc.strerror}); "
            "give a folder you can write to"
        ) from None
    return path
