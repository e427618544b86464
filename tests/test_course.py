"""The chapters: notebooks in sync with their scripts, and every chapter executes in smoke mode.

``test_every_chapter_executes_in_smoke_mode`` is the CI check of the course: it runs
``steel-keras course check --smoke`` on all chapters, each in a fresh Jupyter kernel, on the small
smoke dataset (generated once into the cache folder).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from steel_keras.chapters.check import run_chapter
from steel_keras.chapters.notebooks import chapters, out_of_sync, sync_notebooks, to_notebook

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"


def steel_keras(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steel_keras", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_chapters_are_numbered_and_paired():
    found = chapters(COURSE)
    assert [c.number for c in found] == list(range(1, len(found) + 1))
    assert all(c.notebook.is_file() for c in found)


def test_checked_in_notebooks_match_their_scripts_and_have_no_outputs():
    assert out_of_sync(chapters(COURSE)) == {}, "run `make notebooks` and commit the .ipynb"
    for chapter in chapters(COURSE):
        stored = nbformat.read(chapter.notebook, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in stored.cells if c.cell_type == "code"), chapter.name


def test_every_chapter_has_a_header_with_run_time_and_hardware():
    for chapter in chapters(COURSE):
        first = to_notebook(chapter.script).cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# Chapter "), chapter
        assert "**Run time:**" in first.source and "**Hardware:**" in first.source, chapter


def test_sync_finds_and_fixes_a_stale_notebook(tmp_path):
    shutil.copy(COURSE / "01_data_and_rle.py", tmp_path / "01_data_and_rle.py")
    [chapter] = chapters(tmp_path)
    assert out_of_sync([chapter]) == {chapter.notebook: "missing"}
    assert sync_notebooks([chapter]) == [chapter.notebook]
    assert sync_notebooks([chapter]) == [], "an unchanged chapter must give the same file"
    chapter.script.write_text(chapter.script.read_text() + "\n# %%\nprint('new cell')\n")
    assert "differs" in out_of_sync([chapter])[chapter.notebook]
    sync_notebooks([chapter])
    notebook = nbformat.read(chapter.notebook, as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nbformat.write(notebook, chapter.notebook)
    assert "outputs" in out_of_sync([chapter])[chapter.notebook]


def test_sync_check_command():
    result = steel_keras("course", "sync", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every notebook matches" in result.stdout


def test_check_reports_the_failing_cell_and_a_timeout(tmp_path):
    (tmp_path / "01_broken.py").write_text(
        "# %% [markdown]\n# # Chapter 1: broken\n\n# %%\nx = 1\n\n# %%\nraise ValueError('bad')\n")
    (tmp_path / "02_slow.py").write_text("# %%\nimport time\n\n# %%\ntime.sleep(60)\n")
    broken, slow = chapters(tmp_path)
    result = run_chapter(broken, timeout=60)
    assert not result.passed
    assert result.error == "cell 2 (raise ValueError('bad')): ValueError: bad"
    result = run_chapter(slow, timeout=8)
    assert not result.passed and "timed out" in result.error and result.seconds < 30


def test_check_usage_errors():
    result = steel_keras("course", "check", "--chapter", "99")
    assert result.returncode == 2 and "no chapter 99" in result.stderr
    result = steel_keras("course", "check", "--timeout", "-1")
    assert result.returncode == 2 and "positive" in result.stderr


def test_every_chapter_executes_in_smoke_mode():
    result = steel_keras("course", "check", "--smoke", "--timeout", "600", timeout=1800)
    print(result.stdout)
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^(\d\d_\w+)\s+(passed|FAILED)",
                                                          result.stdout, re.M)}
    assert lines == {c.name: "passed" for c in chapters(COURSE)}, result.stdout + result.stderr
    assert result.returncode == 0
