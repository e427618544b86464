"""Download the real Severstal data with the ``kaggle`` command and the user's own credentials.

Nothing here talks to the network itself: it checks that the ``kaggle`` command and an API
token are present (so the user gets a clear message instead of a traceback), runs
``kaggle competitions download -c severstal-steel-defect-detection -p OUT`` and unzips the
archive into ``OUT``, which then has Kaggle's layout (``train.csv``, ``train_images/``,
``test_images/``, ``sample_submission.csv``).

Example:
    >>> from steel_keras.download import download_competition
    >>> download_competition("datasets/severstal")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from steel_keras.errors import DataError

__all__ = [
    "COMPETITION",
    "RULES_URL",
    "TOKEN_URL",
    "download_competition",
    "find_credentials",
    "find_kaggle",
    "unzip_archive",
]

COMPETITION = "severstal-steel-defect-detection"
RULES_URL = f"https://www.kaggle.com/c/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings (API, Create New Token)"


def find_kaggle() -> str:
    """The path of the ``kaggle`` command.

    Returns:
        The executable found on ``PATH``.

    Raises:
        DataError: the command is not installed.
    """
    exe = shutil.which("kaggle")
    if exe is None:
        raise DataError(
            "the `kaggle` command is not installed (or not on PATH); install it with "
            "`pip install kaggle`, then run this again"
        )
    return exe


def _token_files() -> list[Path]:
    """Where the kaggle command looks for a token, in its own order."""
    home = Path.home()
    folders = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        folders.append(Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser())
    folders.append(home / ".kaggle")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    folders.append((Path(xdg) if xdg else home / ".config") / "kaggle")
    return [folder / name for folder in folders for name in ("kaggle.json", "access_token")]


def find_credentials() -> str:
    """Where the Kaggle API token comes from, without reading the secret itself.

    Returns:
        ``"KAGGLE_USERNAME/KAGGLE_KEY"``, ``"KAGGLE_API_TOKEN"`` or the token file's path.

    Raises:
        DataError: no token in the environment or in ``~/.kaggle/kaggle.json`` (or
            ``$KAGGLE_CONFIG_DIR``); the message says where to get one.
    """
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for path in _token_files():
        if path.is_file():
            return str(path)
    raise DataError(
        f"no Kaggle API credentials: looked for {_token_files()[0]} and KAGGLE_USERNAME/"
        f"KAGGLE_KEY; create a token at {TOKEN_URL}, save it as ~/.kaggle/kaggle.json "
        f"(chmod 600), and accept the competition rules at {RULES_URL}"
    )


def _last_line(text: str) -> str:
    # Progress bars redraw with carriage returns: they end lines too.
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _run_streaming(command: list[str], quiet: bool) -> tuple[int, str]:
    """Run ``command``, echoing its output (unless ``quiet``); return (exit code, output tail).

    The kaggle command prints some errors on stdout and its progress on stderr, so both are
    read together: shown live to the user and the last few kilobytes kept for the message.
    """
    tail = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            text = chunk.decode(errors="replace")
            if not quiet:
                sys.stderr.write(text)
                sys.stderr.flush()
            tail = (tail + text)[-4096:]
    return proc.returncode, tail


def unzip_archive(archive: Path, out: Path) -> list[str]:
    """Extract ``archive`` into ``out``, refusing members that would land outside it.

    Args:
        archive: Path. A zip file.
        out: Path. The folder to extract into.

    Returns:
        The names of the extracted members.

    Raises:
        DataError: not a zip file, or a member path escapes ``out``.
    """
    root = out.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                if not (root / name).resolve().is_relative_to(root):
                    raise DataError(f"{archive}: member {name!r} would be written outside {out}")
            zf.extractall(out)
    except zipfile.BadZipFile:
        raise DataError(
            f"{archive} is not a zip file (an interrupted download?); delete it and "
            "run the download again"
        ) from None
    return names


def download_competition(out: str | Path, *, keep_zip: bool = False, quiet: bool = False) -> Path:
    """Download and unzip the Severstal competition data into ``out``.

    Args:
        out: str or Path. The folder; created if missing. About 1.6 GB is downloaded.
        keep_zip: bool. Keep the downloaded archive after extracting it.
        quiet: bool. Hide the kaggle command's progress output.

    Returns:
        The folder, now holding ``train.csv``, ``train_images/``, ``test_images/`` and
        ``sample_submission.csv``.

    Raises:
        DataError: the kaggle command is missing, there are no credentials, the command
            failed (its last error line is shown) or the archive is broken.
    """
    exe = find_kaggle()
    find_credentials()
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    command = [exe, "competitions", "download", "-c", COMPETITION, "-p", str(out)]
    code, output = _run_streaming(command, quiet)
    if code != 0:
        hint = ""
        if "403" in output or "forbidden" in output.lower():
            hint = f"; accept the competition rules at {RULES_URL} first"
        raise DataError(
            f"`kaggle competitions download` failed (exit {code}): {_last_line(output)}{hint}"
        )
    archive = out / f"{COMPETITION}.zip"
    if not archive.is_file():
        raise DataError(f"the kaggle command succeeded but {archive} is missing; check {out}")
    unzip_archive(archive, out)
    if not keep_zip:
        archive.unlink()
    return out
