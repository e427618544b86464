"""tune, evaluate and predict on a run directory, without training (a batch-norm calibrated
demo run), on folders with and without test labels."""

from __future__ import annotations

import shutil

import pytest

from steel_keras.data import read_submission
from steel_keras.evaluate import ABLATIONS, evaluate_run, predict_run, tune_run


@pytest.fixture(scope="module")
def kaggle_like(tiny_dataset, tmp_path_factory):
    """The tiny dataset without test_truth.csv: the real download's layout."""
    folder = tmp_path_factory.mktemp("kaggle") / "data"
    shutil.copytree(tiny_dataset, folder)
    (folder / "test_truth.csv").unlink()
    return folder


def test_evaluate_without_test_labels_scores_the_validation_split(kaggle_like, tmp_path):
    from steel_keras.deploy.demo import make_demo_run

    run = make_demo_run(tmp_path / "run", kaggle_like, seg_size=(32, 192), cls_size=(32, 192))
    tune_run(run, kaggle_like, tta="none")
    metrics = evaluate_run(run, kaggle_like, plots=False)
    assert metrics["held_out"].startswith("validation split")
    for row in ABLATIONS:
        assert 0.0 <= metrics[row]["competition_dice"] <= 1.0
    all_empty = metrics["all_empty"]["competition_dice"]
    assert all_empty < 1.0  # the validation split has defects, and they count
    submission = predict_run(run, kaggle_like, tmp_path / "submission.csv")
    listed = read_submission(submission)
    assert listed.image_ids == sorted(p.name for p in (kaggle_like / "test_images").iterdir())
