"""Deployment: export a run's models, run them on any runtime, and benchmark the runtimes.

- :mod:`steel_keras.deploy.registry`: every runtime, one entry each (``RUNTIMES``); the
  command line's choices, ``export``, ``predict`` and ``benchmark`` read it.
- :func:`export_run`: SavedModel, ONNX (tf2onnx, opset 17, fixed image size, free batch),
  INT8 ONNX, TensorRT engines and TF-TRT, each conversion in its own subprocess, with a parity
  check against Keras on real images (``parity.json``).
- :func:`load_runner`: ``predict(batch) -> probabilities`` on any runtime of the registry; the
  two-stage predictor and ``steel-keras predict --runtime NAME`` use it.
- :func:`available_runtimes`: which runtimes can run here, and why not where they cannot.
- :func:`benchmark_run`: the same real batches through every available runtime, each in its
  own subprocess: throughput, latency percentiles, peak memory, parity with Keras.

Importing this package imports nothing heavy: each name below is imported on first use, so
that the command line can read the registry without loading numpy, TensorFlow or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "RUNTIMES": "registry",
    "Runtime": "registry",
    "available_runtimes": "registry",
    "export_formats": "registry",
    "get_runtime": "registry",
    "runtime_for_export": "registry",
    "benchmark_run": "benchmark",
    "markdown_report": "benchmark",
    "ExportResult": "export",
    "check_parity": "export",
    "export_run": "export",
    "run_images": "inputs",
    "BARS": "parity",
    "Parity": "parity",
    "BFloat16Runner": "runners",
    "KerasRunner": "runners",
    "OnnxInt8Runner": "runners",
    "OnnxRunner": "runners",
    "SavedModelRunner": "runners",
    "TensorRTRunner": "runners",
    "TFFunctionRunner": "runners",
    "TFTRTRunner": "runners",
    "load_runner": "runners",
    "runtime_status": "runners",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
