"""The competition's metric: mean Dice over every (image, class) pair, on RLE tables.

Kaggle scored a submission by the Dice coefficient ``2 |X ∩ Y| / (|X| + |Y|)`` of every
(ImageId, ClassId) pair of the test set, 4 pairs per image, defined as 1 when both the predicted
mask X and the true mask Y are empty, and averaged over all pairs. Most pairs are empty on both
sides, so an all-empty submission already scores the share of empty pairs (0.8556 on Kaggle's
public test set).

Only pairs with a mask on at least one side cost anything: empty/empty pairs are 1 without any
work, a mask against nothing is 0, and two masks are intersected run by run on their RLE (the
same number as decoding both and counting, without building two 256 x 1600 arrays).

This module needs numpy and pandas only, so ``steel-keras score`` never imports TensorFlow.
The same metric on mask arrays is :func:`steel_keras.metrics.masks.competition_score`.

Example:
    >>> import pandas as pd
    >>> truth = pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [3], "EncodedPixels": ["1 10"]})
    >>> pred = pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [3], "EncodedPixels": ["6 10"]})
    >>> result = competition_dice(pred, truth, image_ids=["a.jpg", "b.jpg"])
    >>> result.per_class[3], result.competition_dice  # 2*5/20 = 0.5; 7 empty pairs score 1
    (0.75, 0.9375)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE
from steel_keras.data.annotations import Annotations, read_submission
from steel_keras.errors import DataError
from steel_keras.metrics.masks import dice_from_counts
from steel_keras.rle import is_empty_rle, validate_rle

__all__ = ["ScoreResult", "competition_dice", "score_files"]

PairKey = tuple[str, int]


@dataclass
class ScoreResult:
    """A submission's score.

    Attributes:
        competition_dice: mean Dice over all ``n_pairs`` (image, class) pairs.
        per_class: ``{class_id: mean Dice over that class's pairs}`` for classes 1-4.
        n_images: images scored (the submission's images).
        n_pairs: ``4 * n_images``.
        empty_pair_share: share of pairs whose true mask is empty, i.e. what a submission
            with no masks at all scores.
        per_pair: DataFrame ``ImageId, ClassId, pred_pixels, true_pixels, intersection, dice``,
            one row per pair, when asked for (``per_pair=True``), else None.
    """

    competition_dice: float
    per_class: dict[int, float]
    n_images: int
    n_pairs: int
    empty_pair_share: float
    per_pair: pd.DataFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary; class ids become the strings ``"1"``-``"4"``."""
        return {
            "competition_dice": self.competition_dice,
            "per_class": {str(c): v for c, v in self.per_class.items()},
            "n_images": self.n_images,
            "n_pairs": self.n_pairs,
            "empty_pair_share": self.empty_pair_share,
        }


def _mask_lookup(masks: Annotations | pd.DataFrame, name: str) -> tuple[dict[PairKey, str], list]:
    """``{(image, class): rle}`` of the non-empty masks, and the image ids the input lists."""
    if isinstance(masks, Annotations):
        table, listed = masks.table, list(masks.image_ids)
    elif isinstance(masks, pd.DataFrame):
        table, listed = masks, None
    else:
        raise TypeError(f"{name} must be Annotations or a DataFrame, got {type(masks).__name__}")
    missing = {"ImageId", "ClassId", "EncodedPixels"} - set(table.columns)
    if missing:
        raise DataError(
            f"{name} table lacks columns {sorted(missing)}; expected "
            "ImageId, ClassId, EncodedPixels"
        )
    lookup: dict[PairKey, str] = {}
    for image_id, class_id, rle in table[["ImageId", "ClassId", "EncodedPixels"]].itertuples(
        index=False
    ):
        if int(class_id) not in CLASS_IDS:
            raise DataError(f"{name}: image {image_id} has ClassId {class_id}; class ids are 1-4")
        if not is_empty_rle(rle):
            lookup[(image_id, int(class_id))] = rle
    if listed is None:
        listed = sorted({image_id for image_id, _ in lookup})
    return lookup, listed


def _runs(rle: str, shape: tuple[int, int], key: PairKey) -> np.ndarray:
    """Validated ``(n, 2)`` array of 0-indexed ``[start, end)`` runs of one mask."""
    try:
        # int() reads any script's digits ("１", "١"); the competition's RLE has ASCII only.
        if not rle.isascii():
            raise ValueError(rle)
        values = np.array(rle.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        values = np.empty(1, dtype=np.int64)  # odd length: fails the check below
    if values.size % 2 == 0:
        runs = values.reshape(-1, 2)
        runs[:, 0] -= 1
        runs[:, 1] += runs[:, 0]
        if _well_formed(runs, shape[0] * shape[1]):
            return runs
    # Parsing twice is cheap next to writing the rules twice: rle.py words the error.
    validate_rle(rle, shape, image_id=key[0], class_id=key[1])
    raise DataError(f"malformed RLE (image {key[0]}, class {key[1]})")


def _well_formed(runs: np.ndarray, n_pixels: int) -> bool:
    """Runs start at 0 or later, are non-empty, sorted, disjoint and end inside the mask."""
    starts, ends = runs[:, 0], runs[:, 1]
    return bool(
        runs.size
        and starts[0] >= 0
        and (ends > starts).all()
        and ends[-1] <= n_pixels
        and (starts[1:] >= ends[:-1]).all()
    )


def _intersection(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels covered by both run lists (each sorted and non-overlapping)."""
    positions = np.concatenate([a[:, 0], a[:, 1], b[:, 0], b[:, 1]])
    steps = np.repeat(np.array([1, -1, 1, -1], dtype=np.int8), [len(a), len(a), len(b), len(b)])
    order = np.argsort(positions, kind="stable")
    coverage = np.cumsum(steps[order])[:-1]
    # Within one list runs never overlap, so coverage 2 means "inside a run of each list".
    return int(np.diff(positions[order])[coverage == 2].sum())


def _pair_counts(
    pred: dict[PairKey, str], truth: dict[PairKey, str], shape: tuple[int, int]
) -> dict[PairKey, tuple[int, int, int]]:
    """``{pair: (pred_pixels, true_pixels, intersection)}`` for pairs with any mask."""
    counts = {}
    for key in pred.keys() | truth.keys():
        p = _runs(pred[key], shape, key) if key in pred else None
        t = _runs(truth[key], shape, key) if key in truth else None
        p_px = int((p[:, 1] - p[:, 0]).sum()) if p is not None else 0
        t_px = int((t[:, 1] - t[:, 0]).sum()) if t is not None else 0
        inter = _intersection(p, t) if p is not None and t is not None else 0
        counts[key] = (p_px, t_px, inter)
    return counts


def _check_images(
    image_ids: Sequence[str],
    pred: dict,
    truth: dict,
    truth_ids: list,
    truth_lists_every_image: bool,
) -> None:
    scored = set(image_ids)
    if not scored:
        raise DataError("no images to score: the submission lists no image")
    extra_pred = sorted({i for i, _ in pred} - scored)
    if extra_pred:
        raise DataError(
            f"the submission has masks for {len(extra_pred)} images outside "
            f"image_ids, e.g. {extra_pred[:3]}; list every image in image_ids"
        )
    missing = sorted((set(truth_ids) | {i for i, _ in truth}) - scored)
    if missing:
        raise DataError(
            f"{len(missing)} of {len(set(truth_ids))} truth images are missing from "
            f"the submission, e.g. {missing[:3]}; a submission lists every test image"
        )
    # Each image scored adds four pairs: one the truth does not list would pad the score.
    extra = sorted(scored - set(truth_ids)) if truth_lists_every_image else []
    if extra:
        raise DataError(
            f"{len(extra)} scored images are not in the truth, e.g. {extra[:3]}; "
            "score exactly the truth's images"
        )


def _lists_every_image(masks: Annotations | pd.DataFrame) -> bool:
    """Whether ``masks`` names its defect-free images too: Kaggle's original and submission
    formats have a row for every (image, class); the later train format only non-empty masks."""
    return isinstance(masks, Annotations) and masks.format != "train"


def _per_pair_frame(image_ids: Sequence[str], counts: dict) -> pd.DataFrame:
    ids = np.repeat(np.asarray(image_ids, dtype=object), len(CLASS_IDS))
    classes = np.tile(np.asarray(CLASS_IDS), len(image_ids))
    rows = [counts.get((i, int(c)), (0, 0, 0)) for i, c in zip(ids, classes, strict=True)]
    frame = pd.DataFrame(rows, columns=["pred_pixels", "true_pixels", "intersection"])
    frame.insert(0, "ClassId", classes)
    frame.insert(0, "ImageId", ids)
    frame["dice"] = dice_from_counts(
        frame["pred_pixels"].to_numpy(),
        frame["true_pixels"].to_numpy(),
        frame["intersection"].to_numpy(),
    )
    return frame


def competition_dice(
    submission: Annotations | pd.DataFrame,
    truth: Annotations | pd.DataFrame,
    *,
    image_ids: Iterable[str] | None = None,
    shape: tuple[int, int] = IMAGE_SHAPE,
    per_pair: bool = False,
) -> ScoreResult:
    """Score a submission with the competition's mean Dice over all (image, class) pairs.

    Args:
        submission: the predicted masks: :class:`Annotations` (from ``read_submission``) or a
            long DataFrame ``ImageId, ClassId, EncodedPixels`` (empty RLEs are ignored).
        truth: the true masks, in the same forms. Images it lists without masks are fine.
        image_ids: the images to score. Defaults to ``submission.image_ids``; required when
            ``submission`` is a DataFrame, which cannot list its defect-free images.
        shape: (height, width) of the masks. Defaults to (256, 1600).
        per_pair: also return the per-pair table in ``ScoreResult.per_pair``.

    Raises:
        DataError: a truth image is not scored, an image is scored that a truth listing every
            image (an :class:`Annotations` in the original or submission format) lacks, a mask
            lies outside ``image_ids``, a ClassId is not 1-4, or an RLE is malformed (then an
            :class:`RLEError` naming image and class).
    """
    pred, listed = _mask_lookup(submission, "submission")
    true, truth_ids = _mask_lookup(truth, "truth")
    if image_ids is None:
        if not isinstance(submission, Annotations):
            raise ValueError(
                "pass image_ids= when the submission is a DataFrame: its table "
                "holds masks only, so its defect-free images would not be scored"
            )
        image_ids = listed
    image_ids = sorted(set(image_ids))
    _check_images(image_ids, pred, true, truth_ids, _lists_every_image(truth))
    counts = _pair_counts(pred, true, shape)
    per_class = {}
    for class_id in CLASS_IDS:
        pairs = np.array([c for key, c in counts.items() if key[1] == class_id], np.int64)
        scores = dice_from_counts(*pairs.reshape(-1, 3).T)
        n_trivial = len(image_ids) - len(scores)  # empty/empty pairs, Dice 1 each
        per_class[class_id] = (n_trivial + float(scores.sum())) / len(image_ids)
    n_pairs = len(image_ids) * len(CLASS_IDS)
    return ScoreResult(
        competition_dice=float(np.mean(list(per_class.values()))),
        per_class=per_class,
        n_images=len(image_ids),
        n_pairs=n_pairs,
        empty_pair_share=(n_pairs - len(true)) / n_pairs,
        per_pair=_per_pair_frame(image_ids, counts) if per_pair else None,
    )


def _listed_pairs(annotations: Annotations) -> pd.DataFrame:
    """Every (ImageId, ClassId) row the file lists, empty masks included (placeholders dropped)."""
    raw = pd.read_csv(annotations.path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    if annotations.format == "original":
        parts = raw["ImageId_ClassId"].str.strip().str.rsplit("_", n=1, expand=True)
        image_ids, class_ids = parts[0], parts[1]
    else:
        image_ids, class_ids = raw["ImageId"].str.strip(), raw["ClassId"].str.strip()
    pairs = pd.DataFrame({"ImageId": image_ids, "ClassId": pd.to_numeric(class_ids)})
    return pairs[pairs["ClassId"].isin(CLASS_IDS)].drop_duplicates()


def _check_complete(submission: Annotations) -> None:
    """Every image of the submission must have a row for each class 1-4."""
    pairs = _listed_pairs(submission)
    n_listed = pairs.groupby("ImageId")["ClassId"].nunique()
    n_listed = n_listed.reindex(submission.image_ids, fill_value=0)
    short = n_listed[n_listed < len(CLASS_IDS)]
    if short.empty:
        return
    example = short.index[0]
    have = set(pairs.loc[pairs["ImageId"] == example, "ClassId"])
    lacking = [c for c in CLASS_IDS if c not in have]
    raise DataError(
        f"{submission.path}: {len(short)} of {len(n_listed)} images lack rows for some classes, "
        f"e.g. {example} has no row for class {', '.join(map(str, lacking))}; list every image "
        "with one row per class 1-4 (EncodedPixels empty where there is no defect)"
    )


def score_files(
    submission_path: str | Path,
    truth_path: str | Path,
    *,
    images: str | Path | None = None,
    per_pair: bool = False,
) -> ScoreResult:
    """Score a submission CSV against a ground-truth CSV, each in any of Kaggle's formats.

    The submission must list exactly the test images, no more and no fewer, with one row per
    class 1-4 for each. The test images are those of ``images`` (any CSV with image ids, e.g.
    a ``sample_submission.csv``); else, for a truth in the later train format (which lists only
    images with defects), those of the ``sample_submission.csv`` beside the truth where there is
    one; else the truth's own images.

    Raises:
        DataError: a file is missing, has the wrong columns, a duplicated (image, class) row or
            a malformed RLE (the reader's error, naming file and line); the submission lacks
            test images or class rows, or lists images that are not test images.
    """
    submission = read_submission(submission_path)
    truth = read_submission(truth_path)
    _check_complete(submission)
    test_ids, source = _test_images(truth, images)
    _check_same_images(submission, set(test_ids), source)
    return competition_dice(submission, truth, image_ids=test_ids, per_pair=per_pair)


def _test_images(truth: Annotations, images: str | Path | None) -> tuple[list[str], Path]:
    """The images a submission must list, and the file that lists them."""
    beside = truth.path.parent / "sample_submission.csv"
    if images is None and truth.format == "train" and beside.is_file():
        images = beside
    if images is None:
        return list(truth.image_ids), truth.path
    listing = read_submission(images, validate=False)
    unlisted = sorted(set(truth.image_ids) - set(listing.image_ids))
    if unlisted:
        raise DataError(
            f"{truth.path}: {len(unlisted)} images with masks are not test images of "
            f"{listing.path}, e.g. {', '.join(unlisted[:3])}; give the list of every test image"
        )
    return list(listing.image_ids), listing.path


def _check_same_images(submission: Annotations, test_ids: set[str], source: Path) -> None:
    """The submission lists every test image of ``source`` and nothing else."""
    listed = set(submission.image_ids)
    missing = sorted(test_ids - listed)
    if missing:
        raise DataError(
            f"{submission.path}: {len(missing)} of {len(test_ids)} images listed in {source} "
            f"are missing, e.g. {', '.join(missing[:3])}; a submission needs rows for every "
            "test image"
        )
    extra = sorted(listed - test_ids)
    if extra:
        raise DataError(
            f"{submission.path}: {len(extra)} images are not among the {len(test_ids)} test "
            f"images of {source}, e.g. {', '.join(extra[:3])}; a submission lists the test "
            "images and no others"
        )
