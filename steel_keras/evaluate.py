"""Tune, evaluate, predict, and the end-to-end baseline.

- :func:`tune_run` searches the post-processing thresholds on the validation split and saves
  them (with the TTA setting) in ``RUN_DIR/pipeline.json``.
- :func:`evaluate_run` scores each stage of the pipeline on held-out images with the
  competition metric: ``all_empty``, ``segmenter_only``, ``classifier_segmenter`` (the gate at
  0.5), ``postprocessed`` (tuned thresholds) and ``two_stage`` (tuned thresholds + TTA, the full
  pipeline); plus the classifier's ROC AUC and confusion matrix. It writes ``metrics.json``,
  ``report.md`` and PNGs.
- :func:`predict_run` writes a submission for every image of ``test_images/``.
- :func:`run_baseline` does all of it, training first.

Held-out images are the test images where the folder has ``test_truth.csv`` (the synthetic data
does); on the real Kaggle download, whose test labels are private, they are the validation split,
which also tuned the thresholds, so those figures are optimistic and the report says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.constants import CLASS_IDS
from steel_keras.data.annotations import Annotations, write_submission
from steel_keras.data.dataset import SteelDataset, open_dataset
from steel_keras.errors import DataError
from steel_keras.paths import atomic_write_text
from steel_keras.pipeline import Probabilities, Thresholds, TwoStagePredictor, search_thresholds
from steel_keras.rundir import (
    PIPELINE_FILE,
    check_run_output,
    read_config,
    read_json,
    read_pipeline,
    write_json,
)
from steel_keras.runs import load_run

#: The rows of the evaluation, each adding one step of the pipeline to the one before.
ABLATIONS = ("all_empty", "segmenter_only", "classifier_segmenter", "postprocessed", "two_stage")
ABLATION_LABELS = {
    "all_empty": "all empty (no masks)",
    "segmenter_only": "segmenter only (pixel 0.5)",
    "classifier_segmenter": "classifier gate 0.5 + segmenter",
    "postprocessed": "+ tuned thresholds, min area",
    "two_stage": "+ TTA: the full two-stage pipeline",
}


def _truth_masks(ds: SteelDataset, image_ids: list[str], size: tuple[int, int],
                 split: str) -> np.ndarray:
    return np.stack([ds.load_masks(i, size=size, split=split) for i in image_ids])


def tune_run(run_dir: str | Path, data: str | Path | SteelDataset | None = None, *,
             tta: str = "flips", min_component: int = 0) -> dict[str, Any]:
    """Search thresholds on the validation split; save them to ``RUN_DIR/pipeline.json``."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    ds = open_dataset(data if data is not None else config.get("data"))
    _, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    predictor = load_run(run_dir, tta=tta, use_thresholds=False)
    probs = predictor.probabilities(ds, val_ids, split="train", progress=True)
    truth = _truth_masks(ds, val_ids, predictor.seg_size, "train")
    thresholds, record = search_thresholds(probs, truth, min_component=min_component)
    settings = {"tta": tta, "thresholds": thresholds.to_dict(), "search": record,
                "tuned_on": f"validation split ({len(val_ids)} images)"}
    write_json(run_dir / PIPELINE_FILE, settings)
    return settings


def _held_out(ds: SteelDataset,
              config: dict[str, Any]) -> tuple[list[str], str, Annotations, str]:
    """(image ids, split, truth annotations, description) of the images to evaluate on."""
    if ds.test_truth is not None and ds.test_image_ids:
        return ds.test_image_ids, "test", ds.test_truth, "test set (test_truth.csv)"
    _, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    note = ("validation split: this folder has no test labels, and the thresholds were tuned "
            "on these images, so the post-processed figures are optimistic")
    table = ds.annotations.table
    truth = Annotations(table[table["ImageId"].isin(set(val_ids))], sorted(val_ids))
    return val_ids, "train", truth, note


def _score_stages(predictor: TwoStagePredictor, plain: Probabilities, tta: Probabilities,
                  truth: Any, ids: list[str]) -> dict[str, Any]:
    from steel_keras.metrics.competition import competition_dice

    gate_only = Thresholds(label=[0.5] * 4)
    predictions = {
        "all_empty": Annotations.empty(ids),
        "segmenter_only": predictor.annotations(plain, Thresholds(), gate=False),
        "classifier_segmenter": predictor.annotations(plain, gate_only, gate=True),
        "postprocessed": predictor.annotations(plain, predictor.thresholds, gate=True),
        "two_stage": predictor.annotations(tta, predictor.thresholds, gate=True),
    }
    scores = {}
    for row, masks in predictions.items():
        result = competition_dice(masks, truth, image_ids=ids)
        scores[row] = {"competition_dice": result.competition_dice,
                       "per_class": {str(c): v for c, v in result.per_class.items()},
                       "masks_predicted": len(masks.table)}
    return scores | {"_predictions": predictions}


def _classifier_metrics(probs: Probabilities, ds: SteelDataset, ids: list[str],
                        split: str) -> dict[str, Any] | None:
    from steel_keras.metrics.classification import confusion_matrix, roc_auc

    if probs.gate is None:
        return None
    truth = ds.class_labels(ids, split=split).any(axis=1)
    score = probs.gate.max(axis=1)
    return {"roc_auc": roc_auc(truth, score), "threshold": 0.5,
            "confusion_matrix": confusion_matrix(truth, score >= 0.5),
            "accuracy": float(((score >= 0.5) == truth).mean())}


def evaluate_run(run_dir: str | Path, data: str | Path | SteelDataset | None = None,
                 out: str | Path | None = None, *, plots: bool = True) -> dict[str, Any]:
    """Score every stage of the pipeline on held-out images; write metrics, report and plots."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    ds = open_dataset(data if data is not None else config.get("data"))
    out = check_run_output(out or run_dir, run_dir, ds.root, kind="dir")
    ids, split, truth, where = _held_out(ds, config)
    predictor = load_run(run_dir)
    plain = predictor.probabilities(ds, ids, split=split, tta="none", progress=True)
    tta = (predictor.probabilities(ds, ids, split=split, progress=True)
           if predictor.tta != "none" else plain)
    scores = _score_stages(predictor, plain, tta, truth, ids)
    predictions = scores.pop("_predictions")
    metrics = {"held_out": where, "images": len(ids), "tta": predictor.tta,
               "thresholds": predictor.thresholds.to_dict(), **scores,
               "classifier": _classifier_metrics(plain, ds, ids, split)}
    write_json(out / "metrics.json", metrics)
    figures = (_plots(out, metrics, run_dir, ds, ids, split, predictions["two_stage"])
               if plots else [])
    atomic_write_text(out / "report.md", report_markdown(metrics, figures))
    return metrics


def ablation_table(metrics: dict[str, Any]) -> str:
    """The step-by-step Markdown table of a metrics dict."""
    lines = ["| stage | mean Dice | class 1 | class 2 | class 3 | class 4 |",
             "|---|---|---|---|---|---|"]
    for row in ABLATIONS:
        s = metrics[row]
        per = " | ".join(f"{s['per_class'][str(c)]:.4f}" for c in CLASS_IDS)
        lines.append(f"| {ABLATION_LABELS[row]} (`{row}`) | {s['competition_dice']:.4f} | "
                     f"{per} |")
    return "\n".join(lines) + "\n"


def report_markdown(metrics: dict[str, Any], figures: list[str]) -> str:
    """A short human-readable report of an evaluation."""
    parts = [f"# Evaluation\n\nHeld-out images: {metrics['images']}, {metrics['held_out']}. "
             f"TTA: {metrics['tta']}.\n\nThe competition metric (mean Dice over every "
             "(image, class) pair, 1 where both masks are empty), stage by stage:\n",
             ablation_table(metrics)]
    cls = metrics.get("classifier")
    if cls:
        cm = cls["confusion_matrix"]
        auc = "n/a" if cls["roc_auc"] is None else f"{cls['roc_auc']:.4f}"
        parts.append(f"\nClassifier (any defect, threshold 0.5): ROC AUC {auc}, accuracy "
                     f"{cls['accuracy']:.4f}; TP {cm['tp']}, FP {cm['fp']}, TN {cm['tn']}, "
                     f"FN {cm['fn']}.\n")
    th = metrics["thresholds"]
    parts.append(f"\nThresholds per class 1-4: pixel {th['pixel']}, minimum area "
                 f"{th['min_area']} px, classifier label {th['label']}.\n")
    parts += [f"\n![{Path(f).stem}]({Path(f).name})\n" for f in figures]
    return "".join(parts)


def _plots(out: Path, metrics: dict[str, Any], run_dir: Path, ds: SteelDataset, ids: list[str],
           split: str, predictions: Annotations) -> list[str]:
    from steel_keras import viz

    viz.plot_stage_scores(metrics, ABLATIONS, out=out / "stages.png")
    figures = [out / "stages.png"]
    search = read_pipeline(run_dir).get("search")
    if search:
        viz.plot_threshold_curves(search, out=out / "threshold_curves.png")
        figures.append(out / "threshold_curves.png")
    with_masks = set(predictions.table["ImageId"])
    examples = ([i for i in ids if i in with_masks][:3]
                + [i for i in ids if i not in with_masks][:1])
    viz.plot_prediction_overlays(ds, examples, predictions, split=split,
                                 out=out / "overlays.png")
    return [str(f) for f in [*figures, out / "overlays.png"]]


def predict_run(run_dir: str | Path, data: str | Path | SteelDataset | None,
                out: str | Path, *, runtime: str = "keras") -> Path:
    """Predict every image of ``test_images/`` and write a submission in the sample's format.

    ``out`` may replace an earlier submission, never a file the prediction reads (the run's, or
    anything in the data folder): that is an OutputError before any model is loaded.
    """
    config = read_config(run_dir)
    ds = open_dataset(data if data is not None else config.get("data"))
    check_run_output(out, run_dir, ds.root)
    if not ds.test_image_ids:
        raise DataError(f"{ds.root} has no images in test_images/; nothing to predict")
    predictor = load_run(run_dir, runtime=runtime)
    masks = predictor.predict(ds, ds.test_image_ids, split="test", progress=True)
    return write_submission(out, masks, format=ds.submission_format)


def run_baseline(data: str | Path | None = None, out: str | Path = "runs/baseline",
                 recipe: str = "quick-cpu", tta: str = "flips",
                 restart: bool = False) -> dict[str, Any]:
    """Train, tune, evaluate and predict: the whole baseline in ``out``.

    A stage trained before is kept (``restart``: both are trained again)."""
    from steel_keras.train import train_classifier, train_segmenter

    started = time.perf_counter()
    ds = open_dataset(data)
    out = Path(out)
    timings = {}
    for name, step in (("train_classifier",
                        lambda: train_classifier(ds, out, recipe, restart=restart)),
                       ("train_segmenter",
                        lambda: train_segmenter(ds, out, recipe, restart=restart)),
                       ("tune", lambda: tune_run(out, ds, tta=tta)),
                       ("evaluate", lambda: evaluate_run(out, ds)),
                       ("predict", lambda: predict_run(out, ds, out / "submission.csv"))):
        print(f"== {name.replace('_', ' ')}", flush=True)
        t0 = time.perf_counter()
        if getattr(step(), "already_trained", False):
            print("   already trained, left as it is (--restart trains it again)", flush=True)
        timings[name] = round(time.perf_counter() - t0, 1)
    metrics = read_json(out / "metrics.json", "evaluation's metrics")
    metrics["timings_s"] = timings | {"total": round(time.perf_counter() - started, 1)}
    write_json(out / "metrics.json", metrics)
    return metrics
