"""Shared fixtures: a tiny synthetic dataset, the real Severstal sample where present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_SAMPLE = Path(os.environ.get("STEEL_KERAS_REAL_SAMPLE",
                                  REPO_ROOT.parent / "shared" / "real_sample"))


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """A folder of real Severstal data: ``$STEEL_KERAS_REAL_SAMPLE``, else ``real_sample`` in a
    ``shared`` folder beside the checkout (23 real images, real RLE for 1,000 images). Not part
    of the repository; the tests that use it skip where it is absent."""
    if not (REAL_SAMPLE / "derived" / "train_subset1000_new_format.csv").is_file():
        pytest.skip(f"real Severstal sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic Kaggle-layout folder (48 train, 12 test images), made once per session."""
    from steel_keras.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    generate_dataset(out, n_train=48, n_test=12, seed=7, progress=False)
    return out
