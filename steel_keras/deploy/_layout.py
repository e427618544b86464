"""Which models a run has, where their exports live, and the dataset images they are checked on.

Exports sit beside the run's Keras files::

    RUN_DIR/export/onnx/segmenter/model.onnx         (+ parity.json, model.log)
    RUN_DIR/export/onnx_int8/segmenter/model.onnx    INT8 (QDQ), from the ONNX export
    RUN_DIR/export/savedmodel/classifier/model/      a SavedModel folder
    RUN_DIR/export/tensorrt/segmenter/model.engine   (+ model.json: TensorRT version, GPU, ...)
    RUN_DIR/export/tftrt/segmenter/model/            a TF-TRT SavedModel folder

This module imports neither TensorFlow nor ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steel_keras.errors import ConfigError, DataError, SteelKerasError

FORMATS = ("savedmodel", "onnx", "onnx_int8", "tensorrt", "tftrt")
PRECISIONS = ("fp32", "fp16", "int8")
STAGES = ("classifier", "segmenter")
EXPORT_DIR = "export"
PARITY_FILE = "parity.json"
_SUFFIX = {"onnx": ".onnx", "onnx_int8": ".onnx", "savedmodel": "", "tensorrt": ".engine",
           "tftrt": ""}


class RuntimeUnavailableError(SteelKerasError):
    """A runtime or converter this machine lacks (TensorRT, TF-TRT, ONNX Runtime)."""


@dataclass(frozen=True)
class RunModel:
    """One Keras model of a run: its stage, file and the image size it takes.

    Args:
        stage: `"classifier"` or `"segmenter"`.
        keras_path: the `.keras` file, `RUN_DIR/{stage}/{stem}.keras`.
        image_size: `(height, width)` from the run's `config.json`.
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
        """`stage/stem`, e.g. `segmenter/model`."""
        return f"{self.stage}/{self.stem}"

    def export_dir(self, fmt: str) -> Path:
        return self.run_dir / EXPORT_DIR / fmt / self.stage

    def export_path(self, fmt: str) -> Path:
        """Where the `fmt` export of this model is (a file, or a folder for SavedModels)."""
        check_format(fmt)
        return self.export_dir(fmt) / f"{self.stem}{_SUFFIX[fmt]}"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def _image_size(config: dict, stage: str, run_dir: Path) -> tuple[int, int]:
    size = config.get(stage, {}).get("image_size")
    if not (isinstance(size, list | tuple) and len(size) == 2):
        raise DataError(f"{run_dir / 'config.json'} has no {stage}.image_size [height, width]")
    return int(size[0]), int(size[1])


def run_models(run_dir: str | Path, stages: tuple[str, ...] = STAGES) -> list[RunModel]:
    """The Keras models of a run directory, classifier first.

    Raises:
        DataError: the run directory, its `config.json` or its segmenter is missing.
    """
    from steel_keras.runs import read_config, segmenter_files

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    models = []
    cls_path = run_dir / "classifier" / "model.keras"
    if "classifier" in stages and cls_path.is_file():
        models.append(RunModel("classifier", cls_path, _image_size(config, "classifier", run_dir)))
    if "segmenter" in stages:
        size = _image_size(config, "segmenter", run_dir)
        paths = sorted({p for group in segmenter_files(run_dir) for p in group.values()})
        models += [RunModel("segmenter", p, size) for p in paths]
    return models


def model_for_path(keras_path: str | Path) -> RunModel:
    """The :class:`RunModel` of a `.keras` file inside a run directory."""
    from steel_keras.runs import read_config

    keras_path = Path(keras_path)
    stage = keras_path.parent.name
    if stage not in STAGES or keras_path.suffix != ".keras":
        raise DataError(f"{keras_path} is not RUN_DIR/classifier/*.keras or "
                        "RUN_DIR/segmenter/*.keras")
    run_dir = keras_path.parent.parent
    return RunModel(stage, keras_path, _image_size(read_config(run_dir), stage, run_dir))


def run_images(run_dir: str | Path, image_size: tuple[int, int], count: int,
               data: str | Path | None = None) -> np.ndarray:
    """`count` real images of the run's dataset, as the models take them.

    Validation images first (held out from training), then training images, repeated where the
    folder has fewer than `count`.

    Returns:
        float32 `(count, height, width, 1)` in `[0, 1]`.
    """
    from steel_keras.data.dataset import open_dataset
    from steel_keras.data.pipelines import load_arrays
    from steel_keras.runs import read_config

    config = read_config(run_dir)
    folder = data if data is not None else config.get("data")
    if folder is not None and not Path(folder).is_dir():
        raise DataError(f"the run's data folder {folder} does not exist; pass --data FOLDER")
    ds = open_dataset(folder)
    train_ids, val_ids = ds.split(config.get("val_fraction", 0.2), seed=config.get("seed", 0))
    pool = val_ids + train_ids
    if not pool:
        raise DataError(f"{ds.root} has no training images to check the exports on")
    ids = [pool[i % len(pool)] for i in range(count)]
    x, _ = load_arrays(ds, ids, image_size, kind="classification")
    return x
