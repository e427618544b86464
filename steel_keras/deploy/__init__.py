"""Deployment: export a run's models, run them on any runtime, and benchmark the runtimes.

- :func:`export_run`: SavedModel, ONNX (tf2onnx, opset 17, fixed image size, free batch),
  TensorRT engines (from the ONNX file) and TF-TRT (from the SavedModel), each conversion in its
  own subprocess, with a parity check against Keras on real images (``parity.json``).
- :func:`load_runner`: ``predict(batch) -> probabilities`` on ``keras``, ``tf_function``,
  ``tf_bf16``, ``savedmodel``, ``onnx``, ``tensorrt`` or ``tftrt``; the two-stage predictor and
  ``steel-keras predict --runtime NAME`` use it.
- :func:`available_runtimes`: which runtimes can run here, and why not where they cannot.
- :func:`benchmark_run`: the same real batches through every available runtime, each in its
  own subprocess: throughput, latency percentiles, peak memory, parity with Keras.

Importing this package imports neither TensorFlow, ONNX Runtime nor TensorRT.
"""

from __future__ import annotations

from steel_keras.deploy._layout import (
    FORMATS,
    PRECISIONS,
    RunModel,
    RuntimeUnavailableError,
    run_images,
    run_models,
)
from steel_keras.deploy.benchmark import benchmark_run, markdown_report
from steel_keras.deploy.export import ExportResult, check_parity, export_run
from steel_keras.deploy.parity import BARS, Parity
from steel_keras.deploy.runners import (
    RUNTIMES,
    BFloat16Runner,
    KerasRunner,
    OnnxRunner,
    SavedModelRunner,
    TensorRTRunner,
    TFFunctionRunner,
    TFTRTRunner,
    available_runtimes,
    load_runner,
    runtime_status,
)

__all__ = [
    "BARS",
    "FORMATS",
    "PRECISIONS",
    "RUNTIMES",
    "BFloat16Runner",
    "ExportResult",
    "KerasRunner",
    "OnnxRunner",
    "Parity",
    "RunModel",
    "RuntimeUnavailableError",
    "SavedModelRunner",
    "TFFunctionRunner",
    "TFTRTRunner",
    "TensorRTRunner",
    "available_runtimes",
    "benchmark_run",
    "check_parity",
    "export_run",
    "load_runner",
    "markdown_report",
    "run_images",
    "run_models",
    "runtime_status",
]
