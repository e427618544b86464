"""Graded exercise tests: points per test, and the implementation under test from ``impl``.

The ``steel_keras.grading.plugin`` pytest plugin supplies the ``points`` marker and the ``impl``
fixture. What ``impl`` holds: ``--impl`` or ``$STEEL_KERAS_GRADE_IMPL`` (``solutions`` or a folder
of exercise files), else the ``exercises/`` folder beside ``tests/`` in a student's copy, else the
library's reference solutions (in the source checkout, where these tests must score full marks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steel_keras.grading.plugin import SOLUTIONS, register_from_conftest


def pytest_configure(config: pytest.Config) -> None:
    exercises = Path(__file__).resolve().parents[2] / "exercises"
    register_from_conftest(config, exercises if exercises.is_dir() else SOLUTIONS)
