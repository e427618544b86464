"""Read and write the Severstal CSV files: ``train.csv``, submissions, ground truth.

Kaggle shipped two formats of each file, and all of them read into one long table
``ImageId, ClassId (int 1-4), EncodedPixels`` that holds the non-empty masks only:

- original (2019): ``ImageId_ClassId,EncodedPixels``, one row per image and class, e.g.
  ``0002cc93b.jpg_1,29102 12 ...``; an empty cell means no defect of that class. Every image is
  listed, so the reader also returns the list of all image ids.
- long (later): ``ImageId,ClassId,EncodedPixels`` (train.csv) or ``ImageId,EncodedPixels,ClassId``
  (sample_submission.csv, where ``ClassId`` 0 with ``1 409600`` is a placeholder that only lists
  the image). Defect-free images appear only where the file lists them with an empty mask or a
  placeholder; for train.csv they are the files in ``train_images/`` (see ``SteelDataset``).

Every problem is a :class:`~steel_keras.errors.DataError` naming the file, the line and what to do.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE
from steel_keras.errors import DataError, RLEError
from steel_keras.rle import is_empty_rle, validate_rle

__all__ = [
    "ORIGINAL_COLUMNS",
    "TRAIN_COLUMNS",
    "SUBMISSION_COLUMNS",
    "Annotations",
    "load_annotations",
    "read_annotations",
    "read_submission",
    "write_annotations",
    "write_submission",
]

ORIGINAL_COLUMNS = ("ImageId_ClassId", "EncodedPixels")
TRAIN_COLUMNS = ("ImageId", "ClassId", "EncodedPixels")
SUBMISSION_COLUMNS = ("ImageId", "EncodedPixels", "ClassId")
FORMATS = {"original": ORIGINAL_COLUMNS, "train": TRAIN_COLUMNS, "submission": SUBMISSION_COLUMNS}

_IMAGE_CLASS = re.compile(r"^(?P<image>.+)_(?P<cls>[^_]+)$")


@dataclass
class Annotations:
    """One CSV file of masks, read into the long table.

    Attributes:
        table: DataFrame with columns ``ImageId``, ``ClassId`` (int 1-4), ``EncodedPixels``,
            non-empty masks only, sorted by image then class.
        image_ids: every image the file lists, defect-free ones included, sorted.
        format: ``"original"``, ``"train"`` (``ImageId,ClassId,EncodedPixels``) or
            ``"submission"`` (``ImageId,EncodedPixels,ClassId``).
        path: the file it was read from (None when built in memory).
    """

    table: pd.DataFrame
    image_ids: list[str]
    format: str
    path: Path | None = None
    columns: tuple[str, ...] = field(default=())

    def masks_of(self, image_id: str) -> dict[int, str]:
        """``{class_id: rle}`` of one image's non-empty masks."""
        rows = self.table[self.table["ImageId"] == image_id]
        return dict(zip(rows["ClassId"].tolist(), rows["EncodedPixels"].tolist(), strict=True))

    def rle_lookup(self) -> dict[str, dict[int, str]]:
        """``{image_id: {class_id: rle}}`` for every image with at least one mask."""
        lookup: dict[str, dict[int, str]] = {}
        for image_id, class_id, rle in self.table.itertuples(index=False):
            lookup.setdefault(image_id, {})[class_id] = rle
        return lookup


def _detect_format(path: Path, columns: list[str]) -> str:
    stripped = [c.strip() for c in columns]
    if stripped == list(ORIGINAL_COLUMNS):
        return "original"
    if stripped == list(TRAIN_COLUMNS):
        return "train"
    if stripped == list(SUBMISSION_COLUMNS):
        return "submission"
    raise DataError(
        f"{path}: unexpected columns {stripped}; expected one of "
        + ", ".join(",".join(cols) for cols in FORMATS.values())
    )


def _line(row_index: int) -> str:
    # Row 0 of the table is line 2 of the file (line 1 is the header).
    return f"line {row_index + 2}"


def _parse_class_ids(path: Path, values: pd.Series, allow_placeholder: bool) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    allowed = set(CLASS_IDS) | ({0} if allow_placeholder else set())
    bad = numeric.isna() | (numeric % 1 != 0) | ~numeric.isin(allowed)
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise DataError(f"{path}, {_line(i)}: ClassId {values.iloc[i]!r} is not one of "
                        f"{sorted(allowed)}; class ids are 1-4")
    return numeric.astype(int)


def load_annotations(
    path: str | Path,
    *,
    allow_placeholder: bool = False,
    validate: bool = True,
    shape: tuple[int, int] = IMAGE_SHAPE,
) -> Annotations:
    """Read a train, truth or submission CSV in any of its formats.

    Args:
        path: the CSV file.
        allow_placeholder: accept ``ClassId`` 0 rows (sample_submission's ``1 409600,0``),
            which list an image without a mask.
        validate: check every RLE (a malformed one raises, naming the line).
        shape: the mask shape RLEs are validated against. Defaults to (256, 1600).

    Raises:
        DataError: missing or empty file, wrong columns, a bad ``ImageId_ClassId`` or
            ``ClassId``, a duplicated (image, class) pair, or a malformed RLE.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else
                        f"{path} is a folder; expected a CSV file")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a CSV with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    fmt = _detect_format(path, list(raw.columns))
    raw.columns = [c.strip() for c in raw.columns]
    if fmt == "original":
        parts = raw["ImageId_ClassId"].str.strip().str.extract(_IMAGE_CLASS)
        missing = parts["image"].isna()
        if missing.any():
            i = int(missing.to_numpy().argmax())
            raise DataError(f"{path}, {_line(i)}: ImageId_ClassId "
                            f"{raw['ImageId_ClassId'].iloc[i]!r} is not 'IMAGE.jpg_CLASS'")
        image_ids = parts["image"]
        class_ids = _parse_class_ids(path, parts["cls"], allow_placeholder)
    else:
        image_ids = raw["ImageId"].str.strip()
        class_ids = _parse_class_ids(path, raw["ClassId"].str.strip(), allow_placeholder)
    blank_ids = image_ids == ""
    if blank_ids.any():
        raise DataError(f"{path}, {_line(int(blank_ids.to_numpy().argmax()))}: empty ImageId")
    rles = raw["EncodedPixels"].str.strip()
    long = pd.DataFrame({"ImageId": image_ids, "ClassId": class_ids, "EncodedPixels": rles})
    all_ids = sorted(set(long["ImageId"]))

    keep = (long["ClassId"] != 0) & (long["EncodedPixels"] != "")
    masks = long[keep]
    dup = masks.duplicated(["ImageId", "ClassId"])
    if dup.any():
        i = int(masks.index[dup.to_numpy().argmax()])
        raise DataError(f"{path}, {_line(i)}: a second mask for image {long['ImageId'].iloc[i]} "
                        f"class {long['ClassId'].iloc[i]}; each (image, class) has one mask")
    if validate:
        for i, image_id, class_id, rle in zip(masks.index, masks["ImageId"], masks["ClassId"],
                                              masks["EncodedPixels"], strict=True):
            try:
                validate_rle(rle, shape, image_id=image_id, class_id=int(class_id))
            except RLEError as exc:
                raise RLEError(f"{path}, {_line(int(i))}: {exc}") from None
    table = masks.sort_values(["ImageId", "ClassId"]).reset_index(drop=True)
    return Annotations(table=table, image_ids=all_ids, format=fmt, path=path,
                       columns=tuple(raw.columns))


def read_annotations(path: str | Path, *, validate: bool = True) -> pd.DataFrame:
    """Read ``train.csv`` (either format) into ``ImageId, ClassId, EncodedPixels``, non-empty only.

    Use :func:`load_annotations` to also get every listed image id and the file's format.
    """
    return load_annotations(path, validate=validate).table


def read_submission(path: str | Path, *, validate: bool = True) -> Annotations:
    """Read a submission or ``sample_submission.csv`` in any format (placeholders allowed)."""
    return load_annotations(path, allow_placeholder=True, validate=validate)


def _mask_table(
    masks: pd.DataFrame | Mapping[str, Mapping[int, str]],
) -> dict[tuple[str, int], str]:
    if isinstance(masks, pd.DataFrame):
        rows = masks[["ImageId", "ClassId", "EncodedPixels"]].itertuples(index=False)
        return {(i, int(c)): r for i, c, r in rows if not is_empty_rle(r)}
    return {(i, int(c)): r for i, per in masks.items() for c, r in per.items()
            if not is_empty_rle(r)}


def write_submission(
    path: str | Path,
    masks: pd.DataFrame | Mapping[str, Mapping[int, str]],
    image_ids: Iterable[str],
    *,
    format: str = "submission",
) -> Path:
    """Write every (image, class) pair of ``image_ids``, empty where ``masks`` has no mask.

    Args:
        path: where to write.
        masks: the long table (``ImageId, ClassId, EncodedPixels``) or ``{image: {class: rle}}``.
        image_ids: every image of the submission, defect-free ones included.
        format: ``"submission"`` (``ImageId,EncodedPixels,ClassId``, Kaggle's current format),
            ``"original"`` (``ImageId_ClassId,EncodedPixels``) or ``"train"``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    lookup = _mask_table(masks)
    ids = sorted(set(image_ids))
    unknown = {i for i, _ in lookup} - set(ids)
    if unknown:
        raise DataError(f"masks given for images not in the submission: {sorted(unknown)[:5]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FORMATS[format])
        for image_id in ids:
            for class_id in CLASS_IDS:
                rle = lookup.get((image_id, class_id), "")
                writer.writerow({
                    "original": (f"{image_id}_{class_id}", rle),
                    "train": (image_id, class_id, rle),
                    "submission": (image_id, rle, class_id),
                }[format])
    return path


def write_annotations(path: str | Path, table: pd.DataFrame) -> Path:
    """Write non-empty masks as ``train.csv`` in the later format ``ImageId,ClassId,EncodedPixels``.

    An empty table writes the header alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table[list(TRAIN_COLUMNS)]
    # .loc with a bool array: `out[series]` on an empty object Series selects columns instead.
    keep = ~out["EncodedPixels"].map(is_empty_rle).to_numpy(dtype=bool)
    out.loc[keep].sort_values(["ImageId", "ClassId"]).to_csv(path, index=False)
    return path
