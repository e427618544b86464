"""Where things live by default: the embedded synthetic dataset and run directories."""

from __future__ import annotations

import os
from pathlib import Path

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
