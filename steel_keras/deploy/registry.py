"""The runtime registry: every way to run a trained model, one entry each.

``steel-keras export``, ``predict --runtime``, ``benchmark --runtimes``, the two-stage pipeline
and the command line's choices all read :data:`RUNTIMES`. An entry names its runner, the check
that says whether it can run here, and, for runtimes that run an exported file, the export
format and precision that make it, the conversion that writes it (run in the export
subprocess), the export it is converted from, and the file name ending.

Adding a runtime is one edit here: write its module (a runner class with
``predict(batch) -> probabilities``, a conversion function, a status function), then add one
:class:`Runtime` to :data:`RUNTIMES`. ``docs/architecture.md`` walks through it.

Everything is named as ``"module:attribute"`` and imported only when used, so that reading the
registry (the command line's ``--help``) imports neither numpy, TensorFlow nor ONNX Runtime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steel_keras.errors import ConfigError

__all__ = [
    "RUNTIMES",
    "Runtime",
    "available_runtimes",
    "export_formats",
    "get_runtime",
    "names",
    "precisions",
    "resolve",
    "runtime_for_export",
]


@dataclass(frozen=True)
class Runtime:
    """One runtime.

    Attributes:
        name: what ``--runtime`` and ``--runtimes`` take.
        summary: one line for ``--help`` and the docs.
        runner: ``"module:class"``; built as ``cls(keras_model, image_size)`` for runtimes
            that run the ``.keras`` file (``export_format`` None), else ``cls(export_path)``.
        status: ``"module:function"`` returning None where the runtime can run here, else
            the reason and what to install (one line); None: always available.
        export_format: the ``--format`` of ``steel-keras export`` that makes its file.
        precisions: the ``--precision`` values that make it, with ``export_format``.
        convert: ``"module:function"`` writing the export, called in the export subprocess as
            ``convert(source, out, image_size=, precision=, batch=, opset=, workspace_gb=,
            calibration=)`` (each conversion takes what it needs) and returning metadata.
        source: the runtime whose export is converted; None converts the ``.keras`` file.
        folder: the export's folder under ``RUN_DIR/export/``; defaults to ``name``.
        suffix: the export's file name ending; ``""`` for a folder (SavedModel).
        check_precision: ``"module:function(precision)"`` raising ConfigError where this
            machine's library cannot build that precision; None: any of ``precisions``.
        calibrated: INT8 builds of it read calibration images.
    """

    name: str
    summary: str
    runner: str
    status: str | None = None
    export_format: str | None = None
    precisions: tuple[str, ...] = ("fp32",)
    convert: str | None = None
    source: str | None = None
    folder: str | None = None
    suffix: str = ""
    check_precision: str | None = None

    @property
    def exported(self) -> bool:
        """Whether it runs an exported file rather than the ``.keras`` file."""
        return self.export_format is not None

    @property
    def export_folder(self) -> str:
        return self.folder or self.name

    def export_path(self, model: Any) -> Path:
        """Where the export of ``model`` (a :class:`~steel_keras.rundir.RunModel`) lives."""
        return model.export_path(self.export_folder, self.suffix)

    def export_command(self, run_dir: str | Path) -> str:
        """The ``steel-keras export`` command that makes this runtime's files."""
        precision = "" if "fp32" in self.precisions else f" --precision {self.precisions[0]}"
        return f"steel-keras export --run {run_dir} --format {self.export_format}{precision}"

    def unavailable(self) -> str | None:
        """None where it can run here, else the reason (one line)."""
        return resolve(self.status)() if self.status else None


_RUNNERS = "steel_keras.deploy.runners"
_EXPORT = "steel_keras.deploy.export"

#: Every runtime, in the order tables list them; ``keras`` is the reference.
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("keras", "model.predict on the .keras file: the reference",
            f"{_RUNNERS}:KerasRunner"),
    Runtime("tf_function", "the Keras model in one cached tf.function with a fixed input "
            "signature", f"{_RUNNERS}:TFFunctionRunner"),
    Runtime("tf_bf16", "tf_function on a bfloat16 copy of the model: fast on CPUs with "
            "AVX512-BF16 or AMX, emulated (slow) elsewhere", f"{_RUNNERS}:BFloat16Runner"),
    Runtime("savedmodel", "tf.saved_model.load of the SavedModel export",
            f"{_RUNNERS}:SavedModelRunner", export_format="savedmodel",
            convert=f"{_EXPORT}:convert_savedmodel"),
    Runtime("onnx", "ONNX Runtime (CPU; CUDA / TensorRT providers where installed)",
            f"{_RUNNERS}:OnnxRunner", status=f"{_RUNNERS}:onnxruntime_status",
            export_format="onnx", convert=f"{_EXPORT}:convert_onnx", suffix=".onnx"),
    Runtime("onnx_int8", "ONNX Runtime on the INT8 (QDQ) model, calibrated on dataset images",
            f"{_RUNNERS}:OnnxInt8Runner", status=f"{_RUNNERS}:onnxruntime_status",
            export_format="onnx", precisions=("int8",),
            convert="steel_keras.deploy.onnx_int8:quantize_onnx", source="onnx",
            suffix=".onnx"),
    Runtime("tensorrt", "a TensorRT engine built from the ONNX export (NVIDIA GPU)",
            f"{_RUNNERS}:TensorRTRunner", status="steel_keras.deploy.tensorrt:tensorrt_status",
            export_format="tensorrt", precisions=("fp32", "fp16", "int8"),
            convert="steel_keras.deploy.tensorrt:build_engine", source="onnx",
            suffix=".engine", check_precision="steel_keras.deploy.tensorrt:precision_supported"),
    Runtime("tftrt", "a TF-TRT SavedModel (TensorFlow built with TensorRT, NVIDIA GPU)",
            f"{_RUNNERS}:TFTRTRunner", status="steel_keras.deploy.tftrt:tftrt_status",
            export_format="tftrt", precisions=("fp32", "fp16", "int8"),
            convert="steel_keras.deploy.tftrt:convert_tftrt", source="savedmodel"),
)}


def available_runtimes() -> dict[str, str | None]:
    """``{runtime: None if it can run here, else the reason}`` for every runtime.

    Example:

    >>> status = available_runtimes()  # doctest: +SKIP
    >>> status["keras"], status["tensorrt"]  # doctest: +SKIP
    (None, 'TensorRT is not installed (`import tensorrt` failed: ...); install it from ...')
    """
    return {name: runtime.unavailable() for name, runtime in RUNTIMES.items()}


def names() -> list[str]:
    """The runtime names, reference first."""
    return list(RUNTIMES)


def export_formats() -> list[str]:
    """The ``--format`` values of ``steel-keras export``, in registry order."""
    return list(dict.fromkeys(r.export_format for r in RUNTIMES.values() if r.exported))


def precisions() -> list[str]:
    """Every ``--precision`` value some export takes."""
    order = ("fp32", "fp16", "int8")
    found = {p for r in RUNTIMES.values() if r.exported for p in r.precisions}
    return [p for p in order if p in found] + sorted(found - set(order))


def get_runtime(name: str) -> Runtime:
    """The registry entry of ``name``; a ConfigError listing the choices otherwise."""
    if name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_for_export(fmt: str, precision: str = "fp32") -> Runtime:
    """The runtime that ``export --format fmt --precision precision`` makes."""
    if fmt not in export_formats():
        raise ConfigError(f"unknown export format {fmt!r}: choose one of "
                          f"{', '.join(export_formats())}")
    for runtime in RUNTIMES.values():
        if runtime.export_format == fmt and precision in runtime.precisions:
            return runtime
    valid = [p for r in RUNTIMES.values() if r.export_format == fmt for p in r.precisions]
    raise ConfigError(f"--format {fmt} takes --precision {' or '.join(valid)}, not {precision!r}")


def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names, imported now."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
