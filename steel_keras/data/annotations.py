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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE
from steel_keras.errors import DataError, RLEError
from steel_keras.paths import atomic_output
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
    """A set of masks: one CSV file read into the long table, or a model's predictions.

    The one form masks travel in, from the reader or the two-stage predictor to
    :func:`write_submission` and the scorer
    (:func:`steel_keras.metrics.competition.competition_dice`).

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
    format: str = "train"
    path: Path | None = None
    columns: tuple[str, ...] = field(default=())

    @classmethod
    def empty(cls, image_ids: Iterable[str]) -> Annotations:
        """No mask on any of ``image_ids``: the all-empty submission."""
        table = pd.DataFrame({"ImageId": pd.Series(dtype=object),
                              "ClassId": pd.Series(dtype="int64"),
                              "EncodedPixels": pd.Series(dtype=object)})
        return cls(table, sorted(set(image_ids)), "train")

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
    for fmt, expected in FORMATS.items():
        if stripped == list(expected):
            return fmt
    hint = ""
    if stripped and (stripped[0] == "" or stripped[0].startswith("Unnamed")):
        hint = " (the first column has no name: was it saved with pandas' index? use index=False)"
    raise DataError(
        f"{path}: unexpected columns {stripped}{hint}; expected one of "
        + ", ".join(",".join(cols) for cols in FORMATS.values())
    )


def _line(line_number: int) -> str:
    return f"line {line_number}"


def _read_raw(path: Path) -> pd.DataFrame:
    """The CSV as strings, indexed by line number in the file, blank lines dropped."""
    if not path.is_file():
        raise DataError(
            f"{path}: file not found"
            if not path.exists()
            else f"{path} is a folder; expected a CSV file"
        )
    try:
        # utf-8-sig: files saved by spreadsheet programs start with a byte-order mark.
        # Blank lines are read, then dropped, so that the index stays the file's line number.
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a CSV with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    raw.columns = [c.strip() for c in raw.columns]
    raw = raw.apply(lambda col: col.str.strip())
    raw.index = raw.index + 2  # line 1 is the header
    return raw[(raw != "").any(axis=1)]


def _parse_class_ids(path: Path, values: pd.Series, allow_placeholder: bool) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    allowed = set(CLASS_IDS) | ({0} if allow_placeholder else set())
    bad = numeric.isna() | (numeric % 1 != 0) | ~numeric.isin(allowed)
    if bad.any():
        line = int(values.index[bad.to_numpy().argmax()])
        raise DataError(
            f"{path}, {_line(line)}: ClassId {values[line]!r} is not one of "
            f"{sorted(allowed)}; class ids are 1-4"
            + ("" if allow_placeholder else " (0 only in sample submissions)")
        )
    return numeric.astype(int)


def _long_table(path: Path, raw: pd.DataFrame, fmt: str, allow_placeholder: bool) -> pd.DataFrame:
    """``ImageId, ClassId, EncodedPixels`` for every row, indexed by line number."""
    if fmt == "original":
        parts = raw["ImageId_ClassId"].str.extract(_IMAGE_CLASS)
        missing = parts["image"].isna()
        if missing.any():
            line = int(raw.index[missing.to_numpy().argmax()])
            raise DataError(
                f"{path}, {_line(line)}: ImageId_ClassId "
                f"{raw['ImageId_ClassId'][line]!r} is not 'IMAGE.jpg_CLASS', "
                "e.g. '0002cc93b.jpg_1'"
            )
        image_ids = parts["image"].str.strip()
        class_ids = _parse_class_ids(path, parts["cls"].str.strip(), allow_placeholder)
    else:
        image_ids = raw["ImageId"]
        class_ids = _parse_class_ids(path, raw["ClassId"], allow_placeholder)
    blank = (image_ids == "").to_numpy()
    if blank.any():
        raise DataError(f"{path}, {_line(int(raw.index[blank.argmax()]))}: empty ImageId")
    return pd.DataFrame(
        {"ImageId": image_ids, "ClassId": class_ids, "EncodedPixels": raw["EncodedPixels"]}
    )


def _check_duplicates(path: Path, long: pd.DataFrame) -> None:
    # Placeholders (class 0) only list an image; every real (image, class) pair appears once,
    # whether its mask is empty or not.
    pairs = long[long["ClassId"] != 0]
    dup = pairs.duplicated(["ImageId", "ClassId"], keep="first").to_numpy()
    if dup.any():
        line = int(pairs.index[dup.argmax()])
        image_id, class_id = pairs.loc[line, "ImageId"], pairs.loc[line, "ClassId"]
        first = int(
            pairs.index[
                ((pairs["ImageId"] == image_id) & (pairs["ClassId"] == class_id))
                .to_numpy()
                .argmax()
            ]
        )
        raise DataError(
            f"{path}, {_line(line)}: image {image_id} class {class_id} appears "
            f"again (first on line {first}); keep one row per (image, class)"
        )


def _validate_rles(path: Path, masks: pd.DataFrame, shape: tuple[int, int]) -> None:
    for line, image_id, class_id, rle in zip(
        masks.index, masks["ImageId"], masks["ClassId"], masks["EncodedPixels"], strict=True
    ):
        try:
            validate_rle(rle, shape, image_id=image_id, class_id=int(class_id))
        except RLEError as exc:
            raise RLEError(f"{path}, {_line(int(line))}: {exc}") from None


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
            ``ClassId``, a duplicated (image, class) pair, or a malformed RLE; the message
            names the file and the line.
    """
    path = Path(path)
    raw = _read_raw(path)
    fmt = _detect_format(path, list(raw.columns))
    long = _long_table(path, raw, fmt, allow_placeholder)
    _check_duplicates(path, long)
    masks = long[(long["ClassId"] != 0) & (long["EncodedPixels"] != "")]
    if validate:
        _validate_rles(path, masks, shape)
    table = masks.sort_values(["ImageId", "ClassId"]).reset_index(drop=True)
    return Annotations(
        table=table,
        image_ids=sorted(set(long["ImageId"])),
        format=fmt,
        path=path,
        columns=tuple(raw.columns),
    )


def read_annotations(path: str | Path, *, validate: bool = True) -> pd.DataFrame:
    """Read ``train.csv`` (either format) into ``ImageId, ClassId, EncodedPixels``, non-empty only.

    Use :func:`load_annotations` to also get every listed image id and the file's format.
    """
    return load_annotations(path, validate=validate).table


def read_submission(path: str | Path, *, validate: bool = True) -> Annotations:
    """Read a submission or ``sample_submission.csv`` in any format (placeholders allowed)."""
    return load_annotations(path, allow_placeholder=True, validate=validate)


def write_submission(
    path: str | Path,
    masks: Annotations,
    *,
    format: str = "submission",
) -> Path:
    """Write every (image, class) pair of ``masks.image_ids``, empty where it has no mask.

    Written atomically: a temporary file beside ``path``, renamed once complete.

    Args:
        path: where to write.
        masks: the masks and every image of the submission, defect-free ones included.
        format: ``"submission"`` (``ImageId,EncodedPixels,ClassId``, Kaggle's current format),
            ``"original"`` (``ImageId_ClassId,EncodedPixels``) or ``"train"``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    rows = masks.table[list(TRAIN_COLUMNS)].itertuples(index=False)
    lookup = {(i, int(c)): r for i, c, r in rows if not is_empty_rle(r)}
    ids = sorted(set(masks.image_ids))
    unknown = {i for i, _ in lookup} - set(ids)
    if unknown:
        raise DataError(f"masks given for images not in the submission: {sorted(unknown)[:5]}")
    with atomic_output(path) as partial, partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FORMATS[format])
        for image_id in ids:
            for class_id in CLASS_IDS:
                rle = lookup.get((image_id, class_id), "")
                writer.writerow(
                    {
                        "original": (f"{image_id}_{class_id}", rle),
                        "train": (image_id, class_id, rle),
                        "submission": (image_id, rle, class_id),
                    }[format]
                )
    return Path(path)


def write_annotations(path: str | Path, table: pd.DataFrame) -> Path:
    """Write non-empty masks as ``train.csv`` in the later format ``ImageId,ClassId,EncodedPixels``.

    An empty table writes the header alone.
    """
    out = table[list(TRAIN_COLUMNS)]
    # .loc with a bool array: `out[series]` on an empty object Series selects columns instead.
    keep = ~out["EncodedPixels"].map(is_empty_rle).to_numpy(dtype=bool)
    with atomic_output(path) as partial:
        out.loc[keep].sort_values(["ImageId", "ClassId"]).to_csv(partial, index=False)
    return Path(path)
