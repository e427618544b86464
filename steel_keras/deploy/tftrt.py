"""TF-TRT: a SavedModel with TensorRT-optimised subgraphs, via ``TrtGraphConverterV2``.

TF-TRT exists only where TensorFlow itself was built with TensorRT: the PyPI wheels up to
TensorFlow 2.17 (Linux, NVIDIA GPU) and NVIDIA's TensorFlow containers
(``nvcr.io/nvidia/tensorflow``). From 2.18 the PyPI wheels are built without it: the converter
module imports, but constructing ``TrtGraphConverterV2`` raises ``RuntimeError: Tensorflow has
not been built with TensorRT support``. :func:`convert_tftrt` turns that into one clear line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.errors import ConfigError, RuntimeUnavailableError

_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def unavailable_message(version: str) -> str:
    """Why TF-TRT cannot run with TensorFlow `version`, and where it can."""
    return (f"TF-TRT needs TensorFlow built with TensorRT, and TensorFlow {version} is not: use "
            "TensorFlow 2.17 or older on Linux with an NVIDIA GPU, or NVIDIA's TensorFlow "
            "container (nvcr.io/nvidia/tensorflow); meanwhile use `--format onnx` (or "
            "`--format tensorrt` on an NVIDIA GPU)")


def tftrt_status() -> str | None:
    """None where TensorFlow was built with TensorRT, else the reason (one line)."""
    import tensorflow as tf

    if not tf.sysconfig.get_build_info().get("is_tensorrt_build", False):
        return unavailable_message(tf.__version__)
    return None


def _converter(saved_model: Path, precision: str, workspace_gb: float, batch: int) -> Any:
    import tensorflow as tf
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    params = trt.TrtConversionParams(
        precision_mode=_PRECISION[precision],
        max_workspace_size_bytes=int(workspace_gb * 2**30),
        use_calibration=precision == "int8",
        maximum_cached_engines=max(1, batch))
    try:
        return trt.TrtGraphConverterV2(
            input_saved_model_dir=str(saved_model), conversion_params=params,
            use_dynamic_shape=True, dynamic_shape_profile_strategy="Optimal")
    except RuntimeError as exc:
        if "TensorRT" not in str(exc):
            raise
        raise RuntimeUnavailableError(unavailable_message(tf.__version__)) from None


def convert_tftrt(source: str | Path, out: str | Path, *, precision: str = "fp32",
                  batch: int = 8, workspace_gb: float = 4.0,
                  calibration: str | Path | None = None, **_options: Any) -> dict[str, Any]:
    """Convert a SavedModel with TF-TRT and save the result as a SavedModel folder.

    Args:
        source: the SavedModel folder (`steel-keras export --format savedmodel`).
        out: the folder to write.
        precision: `"fp32"`, `"fp16"` or `"int8"` (calibrated on `calibration`).
        batch: batch size the engines are built for.
        workspace_gb: TensorRT workspace limit, in GiB.
        calibration: for INT8, a `.npy` of float32 images `(N, H, W, 1)`.

    Raises:
        RuntimeUnavailableError: TensorFlow was built without TensorRT (all PyPI wheels from
            2.18 on), with a message saying which TensorFlow builds have it.
    """
    if precision not in _PRECISION:
        raise ConfigError(f"unknown precision {precision!r}: choose fp32, fp16 or int8")
    if precision == "int8" and calibration is None:
        raise ConfigError("TF-TRT INT8 needs calibration images (export passes dataset images)")
    import tensorflow as tf

    saved_model = Path(source)
    converter = _converter(saved_model, precision, workspace_gb, batch)
    images = np.load(calibration) if calibration is not None else None

    def batches() -> Any:
        for start in range(0, len(images) - batch + 1, batch):
            yield (tf.constant(images[start:start + batch]),)

    if precision == "int8":
        converter.convert(calibration_input_fn=batches)
    else:
        converter.convert()
    shape = _input_shape(saved_model, batch)
    converter.build(input_fn=lambda: iter([(tf.zeros(shape, tf.float32),)]))
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    converter.save(str(out))
    return {"tensorflow_version": tf.__version__, "precision": precision, "batch": batch,
            "input_shape": list(shape)}


def _input_shape(saved_model: Path, batch: int) -> tuple[int, ...]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    spec = next(iter(signature.structured_input_signature[1].values()))
    return (batch, *[int(d) for d in spec.shape[1:]])
