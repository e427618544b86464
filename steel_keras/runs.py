"""A trained run directory, loaded back as a :class:`~steel_keras.pipeline.TwoStagePredictor`.

Where the files are is :mod:`steel_keras.rundir`'s; which runtime runs a model is the registry's
(:mod:`steel_keras.deploy.registry`). This module puts the two together: the classifier, the
segmenters, the image sizes of ``config.json`` and the thresholds and TTA of ``pipeline.json``,
each model loaded for the runtime asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steel_keras.deploy.runners import load_runner
from steel_keras.errors import DataError
from steel_keras.pipeline import Thresholds, TwoStagePredictor
from steel_keras.rundir import (
    PIPELINE_FILE,
    classifier_file,
    read_config,
    read_pipeline,
    segmenter_files,
    stage_image_size,
)


def load_model_for_runtime(path: Path, runtime: str) -> Any:
    """A model ready to predict: the Keras model itself, or a runner of another runtime."""
    if runtime == "keras":
        from steel_keras.models import load_model

        return load_model(path)
    return load_runner(path, runtime)


def _thresholds(run_dir: Path, settings: dict[str, Any]) -> Thresholds:
    try:
        return Thresholds(**settings["thresholds"])
    except TypeError as exc:
        raise DataError(f"{run_dir / PIPELINE_FILE}: unexpected thresholds ({exc}); run "
                        f"`steel-keras tune --run {run_dir}` again") from None


def load_run(run_dir: str | Path, *, tta: str | None = None, runtime: str = "keras",
             batch_size: int = 8, use_thresholds: bool = True) -> TwoStagePredictor:
    """Load the classifier, segmenters, image sizes, thresholds and TTA of a run.

    Args:
        run_dir: a trained run directory.
        tta: the test-time augmentation; defaults to the tuned one (``pipeline.json``).
        runtime: a runtime of the registry (``keras``, ``onnx``, ...).
        batch_size: images per forward pass.
        use_thresholds: apply the tuned thresholds (else pixel 0.5 and no other filtering).
    """
    run_dir = Path(run_dir)
    # Every file that is cheap to read is checked before any model loads.
    config = read_config(run_dir)
    groups = segmenter_files(run_dir)
    cls_path = classifier_file(run_dir)
    seg_size = stage_image_size(config, "segmenter", run_dir)
    cls_size = stage_image_size(config, "classifier", run_dir) if cls_path else None
    settings = read_pipeline(run_dir)
    thresholds = (_thresholds(run_dir, settings)
                  if use_thresholds and "thresholds" in settings else Thresholds())
    segmenters = [{k: load_model_for_runtime(p, runtime) for k, p in g.items()} for g in groups]
    classifier = load_model_for_runtime(cls_path, runtime) if cls_path else None
    return TwoStagePredictor(
        segmenters, seg_size, classifier=classifier, cls_size=cls_size, thresholds=thresholds,
        tta=tta or settings.get("tta", "none"), batch_size=batch_size)
