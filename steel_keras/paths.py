"""Where things live by default: the embedded synthetic dataset and run directories."""

from __future__ import annotations

import os
import tempfile
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
        raise ConfigError(f"{what} {path}: cannot write in {parent} ({exc.strerror}); "
                          "give a folder you can write to") from None
    return path
