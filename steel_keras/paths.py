"""Where things live by default (the synthetic dataset, run directories), atomic writes, and
the check every output path gets before a command starts its work."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from steel_keras.errors import OutputError

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


#: Errors of a write that mean the disk or the quota is full, or the file system refuses it.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Write a file (or folder) atomically: yield a temporary path beside ``path``, then rename.

    The temporary path is in the same folder, so the rename is atomic: readers see the old file
    or the complete new one, never a partial one, and a failure (a full disk, Ctrl-C) leaves
    the old file as it was. A file is flushed to disk before the rename, so that a write the
    disk refuses late fails here, not after the old file is gone.

    Raises:
        OutputError: the folder cannot be made, the disk is full, or ``path`` is a folder.

    Example:
        >>> with atomic_output(tmp / "out.csv") as partial:  # doctest: +SKIP
        ...     frame.to_csv(partial)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: the folder {path.parent} cannot be made "
            f"({exc.strerror}); give another path"
        ) from None
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        if partial.is_file():
            _flush_to_disk(partial)
        os.replace(partial, path)
    except OSError as exc:
        names = {str(exc.filename), str(exc.filename2)}
        if exc.errno not in _WRITE_ERRNOS and str(partial) not in names:
            raise
        if path.is_dir():
            raise OutputError(
                f"cannot write {path}: a folder is in its place; remove it or give another path"
            ) from None
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise OutputError(f"could not write {path} ({exc.strerror}); {kept}") from None
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def _flush_to_disk(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as partial:
        partial.write_text(text)
    return Path(path)


def check_output(
    path: str | Path, *, kind: str = "file", inputs: Iterable[str | Path] = (), what: str = "--out"
) -> Path:
    """Check, before any work starts and without creating anything, that ``path`` can be written.

    Args:
        path: the file (``kind="file"``) or folder (``kind="dir"``) a command will write.
        kind: ``"file"`` or ``"dir"``.
        inputs: files and folders the command reads; ``path`` may be none of them and may not
            lie inside any of those folders (symbolic links are followed).
        what: how the user gave ``path``, for the message (``--out``, ``--json``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ``~`` expanded.

    Raises:
        OutputError: one line saying what is wrong with ``path`` and what to do.

    Example:
        >>> check_output("data/train.csv", inputs=["data"])  # doctest: +SKIP
        OutputError: --out data/train.csv lies inside data, which this command reads; ...
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path).expanduser()
    if kind == "file" and path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give the path of a file to write")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; give a folder to write in")
    for source in inputs:
        _check_not_input(path, Path(source).expanduser(), what)
    folder = path if kind == "dir" else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"{what} {path}: {existing} is a file, so no folder can be made there; "
            "give another path"
        )
    try:
        # A real file, not the permission bits: they say nothing for root or a read-only mount.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(
            f"{what} {path}: cannot write in {existing} ({exc.strerror}); give a "
            "folder you can write to"
        ) from None
    return path


def _check_not_input(path: Path, source: Path, what: str) -> None:
    """Raise OutputError where ``path`` is ``source`` or lies inside the folder ``source``."""
    target, real_source = Path(os.path.realpath(path)), Path(os.path.realpath(source))
    same = target == real_source or (
        path.exists() and source.exists() and os.path.samefile(path, source)
    )
    if same:
        raise OutputError(
            f"{what} {path} is {source}, which this command reads; writing there "
            "would destroy it: give another path"
        )
    if source.is_dir() and target.is_relative_to(real_source):
        raise OutputError(
            f"{what} {path} lies inside {source}, which this command reads; write outside it"
        )
