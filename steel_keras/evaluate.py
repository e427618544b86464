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

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steel_keras.constants import CLASS_IDS
from steel_keras.data.annotations import write_submission
from steel_keras.data.dataset import SteelDataset, open_dataset
from steel_keras.errors import DataError
from steel_keras.pipeline import Probabilities, Thresholds, TwoStagePredictor, search_thresholds
from steel_keras.runs import PIPELINE_FILE, load_run, read_config

STAGES = ("all_empty", "segmenter_only", "classifier_segmenter", "postprocessed", "two_stage")
STAGE_LABELS = {
    "all_empty": "all empty (no masks)",
    "segmenter_only": "segmenter only (pixel 0.5)",
    "classifier_segmenter": "classifier gate 0.5 + segmenter",
    "postprocessed": "+ tuned thresholds, min area",
    "two_stage": "+ TTA: the full two-stage pipeline",
}


def _as_table(rles: dict[str, dict[int, str]]) -> pd.DataFrame:
    rows = [(i, c, r) for i, per in rles.items() for c, r in per.items()]
    return pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])


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
    settings = {"tta": tta, "thresholds": thresholds.__dict__, "search": record,
                "tuned_on": f"validation split ({len(val_ids)} images)"}
    (run_dir / PIPELINE_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return settings


def _held_out(ds: SteelDataset, config: dict[str, Any]) -> tuple[list[str], str, Any, str]:
    """(image ids, split, truth annotations, description) of the images to evaluate on."""
    if ds.test_truth is not None and ds.test_image_ids:
        return ds.test_image_ids, "test", ds.test_truth, "test set (test_truth.csv)"
    _, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    note = ("validation split: this folder has no test labels, and the thresholds were tuned "
            "on these images, so the post-processed figures are optimistic")
    return val_ids, "train", ds.annotations, note


def _score_stages(predictor: TwoStagePredictor, plain: Probabilities, tta: Probabilities,
                  truth: Any, ids: list[str]) -> dict[str, Any]:
    from steel_keras.metrics.competition import competition_dice

    gate_only = Thresholds(label=[0.5] * 4)
    predictions = {
        "all_empty": {},
        "segmenter_only": predictor.rles(plain, Thresholds(), gate=False),
        "classifier_segmenter": predictor.rles(plain, gate_only, gate=True),
        "postprocessed": predictor.rles(plain, predictor.thresholds, gate=True),
        "two_stage": predictor.rles(tta, predictor.thresholds, gate=True),
    }
    scores = {}
    for stage, rles in predictions.items():
        result = competition_dice(_as_table(rles), truth, image_ids=ids)
        scores[stage] = {"competition_dice": result.competition_dice,
                         "per_class": {str(c): v for c, v in result.per_class.items()},
                         "masks_predicted": int(sum(len(v) for v in rles.values()))}
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
    out = Path(out) if out else run_dir
    config = read_config(run_dir)
    ds = open_dataset(data if data is not None else config.get("data"))
    ids, split, truth, where = _held_out(ds, config)
    predictor = load_run(run_dir)
    plain = predictor.probabilities(ds, ids, split=split, tta="none", progress=True)
    tta = (predictor.probabilities(ds, ids, split=split, progress=True)
           if predictor.tta != "none" else plain)
    scores = _score_stages(predictor, plain, tta, truth, ids)
    predictions = scores.pop("_predictions")
    metrics = {"held_out": where, "images": len(ids), "tta": predictor.tta,
               "thresholds": predictor.thresholds.__dict__, **scores,
               "classifier": _classifier_metrics(plain, ds, ids, split)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    figures = _plots(out, run_dir, ds, ids, split, predictions["two_stage"]) if plots else []
    (out / "report.md").write_text(report_markdown(metrics, figures))
    return metrics


def stage_table(metrics: dict[str, Any]) -> str:
    """The stage-by-stage Markdown table of a metrics dict."""
    lines = ["| stage | mean Dice | class 1 | class 2 | class 3 | class 4 |",
             "|---|---|---|---|---|---|"]
    for stage in STAGES:
        s = metrics[stage]
        per = " | ".join(f"{s['per_class'][str(c)]:.4f}" for c in CLASS_IDS)
        lines.append(f"| {STAGE_LABELS[stage]} (`{stage}`) | {s['competition_dice']:.4f} | "
                     f"{per} |")
    return "\n".join(lines) + "\n"


def report_markdown(metrics: dict[str, Any], figures: list[str]) -> str:
    """A short human-readable report of an evaluation."""
    parts = [f"# Evaluation\n\nHeld-out images: {metrics['images']}, {metrics['held_out']}. "
             f"TTA: {metrics['tta']}.\n\nThe competition metric (mean Dice over every "
             "(image, class) pair, 1 where both masks are empty), stage by stage:\n",
             stage_table(metrics)]
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


def _plots(out: Path, run_dir: Path, ds: SteelDataset, ids: list[str], split: str,
           predictions: dict[str, dict[int, str]]) -> list[str]:
    from steel_keras import viz

    metrics = json.loads((out / "metrics.json").read_text())
    figures = [viz.plot_stage_scores(metrics, STAGES, out=out / "stages.png")]
    pipeline = run_dir / PIPELINE_FILE
    if pipeline.is_file():
        search = json.loads(pipeline.read_text())["search"]
        figures.append(viz.plot_threshold_curves(search, out=out / "threshold_curves.png"))
    examples = [i for i in ids if i in predictions][:3] + [i for i in ids
                                                           if i not in predictions][:1]
    figures.append(viz.plot_prediction_overlays(ds, examples, predictions, split=split,
                                                out=out / "overlays.png"))
    return [str(out / n) for n in ("stages.png", "threshold_curves.png", "overlays.png")
            if (out / n).is_file()]


def predict_run(run_dir: str | Path, data: str | Path | SteelDataset | None,
                out: str | Path, *, runtime: str = "keras") -> Path:
    """Predict every image of ``test_images/`` and write a submission in the sample's format."""
    config = read_config(run_dir)
    ds = open_dataset(data if data is not None else config.get("data"))
    if not ds.test_image_ids:
        raise DataError(f"{ds.root} has no images in test_images/; nothing to predict")
    predictor = load_run(run_dir, runtime=runtime)
    rles = predictor.predict_rles(ds, ds.test_image_ids, split="test", progress=True)
    return write_submission(out, rles, ds.test_image_ids, format=ds.submission_format)


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
        step()
        timings[name] = round(time.perf_counter() - t0, 1)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["timings_s"] = timings | {"total": round(time.perf_counter() - started, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
