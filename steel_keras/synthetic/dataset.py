"""Write a synthetic dataset folder, and find or make the embedded default one.

A dataset folder holds a manifest (:data:`MANIFEST_FILE`) naming every file the generator
writes there, written before the first of them. Generating again deletes only the files the
old manifest names (or, for a dataset of an older version without one, the files its
``dataset_info.json`` implies); a non-empty folder with neither is refused, and so is a file
the generator would write that is not its own. Everything is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from steel_keras.constants import CLASS_IDS, IMAGE_HEIGHT, IMAGE_SHAPE, IMAGE_WIDTH
from steel_keras.errors import DataError
from steel_keras.paths import default_data_dir
from steel_keras.synthetic.labels import image_ids
from steel_keras.synthetic.render import JPEG_QUALITY, make_one
from steel_keras.synthetic.steel import texture_bank

DEFAULT_TRAIN = 1000
DEFAULT_TEST = 200
DEFAULT_SEED = 2019
GENERATOR = "steel_keras.synthetic"
# 3: light and texture matched to real images' statistics, decoys, class looks in relief.
GENERATOR_VERSION = "3"

INFO_FILE = "dataset_info.json"
MANIFEST_FILE = "synthetic_manifest.json"
COMPARE_PNG = "real_vs_synthetic.png"  # written by ``make-dataset --compare-real``
# Present while a generation runs: a folder holding it is an unfinished synthetic dataset.
IN_PROGRESS_FILE = ".synthetic-in-progress"
_CSV_FILES = ("train.csv", "test_truth.csv", "sample_submission.csv")
_SPLIT_FOLDERS = ("train_images", "test_images")


# ----------------------------------------------------------------------------- the manifest


def _planned_files(train_ids: list[str], test_ids: list[str]) -> list[str]:
    """Every file a generation may write, relative to the dataset folder."""
    return [
        *_CSV_FILES,
        INFO_FILE,
        COMPARE_PNG,
        *(f"train_images/{name}" for name in train_ids),
        *(f"test_images/{name}" for name in test_ids),
    ]


def _checked_entries(path: Path, entries: object) -> list[str]:
    """The manifest's file list, refusing anything that would reach outside the folder."""
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DataError(f"{path} has no list of files; delete the folder or choose another")
    for entry in entries:
        parts = PurePosixPath(entry).parts
        if not parts or PurePosixPath(entry).is_absolute() or ".." in parts:
            raise DataError(f"{path} names {entry!r}, outside the dataset folder; not touching it")
    return entries


def _read_manifest(out: Path) -> list[str] | None:
    """The files the manifest in ``out`` names, or None without a manifest."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path} ({exc}); delete the folder or choose another"
        ) from None
    return _checked_entries(path, data.get("files") if isinstance(data, dict) else None)


def _legacy_files(out: Path) -> list[str] | None:
    """Files a finished dataset of generator version 1 or 2 (no manifest) holds, or None."""
    try:
        info = json.loads((out / INFO_FILE).read_text())
        if info.get("generator") != GENERATOR:
            return None
        train_ids, test_ids = image_ids(
            int(info["seed"]), int(info["n_train"]), int(info["n_test"])
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return _planned_files(train_ids, test_ids)


def _files_we_wrote(out: Path) -> list[str]:
    """What an earlier generation wrote in the non-empty folder ``out``; refuses any other."""
    files = _read_manifest(out)
    if files is None:
        files = _legacy_files(out)
    if files is not None:
        return files
    if (out / IN_PROGRESS_FILE).exists():
        raise DataError(
            f"{out} holds an unfinished dataset of an older steel-keras without a manifest, so "
            "its images cannot be told from others; delete the folder or choose another"
        )
    raise DataError(
        f"{out} is not empty and holds no synthetic dataset (no {MANIFEST_FILE}); "
        "choose an empty or new folder"
    )


def _prepare_folder(out: Path, planned: list[str]) -> None:
    """Delete the previous generation's files from ``out`` and write the new manifest.

    Raises:
        DataError: ``out`` is a file, a foreign non-empty folder, or holds a file the new
            dataset would overwrite that no generation wrote.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; give a folder for the dataset")
    old = _files_we_wrote(out) if out.is_dir() and any(out.iterdir()) else []
    ours = set(old)
    for name in planned:
        if name not in ours and (out / name).exists():
            raise DataError(
                f"{out / name} exists and was not written by make-dataset; move it away or "
                "choose another folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    # Mark the folder unfinished before touching anything, so an interrupted run is never
    # mistaken for a complete dataset.
    (out / IN_PROGRESS_FILE).write_text(json.dumps({"generator": GENERATOR}) + "\n")
    for name in old:
        (out / name).unlink(missing_ok=True)
        (out / f"{name}.tmp").unlink(missing_ok=True)
    manifest = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "files": planned}
    _write_atomic_text(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    for folder in _SPLIT_FOLDERS:
        (out / folder).mkdir(exist_ok=True)


def is_synthetic_dataset(path: str | Path) -> bool:
    """True if ``path`` holds a dataset made by this generator, finished or interrupted."""
    path = Path(path)
    if (path / IN_PROGRESS_FILE).is_file() or (path / MANIFEST_FILE).is_file():
        return True
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR


# ----------------------------------------------------------------------------- writing


def _fork_is_safe() -> bool:
    """Whether worker processes can be forked from this one.

    Forking is quick and needs nothing from the caller's script (spawned workers re-import the
    main module, which fails from stdin and re-runs unguarded scripts), but a fork copies
    other threads' locks: so only where fork exists and no other thread (TensorFlow's) runs.
    """
    import threading

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and "tensorflow" not in sys.modules
        and threading.active_count() == 1
    )


def _run_tasks(
    tasks: list[tuple[str, int, str]], seed: int, out: Path, workers: int, progress: bool
) -> Iterator[tuple[str, str, dict[int, str]]]:
    """Render every task, in order, in ``workers`` processes (or this one), with a progress bar."""
    from tqdm.auto import tqdm

    work = functools.partial(make_one, seed=seed, out=str(out))
    bar = tqdm(total=len(tasks), desc="make-dataset", unit="img", disable=not progress)
    with contextlib.ExitStack() as stack:
        stack.enter_context(bar)
        if workers > 1 and _fork_is_safe():
            texture_bank()  # built once here, shared with the forked workers
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap(work, tasks, chunksize=4)
        else:
            results = map(work, tasks)
        for result in results:
            bar.update(1)
            yield result


def _default_workers(n_images: int) -> int:
    # A worker costs a fork and a copy of the texture bank: worth it beyond a few dozen images.
    return 1 if n_images < 48 else max(1, min(2, os.cpu_count() or 1))


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_sample_submission(path: Path, test_ids: list[str]) -> None:
    """Kaggle's current format: one placeholder row ``ID.jpg,1 409600,0`` per test image."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ImageId", "EncodedPixels", "ClassId"])
        writer.writerows([image_id, f"1 {IMAGE_HEIGHT * IMAGE_WIDTH}", 0] for image_id in test_ids)
    os.replace(tmp, path)


def _write_masks(path: Path, rows: list[tuple[str, int, str]]) -> None:
    """Write ``(image, class, rle)`` rows as ``ImageId,ClassId,EncodedPixels``, atomically."""
    # Imported here: worker processes import this module and never need pandas.
    import pandas as pd

    from steel_keras.data.annotations import write_annotations

    tmp = path.with_name(path.name + ".tmp")
    write_annotations(tmp, pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]))
    os.replace(tmp, path)


def _dataset_info(seed: int, train: list[tuple], test: list[tuple], n: tuple[int, int]) -> dict:
    def per_class(rows: list[tuple]) -> dict[str, int]:
        return {str(c): sum(1 for _, k, _ in rows if k == c) for c in CLASS_IDS}

    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n[0],
        "n_test": n[1],
        "image_shape": list(IMAGE_SHAPE),
        "jpeg_quality": JPEG_QUALITY,
        "train_masks_per_class": per_class(train),
        "test_masks_per_class": per_class(test),
    }


def generate_dataset(
    out: str | Path,
    n_train: int = DEFAULT_TRAIN,
    n_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> Path:
    """Write a synthetic Severstal dataset in Kaggle's layout.

    Files: ``train_images/*.jpg``, ``test_images/*.jpg`` (1600 x 256, RGB with three equal
    channels), ``train.csv`` and ``test_truth.csv`` (``ImageId,ClassId,EncodedPixels``,
    non-empty masks only), ``sample_submission.csv`` (``ImageId,EncodedPixels,ClassId`` with
    one ``1 409600,0`` placeholder row per test image), ``dataset_info.json`` and the manifest
    ``synthetic_manifest.json``. ``train.csv`` and ``dataset_info.json`` are written last, so
    an interrupted run never looks complete.

    Args:
        out: str or Path. The folder; created if missing. It must be empty or hold a dataset
            this generator made, whose files (and only those) are replaced.
        n_train: int. Number of train images (0 or more).
        n_test: int. Number of test images (0 or more); at least one of the two must be > 0.
        seed: int (>= 0). The same seed gives the same files, byte for byte.
        progress: bool. Show a progress bar.
        workers: int, optional. Processes to draw images in; the default is 2 for more than a
            few dozen images, else 1. Where forking is unsafe (no ``fork``, or TensorFlow
            already imported) images are drawn in this process. The output never depends on it.

    Returns:
        The dataset folder.

    Raises:
        DataError: bad counts or seed; ``out`` is a file or a non-empty folder that holds no
            synthetic dataset, or holds a file in the way that the generator did not write.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise DataError(
            f"need 0 or more train and test images and at least one in all; got "
            f"{n_train} train and {n_test} test"
        )
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}")
    out = Path(out).expanduser()
    train_ids, test_ids = image_ids(seed, n_train, n_test)
    _prepare_folder(out, _planned_files(train_ids, test_ids))
    tasks = [("train", i, name) for i, name in enumerate(train_ids)]
    tasks += [("test", i, name) for i, name in enumerate(test_ids)]
    rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}
    n_workers = workers if workers is not None else _default_workers(len(tasks))
    for split, image_id, rles in _run_tasks(tasks, seed, out, n_workers, progress):
        rows[split] += [(image_id, c, rle) for c, rle in sorted(rles.items())]
    _write_masks(out / "test_truth.csv", rows["test"])
    _write_sample_submission(out / "sample_submission.csv", test_ids)
    _write_masks(out / "train.csv", rows["train"])
    info = _dataset_info(seed, rows["train"], rows["test"], (n_train, n_test))
    _write_atomic_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    (out / IN_PROGRESS_FILE).unlink()
    return out


# ----------------------------------------------------------------------------- default dataset


def _is_complete(path: Path) -> bool:
    return (path / "train.csv").is_file() and not (path / IN_PROGRESS_FILE).exists()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so two processes never generate into it at once."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; generation is rare enough to go without
        yield
        return
    # The lock file lives in the temp folder: inside the dataset it would look like foreign
    # content, beside it it would show up in the user's checkout.
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"steel-keras-data-{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _needs_generation(path: Path) -> str | None:
    """Why the default dataset at ``path`` must be (re)made, or None if it is ready."""
    if not _is_complete(path):
        return "not found" if not (path / IN_PROGRESS_FILE).exists() else "unfinished"
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None  # a complete dataset from elsewhere (e.g. a real download): use it as is
    if info.get("generator") == GENERATOR and info.get("generator_version") != GENERATOR_VERSION:
        return f"made by generator version {info.get('generator_version')}"
    return None


def ensure_default_dataset(
    progress: bool = True,
    *,
    n_train: int = DEFAULT_TRAIN,
    n_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
) -> Path:
    """The embedded dataset at :func:`~steel_keras.paths.default_data_dir`, made on first use.

    Generates ``DEFAULT_TRAIN`` train and ``DEFAULT_TEST`` test images with ``DEFAULT_SEED``
    (about a minute) when the folder has no finished dataset or one of an older generator
    version, printing one line first. Any other finished dataset there is used as it is.

    Args:
        progress: bool. Show a progress bar while generating.
        n_train: int. Train images to generate if needed.
        n_test: int. Test images to generate if needed.
        seed: int. Seed to generate with if needed.

    Returns:
        The dataset folder.
    """
    path = default_data_dir()
    if _needs_generation(path) is None:
        return path
    with _folder_lock(path):
        reason = _needs_generation(path)  # another process may have made it meanwhile
        if reason is not None:
            print(
                f"steel-keras: synthetic dataset {reason}; generating {n_train} train and "
                f"{n_test} test images in {path} (seed {seed}, once)",
                file=sys.stderr,
            )
            generate_dataset(path, n_train, n_test, seed, progress=progress)
    return path


def resolve_data_dir(path: str | Path | None) -> Path:
    """The dataset folder to use: ``path`` checked, or the embedded synthetic one for None.

    Args:
        path: str, Path or None. A Kaggle-layout folder (real or synthetic), or None for
            :func:`ensure_default_dataset`.

    Returns:
        The folder.

    Raises:
        DataError: the folder is missing, is a file, or has neither ``train.csv`` nor
            ``test_images/``.
    """
    if path is None:
        return ensure_default_dataset()
    folder = Path(path).expanduser()
    hint = (
        f"make one with `steel-keras make-dataset --out {folder}` or get the real data with "
        f"`steel-keras download --out {folder}`"
    )
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; {hint}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a data folder; {hint}")
    if not (folder / "train.csv").is_file() and not (folder / "test_images").is_dir():
        raise DataError(
            f"{folder} has neither train.csv nor test_images/, so it is not a "
            f"Severstal dataset; {hint}"
        )
    return folder
