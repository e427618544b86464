"""A trained run directory, loaded back as a :class:`~steel_keras.pipeline.TwoStagePredictor`.

The layout is the one :mod:`steel_keras.train` writes; ``pipeline.json`` (written by the
threshold search) adds the tuned thresholds and the test-time augmentation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from steel_keras.errors import DataError
from steel_keras.pipeline import Thresholds, TwoStagePredictor

PIPELINE_FILE = "pipeline.json"
_SEGMENTER_FILE = re.compile(r"^(?:(?P<arch>[a-z0-9_]+?)_)?(?P<what>model|class_[1-4])\.keras$")


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a run; a clear error where there is none."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; train one with "
                        "`steel-keras baseline --out DIR` or `steel-keras train-segmenter`")
    if not path.is_file():
        raise DataError(f"{run_dir} holds no trained run (no config.json); train one with "
                        "`steel-keras baseline --out DIR`")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is damaged ({exc}); restore it or train the run again") from None


def segmenter_files(run_dir: str | Path) -> list[dict[Any, Path]]:
    """The segmenter model files, grouped per architecture: ``[{"all": p}]`` or ``[{1: p, ..}]``."""
    seg_dir = Path(run_dir) / "segmenter"
    groups: dict[str, dict[Any, Path]] = {}
    for path in sorted(seg_dir.glob("*.keras")):
        match = _SEGMENTER_FILE.match(path.name)
        if not match:
            continue
        key = "all" if match["what"] == "model" else int(match["what"][-1])
        groups.setdefault(match["arch"] or "", {})[key] = path
    complete = [g for g in groups.values() if "all" in g or set(g) == {1, 2, 3, 4}]
    if not complete:
        raise DataError(f"{run_dir} has no trained segmenter in {seg_dir} (expected model.keras "
                        "or class_1..class_4.keras); run `steel-keras train-segmenter --out "
                        f"{run_dir}`")
    return complete


def load_model_for_runtime(path: Path, runtime: str) -> Any:
    """A model ready to predict: the Keras model, or a runner of another runtime."""
    if runtime == "keras":
        from steel_keras.models import load_model

        return load_model(path)
    from steel_keras.deploy import load_runner  # runtimes other than Keras

    return load_runner(path, runtime)


def load_run(run_dir: str | Path, *, tta: str | None = None, runtime: str = "keras",
             batch_size: int = 8, use_thresholds: bool = True) -> TwoStagePredictor:
    """Load the classifier, segmenters, image sizes, thresholds and TTA of a run."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    groups = segmenter_files(run_dir)
    segmenters = [{k: load_model_for_runtime(p, runtime) for k, p in g.items()} for g in groups]
    cls_path = run_dir / "classifier" / "model.keras"
    classifier = load_model_for_runtime(cls_path, runtime) if cls_path.is_file() else None
    pipeline = run_dir / PIPELINE_FILE
    settings = json.loads(pipeline.read_text()) if pipeline.is_file() else {}
    thresholds = (Thresholds(**settings["thresholds"])
                  if use_thresholds and "thresholds" in settings else Thresholds())
    return TwoStagePredictor(
        segmenters, tuple(config["segmenter"]["image_size"]), classifier=classifier,
        cls_size=tuple(config["classifier"]["image_size"]), thresholds=thresholds,
        tta=tta or settings.get("tta", "none"), batch_size=batch_size)
