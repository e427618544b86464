"""The autograder behind ``steel-keras grade``: graded exercise tests, run safely, as grade sheets.

- :mod:`~steel_keras.grading.plugin`: the pytest plugin (``points`` marker, ``impl`` fixture,
  per-test timeouts, the event report);
- :mod:`~steel_keras.grading.solutions`: which library function answers each exercise;
- :mod:`~steel_keras.grading.grader`: one pytest process per submission, with limits;
- :mod:`~steel_keras.grading.reports`: ``results.json``, ``grades.csv``, a student's table;
- :mod:`~steel_keras.grading.student_copy`: the files handed out to students.

Importing this package is cheap: pytest is imported by the grader and the plugin only.
"""

from importlib import import_module

_LAZY = {
    "Grade": "grader",
    "GradedTest": "grader",
    "Limits": "grader",
    "TestResult": "grader",
    "collect_tests": "grader",
    "grade_submission": "grader",
    "grade_submissions": "grader",
    "results_json": "reports",
    "student_table": "reports",
    "write_grades_csv": "reports",
    "write_results_json": "reports",
    "solutions_for": "solutions",
    "write_student_copy": "student_copy",
    "solution_source": "student_copy",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"steel_keras.grading.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'steel_keras.grading' has no attribute {name!r}")


__all__ = sorted(_LAZY)
