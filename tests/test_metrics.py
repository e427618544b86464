"""The competition metric: Dice by hand, competition_dice, score_files and `steel-keras score`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from steel_keras.data import Annotations, load_annotations, write_submission
from steel_keras.errors import DataError, RLEError
from steel_keras.metrics.classification import majority_accuracy, threshold_for_recall
from steel_keras.metrics.competition import ScoreResult, competition_dice, score_files
from steel_keras.metrics.masks import (
    competition_score,
    dice,
    dice_from_counts,
    dice_per_class_on_defects,
)
from steel_keras.rle import encode_rle

COLUMNS = ["ImageId", "ClassId", "EncodedPixels"]


def table(*rows: tuple[str, int, str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def steel_keras(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----- dice --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        ([1, 1, 0, 0], [0, 1, 1, 0], 2 * 1 / 4),
        ([1, 1, 1, 0], [0, 1, 0, 0], 2 * 1 / 4),
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),
        ([1, 0, 0, 0], [0, 0, 0, 1], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),  # both empty: defined as 1
        ([0, 0, 0, 0], [0, 1, 0, 0], 0.0),  # a missed defect
        ([5, 0, 9, 0], [1, 1, 1, 0], 2 * 2 / 5),  # non-zero is foreground
    ],
)
def test_dice_by_hand(pred, truth, expected):
    assert dice(np.array(pred), np.array(truth)) == pytest.approx(expected)


def test_dice_two_dimensional_and_shape_mismatch():
    a = np.zeros((4, 6), np.uint8)
    b = np.zeros((4, 6), np.uint8)
    a[:2, :3] = 1  # 6 pixels
    b[1:3, :3] = 1  # 6 pixels, 3 shared
    assert dice(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one shape"):
        dice(a, b[:, :5])


# ----- competition_dice --------------------------------------------------------------------


def test_competition_dice_two_images_by_hand():
    truth = table(("a.jpg", 1, "1 10"), ("a.jpg", 3, "100 4"), ("b.jpg", 4, "50 5"))
    pred = table(("a.jpg", 1, "6 10"), ("b.jpg", 2, "1 2"), ("b.jpg", 4, "50 5"))
    result = competition_dice(pred, truth, image_ids=["a.jpg", "b.jpg"], per_pair=True)
    # a1: 2*5/(10+10) = 0.5; a2: empty/empty = 1; a3: missed = 0; a4: 1
    # b1: 1; b2: false positive = 0; b3: 1; b4: identical = 1   -> 5.5 / 8
    assert result.competition_dice == pytest.approx(5.5 / 8)
    assert result.per_class == pytest.approx({1: 0.75, 2: 0.5, 3: 0.5, 4: 1.0})
    assert (result.n_images, result.n_pairs) == (2, 8)
    assert result.empty_pair_share == pytest.approx(5 / 8)
    pairs = result.per_pair.set_index(["ImageId", "ClassId"])
    assert pairs.loc[("a.jpg", 1)].tolist() == [10, 10, 5, 0.5]
    assert pairs.loc[("b.jpg", 2), "dice"] == 0.0
    assert len(pairs) == 8


def test_to_dict_is_json_with_string_class_keys():
    truth = table(("a.jpg", 2, "1 4"))
    result = competition_dice(truth, truth, image_ids=["a.jpg"])
    assert isinstance(result, ScoreResult)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["competition_dice"] == 1.0
    assert data["per_class"] == {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.0}
    assert data["n_images"] == 1 and data["n_pairs"] == 4


@st.composite
def mask_pairs(draw):
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    a = draw(arrays(np.uint8, shape, elements=st.integers(0, 1)))
    b = draw(arrays(np.uint8, shape, elements=st.integers(0, 1)))
    return a, b


@settings(max_examples=150, deadline=None)
@given(mask_pairs())
def test_run_intersection_equals_dice_of_decoded_masks(pair):
    a, b = pair
    pred = table(("x.jpg", 1, encode_rle(a)))
    truth = table(("x.jpg", 1, encode_rle(b)))
    result = competition_dice(pred, truth, image_ids=["x.jpg"], shape=a.shape, per_pair=True)
    assert result.per_class[1] == pytest.approx(dice(a, b))
    row = result.per_pair.iloc[0]
    assert row["intersection"] == int(np.count_nonzero(a & b))


def test_all_empty_submission_scores_the_empty_pair_share_exactly():
    truth = table(("a.jpg", 1, "1 10"), ("a.jpg", 3, "100 4"), ("c.jpg", 4, "50 5"))
    ids = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    result = competition_dice(table(), truth, image_ids=ids)
    assert result.competition_dice == result.empty_pair_share == (16 - 3) / 16


def test_dataframe_submission_needs_image_ids():
    with pytest.raises(ValueError, match="image_ids"):
        competition_dice(table(("a.jpg", 1, "1 2")), table())


def test_truth_image_outside_the_submission_is_an_error():
    with pytest.raises(DataError, match=r"1 of 1 truth images are missing.*z\.jpg"):
        competition_dice(table(), table(("z.jpg", 1, "1 2")), image_ids=["a.jpg"])


def test_malformed_rle_names_image_and_class():
    with pytest.raises(RLEError, match=r"image a\.jpg, class 2.*odd number"):
        competition_dice(
            table(("a.jpg", 2, "1 2 3")), table(("a.jpg", 2, "1 2")), image_ids=["a.jpg"]
        )


# ----- files: the real sample and formats ----------------------------------------------------


@pytest.fixture(scope="module")
def real_truth(real_sample) -> Path:
    return real_sample / "derived" / "train_subset1000_orig_format.csv"


@pytest.mark.real_data
def test_perfect_and_empty_submissions_on_real_masks(real_truth, tmp_path):
    truth = load_annotations(real_truth)
    perfect = write_submission(tmp_path / "perfect.csv", truth)
    empty = write_submission(tmp_path / "empty.csv", Annotations.empty(truth.image_ids))
    assert score_files(perfect, real_truth).competition_dice == 1.0
    result = score_files(empty, real_truth)
    # 1,000 defective images hold 1,429 masks: 4,000 - 1,429 empty pairs.
    assert result.competition_dice == result.empty_pair_share == (4000 - 1429) / 4000


@pytest.mark.real_data
def test_every_format_gives_the_same_score(real_sample, tmp_path):
    truth = load_annotations(real_sample / "derived" / "train_subset1000_orig_format.csv")
    # A submission that shifts every mask and drops class 4: a score well away from 0 and 1.
    rows = truth.table[truth.table["ClassId"] != 4].copy()
    rows["EncodedPixels"] = rows["EncodedPixels"].map(_shift)
    scores = set()
    for fmt in ("submission", "original", "train"):
        sub = write_submission(tmp_path / f"{fmt}.csv", Annotations(rows, truth.image_ids),
                               format=fmt)
        for truth_file in ("train_subset1000_orig_format.csv", "train_subset1000_new_format.csv"):
            scores.add(score_files(sub, real_sample / "derived" / truth_file).competition_dice)
    assert len(scores) == 1
    score = scores.pop()
    assert 0.4 < score < 0.95


def _shift(rle: str) -> str:
    """Move a mask 64 pixels down a column (clipped to the image): a partial overlap."""
    values = np.array(rle.split(), dtype=np.int64).reshape(-1, 2)
    values[:, 0] = np.minimum(values[:, 0] + 64, 409_600 - values[:, 1] + 1)
    keep = np.r_[True, values[1:, 0] >= values[:-1, 0] + values[:-1, 1]]
    return " ".join(map(str, values[keep].ravel()))


# ----- the command line --------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def small_files(tmp_path) -> tuple[Path, Path]:
    truth = write_csv(
        tmp_path / "truth.csv",
        COLUMNS,
        [["a.jpg", "1", "1 10"], ["a.jpg", "3", "100 4"], ["b.jpg", "4", "50 5"]],
    )
    pred = table(("a.jpg", 1, "6 10"), ("b.jpg", 2, "1 2"), ("b.jpg", 4, "50 5"))
    submission = write_submission(tmp_path / "sub.csv", Annotations(pred, ["a.jpg", "b.jpg"]))
    return submission, truth


def test_cli_table_and_json(small_files):
    submission, truth = small_files
    text = steel_keras("score", str(submission), "--truth", str(truth))
    assert text.returncode == 0, text.stderr
    assert "0.68750" in text.stdout and "2 images" in text.stdout
    as_json = steel_keras("score", str(submission), "--truth", str(truth), "--json")
    assert as_json.returncode == 0, as_json.stderr
    lines = as_json.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["competition_dice"] == pytest.approx(0.6875)
    assert data["per_class"] == pytest.approx({"1": 0.75, "2": 0.5, "3": 0.5, "4": 1.0})
    assert data["n_images"] == 2


def test_cli_missing_truth_image(small_files, tmp_path):
    _, truth = small_files
    only_a = write_submission(tmp_path / "only_a.csv", Annotations(table(), ["a.jpg"]))
    line = assert_one_line_error(
        steel_keras("score", str(only_a), "--truth", str(truth)),
        "1 of 2 images",
        "b.jpg",
        "missing",
    )
    assert str(only_a) in line


def test_cli_missing_class_rows(small_files, tmp_path):
    _, truth = small_files
    partial = write_csv(
        tmp_path / "partial.csv",
        ["ImageId", "EncodedPixels", "ClassId"],
        [["a.jpg", "", str(c)] for c in (1, 2, 3, 4)] + [["b.jpg", "", "1"], ["b.jpg", "", "3"]],
    )
    assert_one_line_error(
        steel_keras("score", str(partial), "--truth", str(truth)),
        "1 of 2 images",
        "b.jpg has no row for class 2, 4",
    )


def test_cli_malformed_rle(small_files, tmp_path):
    _, truth = small_files
    bad = write_csv(
        tmp_path / "bad.csv",
        ["ImageId_ClassId", "EncodedPixels"],
        [[f"a.jpg_{c}", "5 3 4 2" if c == 2 else ""] for c in (1, 2, 3, 4)],
    )
    assert_one_line_error(
        steel_keras("score", str(bad), "--truth", str(truth)),
        "bad.csv, line 3",
        "image a.jpg, class 2",
        "overlap",
    )


def test_cli_wrong_columns(small_files, tmp_path):
    submission, _ = small_files
    wrong = write_csv(tmp_path / "wrong.csv", ["image", "mask"], [["a.jpg", ""]])
    assert_one_line_error(
        steel_keras("score", str(submission), "--truth", str(wrong)),
        "wrong.csv",
        "unexpected columns",
    )


def test_scoring_does_not_import_tensorflow(small_files):
    submission, truth = small_files
    code = (
        "import sys; from steel_keras.cli import main; "
        f"rc = main(['score', {str(submission)!r}, '--truth', {str(truth)!r}, '--json']); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False 0"


# ----- a submission covers exactly the test images ------------------------------------------


@pytest.fixture
def listed_truth(tmp_path) -> Path:
    """A truth in the original format, which lists every image: c.jpg is defect-free."""
    return write_submission(
        tmp_path / "truth.csv",
        Annotations(table(("a.jpg", 1, "1 10"), ("b.jpg", 3, "5 5")), ["a.jpg", "b.jpg", "c.jpg"]),
        format="original",
    )


def test_cli_padding_with_unlisted_images_is_an_error(listed_truth, tmp_path):
    empty = write_submission(tmp_path / "empty.csv",
                             Annotations(table(), ["a.jpg", "b.jpg", "c.jpg"]))
    honest = steel_keras("score", str(empty), "--truth", str(listed_truth), "--json")
    assert honest.returncode == 0, honest.stderr
    assert json.loads(honest.stdout)["competition_dice"] == pytest.approx(10 / 12)
    padding = [f"pad{i:03d}.jpg" for i in range(100)]
    padded = write_submission(
        tmp_path / "padded.csv", Annotations(table(), ["a.jpg", "b.jpg", "c.jpg", *padding])
    )
    line = assert_one_line_error(
        steel_keras("score", str(padded), "--truth", str(listed_truth)),
        "100 images are not among the 3 test images",
        "pad000.jpg",
        "padded.csv",
    )
    assert "pad099.jpg" not in line


def test_padding_is_an_error_for_competition_dice_too(listed_truth):
    truth = load_annotations(listed_truth, allow_placeholder=True)
    with pytest.raises(DataError, match=r"2 scored images are not in the truth.*x\.jpg"):
        competition_dice(table(), truth, image_ids=["a.jpg", "b.jpg", "c.jpg", "x.jpg", "y.jpg"])


def test_truth_of_defective_images_takes_the_test_images_beside_it(tmp_path):
    """The later train format lists defective images only: the sample submission beside it
    (as in a Kaggle-layout folder) or --images says which images the submission must cover."""
    folder = tmp_path / "data"
    folder.mkdir()
    truth = write_csv(
        folder / "test_truth.csv", COLUMNS, [["a.jpg", "1", "1 10"], ["b.jpg", "3", "5 5"]]
    )
    ids = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    write_submission(folder / "sample_submission.csv", Annotations(table(), ids))
    empty = write_submission(tmp_path / "empty.csv", Annotations(table(), ids))
    assert score_files(empty, truth).competition_dice == pytest.approx(14 / 16)
    short = write_submission(tmp_path / "short.csv", Annotations(table(), ids[:3]))
    assert_one_line_error(
        steel_keras("score", str(short), "--truth", str(truth)),
        "1 of 4 images listed in",
        "sample_submission.csv",
        "d.jpg",
    )
    padded = write_submission(tmp_path / "padded.csv", Annotations(table(), [*ids, "e.jpg"]))
    assert_one_line_error(
        steel_keras("score", str(padded), "--truth", str(truth)),
        "1 images are not among the 4 test images",
        "e.jpg",
    )
    # --images names another list; a truth mask outside it is an error too.
    listing = write_submission(tmp_path / "images.csv", Annotations(table(), ["a.jpg", "b.jpg"]))
    a_and_b = write_submission(tmp_path / "ab.csv", Annotations(table(), ["a.jpg", "b.jpg"]))
    assert score_files(a_and_b, truth, images=listing).competition_dice == pytest.approx(6 / 8)
    only_a = write_submission(tmp_path / "only_a.csv", Annotations(table(), ["a.jpg"]))
    assert_one_line_error(
        steel_keras("score", str(only_a), "--truth", str(truth), "--images", str(only_a)),
        "test_truth.csv: 1 images with masks are not test images",
        "b.jpg",
    )


def test_cli_duplicated_pair_in_submission(listed_truth, tmp_path):
    rows = [[f"{i}_{c}", ""] for i in ("a.jpg", "b.jpg", "c.jpg") for c in (1, 2, 3, 4)]
    rows.append(["b.jpg_3", "1 4"])
    twice = write_csv(tmp_path / "twice.csv", ["ImageId_ClassId", "EncodedPixels"], rows)
    assert_one_line_error(
        steel_keras("score", str(twice), "--truth", str(listed_truth)),
        "twice.csv",
        "image b.jpg class 3 appears again",
    )


@pytest.mark.parametrize("rle", ["\uff11 \uff13", "\u0661 \u0663"])  # "1 3", full-width/Arabic
def test_cli_non_ascii_digits_are_an_rle_error(listed_truth, tmp_path, rle):
    rows = [
        [f"{i}_{c}", rle if (i, c) == ("a.jpg", 1) else ""]
        for i in ("a.jpg", "b.jpg", "c.jpg")
        for c in (1, 2, 3, 4)
    ]
    sub = write_csv(tmp_path / "digits.csv", ["ImageId_ClassId", "EncodedPixels"], rows)
    assert_one_line_error(
        steel_keras("score", str(sub), "--truth", str(listed_truth)),
        "digits.csv, line 2",
        "image a.jpg, class 1",
        "ASCII digits",
    )


def test_non_ascii_digits_in_a_table_name_image_and_class():
    with pytest.raises(RLEError, match=r"image a\.jpg, class 2.*ASCII digits"):
        competition_dice(
            table(("a.jpg", 2, "\uff11 \uff13")), table(("a.jpg", 2, "1 2")), image_ids=["a.jpg"]
        )


# ----- Dice on mask arrays and the classifier's figures ----------------------------------------


def test_competition_score_on_masks_equals_competition_dice_on_their_rles():
    rng = np.random.default_rng(7)
    true = (rng.random((3, 8, 12, 4)) > 0.85).astype(np.uint8)
    pred = (rng.random((3, 8, 12, 4)) > 0.8).astype(np.uint8)
    true[1] = 0
    pred[2, ..., 1] = true[2, ..., 1] = 0
    ids = ["a.jpg", "b.jpg", "c.jpg"]

    def rles(masks):
        return table(
            *[
                (i, c + 1, encode_rle(m[..., c]))
                for i, m in zip(ids, masks, strict=True)
                for c in range(4)
                if m[..., c].any()
            ]
        )

    scored = competition_dice(rles(pred), rles(true), image_ids=ids, shape=(8, 12))
    assert competition_score(pred, true) == pytest.approx(scored.competition_dice)
    with pytest.raises(ValueError, match="different shapes"):
        competition_score(pred, true[:2])


def test_dice_per_class_on_defects_counts_only_defective_pairs():
    truth = np.zeros((3, 2, 4, 2))
    truth[0, 0, :2, 0] = truth[1, :, :, 0] = 1  # class 1 on images 0 and 1; class 2 nowhere
    prob = np.zeros_like(truth)
    prob[0, 0, :2, 0] = 0.9  # perfect on image 0
    prob[2, :, :, :] = 0.9  # false masks on the empty image 2 do not count here
    result = dice_per_class_on_defects(prob, truth)
    assert result[0] == pytest.approx((1.0 + 0.0) / 2) and np.isnan(result[1])
    assert dice_from_counts(np.array([0, 2]), np.array([0, 2]), np.array([0, 1])).tolist() == [
        1.0,
        0.5,
    ]


def test_majority_accuracy_and_threshold_for_recall():
    assert majority_accuracy(np.array([[1], [0], [0], [0]])) == 0.75
    truth = np.array([1, 1, 0, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.1])
    assert threshold_for_recall(truth, score, 0.75) == 0.6
    assert threshold_for_recall(np.ones(10), np.arange(10) / 10, 0.7) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="positive"):
        threshold_for_recall(np.zeros(3), score[:3], 0.5)
    with pytest.raises(ValueError, match="at least one label"):
        majority_accuracy(np.array([]))
