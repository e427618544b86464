"""``steel-keras download``: every way it can fail says so in one line, up to the network.

No mocks: the command runs in real subprocesses, with a fake HOME and PATH. Where a ``kaggle``
command is needed, a small real script named ``kaggle`` stands in for it (it fails like the
real one does, or writes a zip as the real one would after downloading).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from steel_keras.download import (
    COMPETITION,
    RULES_URL,
    find_credentials,
    find_kaggle,
    unzip_archive,
)
from steel_keras.errors import DataError

FAILING_KAGGLE = """\
import sys
print("Downloading severstal-steel-defect-detection.zip to " + sys.argv[-1])
print("403 - Forbidden - You must accept this competition's rules", file=sys.stderr)
sys.exit(1)
"""

# Writes the archive where the real command would, recording its own arguments.
WORKING_KAGGLE = f"""\
import sys, zipfile, pathlib
out = pathlib.Path(sys.argv[sys.argv.index("-p") + 1])
(out / "args.txt").write_text(" ".join(sys.argv[1:]))
with zipfile.ZipFile(out / "{COMPETITION}.zip", "w") as zf:
    zf.writestr("train.csv", "ImageId,ClassId,EncodedPixels\\n")
    zf.writestr("sample_submission.csv", "ImageId,EncodedPixels,ClassId\\n")
    zf.writestr("train_images/0002cc93b.jpg", b"jpeg")
    zf.writestr("test_images/00031f466.jpg", b"jpeg")
"""


def fake_kaggle(folder: Path, body: str) -> Path:
    """A real executable named ``kaggle`` in ``folder`` running ``body`` with this Python."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "kaggle"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return folder


def clean_env(home: Path, path: str, **extra: str) -> dict[str, str]:
    """The current environment without Kaggle settings, with a fake HOME and the given PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAGGLE_") and k != "XDG_CONFIG_HOME"
    }
    env.update(HOME=str(home), PATH=path, **extra)
    return env


def run_download(out: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", "download", "--out", str(out), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_kaggle_not_installed(tmp_path):
    env = clean_env(tmp_path / "home", str(tmp_path / "empty-bin"))
    result = run_download(tmp_path / "out", env)
    assert_one_line_error(result, "`kaggle` command is not installed", "pip install kaggle")


def test_no_credentials(tmp_path):
    bin_dir = fake_kaggle(tmp_path / "bin", FAILING_KAGGLE)
    env = clean_env(tmp_path / "home", str(bin_dir))
    result = run_download(tmp_path / "out", env)
    assert_one_line_error(
        result, "no Kaggle API credentials", ".kaggle/kaggle.json", "KAGGLE_USERNAME", RULES_URL
    )
    assert not (tmp_path / "out").exists()


def test_command_failure_shows_its_last_error_line(tmp_path):
    bin_dir = fake_kaggle(tmp_path / "bin", FAILING_KAGGLE)
    env = clean_env(tmp_path / "home", str(bin_dir), KAGGLE_USERNAME="me", KAGGLE_KEY="k")
    result = run_download(tmp_path / "out", env, "--quiet")
    assert_one_line_error(result, "failed (exit 1)", "403 - Forbidden", RULES_URL)


def test_command_output_is_shown_unless_quiet(tmp_path):
    bin_dir = fake_kaggle(tmp_path / "bin", FAILING_KAGGLE)
    env = clean_env(tmp_path / "home", str(bin_dir), KAGGLE_USERNAME="me", KAGGLE_KEY="k")
    result = run_download(tmp_path / "out", env)
    assert result.returncode == 2
    assert "Downloading severstal-steel-defect-detection.zip" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("steel-keras download: error:")


def test_download_and_unzip(tmp_path):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "me", "key": "k"}')
    bin_dir = fake_kaggle(tmp_path / "bin", WORKING_KAGGLE)
    out = tmp_path / "severstal"
    result = run_download(out, clean_env(home, str(bin_dir)), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"Severstal data in {out}" in result.stdout
    assert (out / "args.txt").read_text() == f"competitions download -c {COMPETITION} -p {out}"
    assert (out / "train.csv").is_file() and (out / "train_images" / "0002cc93b.jpg").is_file()
    assert (out / "test_images" / "00031f466.jpg").is_file()
    assert not (out / f"{COMPETITION}.zip").exists()


def test_find_kaggle_and_credentials_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="pip install kaggle"):
        find_kaggle()
    monkeypatch.setenv("PATH", str(fake_kaggle(tmp_path / "bin", FAILING_KAGGLE)))
    assert find_kaggle() == str(tmp_path / "bin" / "kaggle")

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(DataError, match="no Kaggle API credentials"):
        find_credentials()
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text("{}")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    assert find_credentials() == str(config / "kaggle.json")
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert find_credentials() == "KAGGLE_USERNAME/KAGGLE_KEY"


def test_unzip_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(DataError, match="outside"):
        unzip_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_unzip_reports_a_broken_archive(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a zip file"):
        unzip_archive(archive, tmp_path / "out")
