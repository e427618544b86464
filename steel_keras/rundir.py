"""The layout of a run directory: the one place that knows where a run keeps each file.

Training writes a run, ``tune`` and ``evaluate`` add to it, ``export`` puts its conversions in
it, and ``predict`` and ``benchmark`` read it back. Every one of them asks this module for the
paths::

    RUN_DIR/config.json                      the recipe as run, the data folder, the seed
    RUN_DIR/pipeline.json                    thresholds and TTA found by ``tune``
    RUN_DIR/classifier/model.keras           the classifier (best checkpoint)
    RUN_DIR/segmenter/model.keras            a four-channel segmenter, or
    RUN_DIR/segmenter/class_1.keras ...      one single-channel segmenter per class, and
    RUN_DIR/segmenter/fpn_model.keras        a prefix per architecture where a recipe trains
                                             several (``"arch": ["unet", "fpn"]``)
    RUN_DIR/{stage}/history[_STEM].csv       one row per epoch; curves[_STEM].png; logs/STEM/
    RUN_DIR/{stage}/summary.json             the stage's validation summary
    RUN_DIR/{stage}/backup/STEM.keras/       Keras's BackupAndRestore state (resuming)
    RUN_DIR/export/FORMAT/{stage}/STEM.EXT   an export (EXT from the runtime registry)
    RUN_DIR/export/FORMAT/{stage}/parity.json  its agreement with Keras, per model

It imports nothing from the rest of the library but the errors and paths, so every layer may use
it.

Example:
    >>> model_file(None, None), model_file("fpn", None), model_file(None, 3)
    ('model.keras', 'fpn_model.keras', 'class_3.keras')
    >>> parse_model_file("fpn_class_2.keras")
    ('fpn', 2)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steel_keras.errors import DataError
from steel_keras.paths import atomic_write_text, check_output, default_data_dir

__all__ = [
    "CONFIG_FILE",
    "EXPORT_DIR",
    "PARITY_FILE",
    "PIPELINE_FILE",
    "STAGES",
    "SUMMARY_FILE",
    "RunModel",
    "backup_path",
    "check_run_output",
    "classifier_file",
    "history_file",
    "logs_dir",
    "model_file",
    "model_for_path",
    "parse_model_file",
    "read_config",
    "read_json",
    "read_pipeline",
    "run_data_dir",
    "run_inputs",
    "run_models",
    "segmenter_files",
    "stage_image_size",
    "write_json",
]

#: The two trained stages of a run, in the order they are trained and listed.
STAGES = ("classifier", "segmenter")
CONFIG_FILE = "config.json"
PIPELINE_FILE = "pipeline.json"
SUMMARY_FILE = "summary.json"
EXPORT_DIR = "export"
PARITY_FILE = "parity.json"

_MODEL_FILE = re.compile(r"^(?:(?P<arch>[a-z0-9_]+?)_)?(?P<what>model|class_[1-4])\.keras$")


def model_file(arch: str | None = None, class_id: int | None = None) -> str:
    """The file name of one trained model in its stage folder.

    Args:
        arch: an architecture prefix, given where a run trains several; None for none.
        class_id: 1-4 for a per-class segmenter; None for a model of every class.
    """
    stem = "model" if class_id is None else f"class_{int(class_id)}"
    return f"{arch}_{stem}.keras" if arch else f"{stem}.keras"


def parse_model_file(name: str) -> tuple[str, int | None] | None:
    """``(architecture prefix or "", class id or None)`` of a model file name, else None."""
    match = _MODEL_FILE.match(name)
    if not match:
        return None
    what = match["what"]
    return match["arch"] or "", None if what == "model" else int(what[-1])


def history_file(model_name: str, kind: str = "history", suffix: str = ".csv") -> str:
    """``history.csv`` for ``model.keras``, ``history_class_1.csv`` for ``class_1.keras``.

    ``kind`` and ``suffix`` give the other per-model files the same way (``curves``, ``.png``).
    """
    stem = model_name.removesuffix(".keras")
    return f"{kind}{suffix}" if stem == "model" else f"{kind}_{stem}{suffix}"


def backup_path(stage_dir: str | Path, model_name: str) -> Path:
    """Where Keras's ``BackupAndRestore`` keeps the state of a model's interrupted training."""
    return Path(stage_dir) / "backup" / model_name


def logs_dir(stage_dir: str | Path, model_name: str) -> Path:
    """A model's TensorBoard logs."""
    return Path(stage_dir) / "logs" / model_name.removesuffix(".keras")


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically: a temporary file beside it, then a rename."""
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, what: str,
              fix: str = "restore it or train the run again") -> Any:
    """A JSON file of a run; a truncated or hand-broken one is a one-line DataError.

    Args:
        path: the file.
        what: what it holds, for the message ("run's configuration").
        fix: what to do about a damaged one, for the message.
    """
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); the {what} is "
                        f"damaged: {fix}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON text file; the {what} is damaged: {fix}") from None


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a run; a clear error where there is none."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; train one with "
                        "`steel-keras baseline --out DIR` or `steel-keras train-segmenter`")
    if not path.is_file():
        raise DataError(f"{run_dir} holds no trained run (no {CONFIG_FILE}); train one with "
                        "`steel-keras baseline --out DIR`")
    config = read_json(path, "run's configuration")
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a JSON object; train the run again")
    return config


def read_pipeline(run_dir: str | Path) -> dict[str, Any]:
    """``pipeline.json`` of a run (thresholds and TTA), or ``{}`` before ``tune`` ran."""
    path = Path(run_dir) / PIPELINE_FILE
    if not path.is_file():
        return {}
    fix = f"run `steel-keras tune --run {run_dir}` again"
    settings = read_json(path, "tuned pipeline", fix)
    if not isinstance(settings, dict):
        raise DataError(f"{path}: expected a JSON object; {fix}")
    return settings


def run_inputs(run_dir: str | Path) -> list[Path]:
    """What commands reading a run read from it: ``config.json``, ``pipeline.json``, the stage
    folders (models, histories) and the exports. No output of theirs may go there."""
    run_dir = Path(run_dir)
    return [run_dir / CONFIG_FILE, run_dir / PIPELINE_FILE, *(run_dir / s for s in STAGES),
            run_dir / EXPORT_DIR]


def run_data_dir(run_dir: str | Path, data: str | Path | None = None) -> Path:
    """The data folder a command on a run reads: ``data``, else the run's, else the default.

    Raises:
        DataError: the run or its ``config.json`` is missing or damaged.
    """
    if data is not None:
        return Path(data)
    recorded = read_config(run_dir).get("data")
    return Path(recorded) if isinstance(recorded, str) and recorded else default_data_dir()


def check_run_output(path: str | Path, run_dir: str | Path, data: str | Path | None = None, *,
                     kind: str = "file", what: str = "--out") -> Path:
    """:func:`~steel_keras.paths.check_output` for a command on a run: ``path`` is neither the
    run's files nor inside its data folder. Cheap (no model is loaded): call it first."""
    inputs = [run_data_dir(run_dir, data), *run_inputs(run_dir)]
    return check_output(path, kind=kind, inputs=inputs, what=what)


def classifier_file(run_dir: str | Path) -> Path | None:
    """The run's classifier model file, or None where it has none."""
    path = Path(run_dir) / "classifier" / model_file()
    return path if path.is_file() else None


def segmenter_files(run_dir: str | Path) -> list[dict[Any, Path]]:
    """The segmenter model files, one group per architecture: ``{"all": p}`` or ``{1: p, ..}``.

    Raises:
        DataError: the run has no complete segmenter.
    """
    seg_dir = Path(run_dir) / "segmenter"
    groups: dict[str, dict[Any, Path]] = {}
    for path in sorted(seg_dir.glob("*.keras")):
        parsed = parse_model_file(path.name)
        if parsed and path.is_file():
            arch, class_id = parsed
            groups.setdefault(arch, {})["all" if class_id is None else class_id] = path
    complete = [g for g in groups.values() if "all" in g or set(g) == {1, 2, 3, 4}]
    if not complete:
        raise DataError(f"{run_dir} has no trained segmenter in {seg_dir} (expected model.keras "
                        "or class_1..class_4.keras); run `steel-keras train-segmenter --out "
                        f"{run_dir}`")
    return complete


@dataclass(frozen=True)
class RunModel:
    """One Keras model of a run: its stage, file and the image size it takes.

    Args:
        stage: ``"classifier"`` or ``"segmenter"``.
        keras_path: the ``.keras`` file, ``RUN_DIR/{stage}/{stem}.keras``.
        image_size: ``(height, width)`` from the run's ``config.json``.
    """

    stage: str
    keras_path: Path
    image_size: tuple[int, int]

    @property
    def run_dir(self) -> Path:
        return self.keras_path.parent.parent

    @property
    def stem(self) -> str:
        return self.keras_path.name.removesuffix(".keras")

    @property
    def name(self) -> str:
        """``stage/stem``, e.g. ``segmenter/model``."""
        return f"{self.stage}/{self.stem}"

    def export_dir(self, fmt: str) -> Path:
        """The folder of this stage's ``fmt`` exports."""
        return self.run_dir / EXPORT_DIR / fmt / self.stage

    def export_path(self, fmt: str, suffix: str) -> Path:
        """Where the ``fmt`` export of this model is: a file, or a folder where suffix is ``""``."""
        return self.export_dir(fmt) / f"{self.stem}{suffix}"

    def parity_path(self, fmt: str) -> Path:
        return self.export_dir(fmt) / PARITY_FILE


def stage_image_size(config: dict, stage: str, run_dir: str | Path) -> tuple[int, int]:
    """``(height, width)`` a stage's models take, from a run's ``config.json``."""
    section = config.get(stage)
    size = section.get("image_size") if isinstance(section, dict) else None
    if not (isinstance(size, list | tuple) and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)):
        raise DataError(f"{Path(run_dir) / CONFIG_FILE} has no valid {stage}.image_size "
                        "[height, width]; restore the file or train the run again")
    return int(size[0]), int(size[1])


def run_models(run_dir: str | Path, stages: tuple[str, ...] = STAGES) -> list[RunModel]:
    """The Keras models of a run directory, classifier first.

    Raises:
        DataError: the run directory, its ``config.json`` or its segmenter is missing.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    models = []
    cls_path = classifier_file(run_dir)
    if "classifier" in stages and cls_path is not None:
        size = stage_image_size(config, "classifier", run_dir)
        models.append(RunModel("classifier", cls_path, size))
    if "segmenter" in stages:
        size = stage_image_size(config, "segmenter", run_dir)
        paths = sorted({p for group in segmenter_files(run_dir) for p in group.values()})
        models += [RunModel("segmenter", p, size) for p in paths]
    return models


def model_for_path(keras_path: str | Path) -> RunModel:
    """The :class:`RunModel` of a ``.keras`` file inside a run directory."""
    keras_path = Path(keras_path)
    stage = keras_path.parent.name
    if stage not in STAGES or keras_path.suffix != ".keras":
        raise DataError(f"{keras_path} is not RUN_DIR/classifier/*.keras or "
                        "RUN_DIR/segmenter/*.keras")
    run_dir = keras_path.parent.parent
    return RunModel(stage, keras_path, stage_image_size(read_config(run_dir), stage, run_dir))
