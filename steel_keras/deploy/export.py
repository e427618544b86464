"""Export a run's models for another runtime, and check them against Keras.

Which exports exist is the registry's (:mod:`steel_keras.deploy.registry`): an export format
and precision name a runtime, whose entry gives the conversion, the export it is made from and
where its file goes. Every conversion runs in a fresh subprocess
(``python -m steel_keras.deploy._export_worker``): a full-size (256 x 1600) conversion peaks
near 12 GB, and in a process that has already run TensorFlow inference it has been killed at
24 GB. The subprocess's output goes to
``{stem}.log`` beside the export; its input errors come back as one line.

After the export, :func:`check_parity` runs the exported model and Keras on real images of the
run's dataset (validation images first) and writes ``parity.json`` beside the files: the max
absolute difference and the Dice agreement of the outputs thresholded at 0.5.

Example:

>>> from steel_keras.deploy import export_run  # doctest: +SKIP
>>> result = export_run("runs/baseline", "onnx")  # doctest: +SKIP
>>> result.parity["segmenter/model"]["max_abs_diff"] < 1e-3  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.deploy.inputs import run_images
from steel_keras.deploy.parity import Parity
from steel_keras.deploy.registry import RUNTIMES, Runtime, get_runtime, resolve, runtime_for_export
from steel_keras.errors import ConfigError, DataError, RuntimeUnavailableError, SteelKerasError
from steel_keras.paths import atomic_output
from steel_keras.rundir import STAGES, RunModel, read_json, run_models, write_json

DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the files and their parity with Keras, per model."""

    runtime: str
    fmt: str
    precision: str
    files: dict[str, Path] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ----- conversions (they run in the worker subprocess) ------------------------------------------


def _load_keras(keras_path: str | Path, image_size: tuple[int, int]) -> Any:
    from steel_keras.models import load_model

    model = load_model(keras_path, compile=False)
    fixed = tuple(model.input_shape[1:3])
    if all(d is not None for d in fixed) and fixed != tuple(image_size):
        raise ConfigError(f"{keras_path} takes {fixed[0]} x {fixed[1]} images but the run's "
                          f"config says {image_size[0]} x {image_size[1]}")
    return model


def _signature(model: Any, image_size: tuple[int, int]) -> list[Any]:
    import tensorflow as tf

    channels = int(model.input_shape[-1])
    return [tf.TensorSpec((None, *image_size, channels), tf.float32, name="image")]


def _replace(partial: Path, out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    partial.rename(out)


def convert_onnx(source: str | Path, out: str | Path, *, image_size: tuple[int, int],
                 opset: int = DEFAULT_OPSET, **_options: Any) -> dict[str, Any]:
    """A `.keras` file to ONNX with tf2onnx: fixed image size, free batch; `onnx.checker`ed.

    Returns:
        The opset, input and output names and shapes.
    """
    import onnx
    import tf2onnx

    model = _load_keras(source, image_size)
    converted, _ = tf2onnx.convert.from_keras(
        model, input_signature=_signature(model, image_size), opset=opset)
    split = split_reductions(converted)
    with atomic_output(out) as partial:
        onnx.save(converted, str(partial))
        onnx.checker.check_model(str(partial))
    graph = converted.graph

    def shapes(values: Any) -> dict[str, list[Any]]:
        return {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
                for v in values}

    return {"opset": opset, "inputs": shapes(graph.input), "outputs": shapes(graph.output),
            "split_reductions": split}


def split_reductions(model: Any) -> int:
    """Rewrite each ``ReduceMean`` over several axes as one ``ReduceMean`` per axis, in place.

    The mean of row means is the same number, computed more accurately: ONNX Runtime's CPU
    ``ReduceMean`` adds float32 values one after another, and over the 409,600 pixels of a
    full-size image (the per-image standardisation of ``small_cnn`` and ``unet_separable``)
    its mean was off by about 1e-4 of its value, which the division by the image's small
    standard deviation turned into errors of 1e-3 in the standardised image and 5e-2 in the
    separable U-Net's output probabilities. Summing at most one image side at a time keeps
    it within float32 noise. Only ``keepdims=1`` nodes (the default, and what Keras's
    normalisation layers produce) with known axes are rewritten.

    Returns:
        How many nodes were split.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        value = [a for a in node.attribute if a.name == "value"]
        if node.op_type == "Constant" and value:
            constants[node.output[0]] = numpy_helper.to_array(value[0].t)
    rewritten: list[Any] = []
    count = 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes_input = len(node.input) > 1 and node.input[1]  # opset 18+: axes are an input
        axes = (constants.get(axes_input) if axes_input else attrs.get("axes"))
        if (node.op_type != "ReduceMean" or axes is None or len(axes) < 2
                or attrs.get("keepdims", 1) != 1):
            rewritten.append(node)
            continue
        count += 1
        current = node.input[0]
        for i, axis in enumerate(sorted((int(a) for a in axes), reverse=True)):
            name = f"{node.name}__axis{axis}"
            output = node.output[0] if i == len(axes) - 1 else f"{name}:0"
            if axes_input:
                axis_name = f"{name}__axes"
                graph.initializer.append(numpy_helper.from_array(
                    np.array([axis], dtype=np.int64), axis_name))
                rewritten.append(helper.make_node("ReduceMean", [current, axis_name], [output],
                                                  name=name, keepdims=1))
            else:
                rewritten.append(helper.make_node("ReduceMean", [current], [output], name=name,
                                                  axes=[axis], keepdims=1))
            current = output
    if count:
        del graph.node[:]
        graph.node.extend(rewritten)
    return count


def convert_savedmodel(source: str | Path, out: str | Path, *, image_size: tuple[int, int],
                       **_options: Any) -> dict[str, Any]:
    """A `.keras` file to a SavedModel folder (`model.export`, format `tf_saved_model`)."""
    model = _load_keras(source, image_size)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    model.export(str(partial), format="tf_saved_model",
                 input_signature=_signature(model, image_size), verbose=False)
    _replace(partial, out)
    return {"input_shape": [None, *image_size, int(model.input_shape[-1])]}


# ----- the caller's side ------------------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_worker(runtime: str, log_path: Path, **kwargs: Any) -> dict[str, Any]:
    """Run `runtime`'s conversion in a fresh Python process; its output goes to `log_path`.

    Args:
        runtime: a registry name; its `convert` function is called with `kwargs`.
        log_path: where the subprocess's output goes.

    Returns:
        The conversion's result, plus `seconds` and the subprocess's `peak_rss_mb`.

    Raises:
        SteelKerasError: the worker's one-line input error, or a failure naming the log.
    """
    kind = get_runtime(runtime).name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="steel-keras-export-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"runtime": kind, "result_path": str(result), "kwargs": kwargs}))
        with open(log_path, "w") as log:
            code = subprocess.run(
                [sys.executable, "-m", "steel_keras.deploy._export_worker", str(job)],
                stdout=log, stderr=subprocess.STDOUT, env=_worker_env(), check=False,
            ).returncode
        if code == 0 and result.is_file():
            return json.loads(result.read_text())
    lines = log_path.read_text(errors="replace").strip().splitlines()
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if code == 2 and errors:
        raise SteelKerasError(errors[-1])
    how = "killed, probably out of memory" if code in (-9, 137) else f"exit code {code}"
    last = lines[-1][:200] if lines else "no output"
    raise SteelKerasError(f"the {kind} export subprocess failed ({how}): {last}; "
                          f"full log: {log_path}")


def _check_options(batch: int, opset: int) -> None:
    if batch < 1:
        raise ConfigError(f"batch must be 1 or more, got {batch}")
    if not 9 <= opset <= 21:
        raise ConfigError(f"opset must be between 9 and 21 (tf2onnx 1.17), got {opset}")


def check_available(runtime: Runtime, precision: str = "fp32") -> None:
    """Raise RuntimeUnavailableError (one line: what to install) where `runtime` cannot be made
    here, or ConfigError where this machine's library cannot build `precision`."""
    reason = runtime.unavailable()
    if reason:
        raise RuntimeUnavailableError(reason)
    if runtime.check_precision:
        resolve(runtime.check_precision)(precision)


def _fresh(path: Path, source: Path) -> bool:
    return path.exists() and path.stat().st_mtime >= source.stat().st_mtime


def _calibration_file(model: RunModel, count: int, data: Any, tmp: Path) -> Path:
    path = tmp / f"{model.stage}_{model.stem}_calibration.npy"
    np.save(path, run_images(model.run_dir, model.image_size, count, data))
    return path


def _export_one(model: RunModel, runtime: Runtime, options: dict[str, Any],
                tmp: Path) -> dict[str, Any]:
    """Convert one model for `runtime`, first making the export it is converted from."""
    out = runtime.export_path(model)
    source = model.keras_path
    if runtime.source:
        parent = RUNTIMES[runtime.source]
        source = parent.export_path(model)
        if not _fresh(source, model.keras_path):
            _export_one(model, parent, {**options, "precision": "fp32"}, tmp)
    calibration = None
    if options["precision"] == "int8":
        count = max(options["calibration_images"], options["batch"])
        calibration = str(_calibration_file(model, count, options["data"], tmp))
    kwargs = {"source": str(source), "out": str(out), "image_size": list(model.image_size),
              "precision": options["precision"], "batch": options["batch"],
              "opset": options["opset"], "workspace_gb": options["workspace_gb"],
              "calibration": calibration}
    return run_worker(runtime.name, out.parent / f"{model.stem}.log", **kwargs)


def check_parity(models: list[RunModel], runtime: str, *, images: int = 8, batch: int = 8,
                 data: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Compare `runtime` with Keras on `images` real images of the run's dataset, per model.

    Returns:
        `{"stage/stem": {"max_abs_diff", "mean_abs_diff", "dice_agreement", ...}}`.
    """
    from steel_keras.deploy.runners import load_runner
    from steel_keras.models import load_model

    get_runtime(runtime)
    results: dict[str, dict[str, Any]] = {}
    inputs: dict[tuple[int, int], np.ndarray] = {}
    for model in models:
        if model.image_size not in inputs:
            inputs[model.image_size] = run_images(model.run_dir, model.image_size, images, data)
        x = inputs[model.image_size]
        keras_model = load_model(model.keras_path, compile=False)
        runner = load_runner(model.keras_path, runtime)
        parity = Parity()
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            reference = keras_model.predict(chunk, batch_size=len(chunk), verbose=0)
            parity.update(reference, runner.predict(chunk))
        results[model.name] = {"runtime": runtime, "images": int(len(x)),
                               "image_size": list(model.image_size), **parity.result()}
        del keras_model, runner
    return results


def _write_parity(model: RunModel, runtime: Runtime, record: dict[str, Any]) -> Path:
    path = model.parity_path(runtime.export_folder)
    try:
        table = read_json(path, "parity table") if path.is_file() else {}
    except DataError:
        table = None
    if not isinstance(table, dict):
        table = {}  # an earlier export's damaged table: written afresh
    table[model.stem] = record
    return write_json(path, table)


def export_run(run_dir: str | Path, fmt: str = "onnx", *, precision: str = "fp32",
               batch: int = 8, opset: int = DEFAULT_OPSET, data: str | Path | None = None,
               parity_images: int = 8, calibration_images: int = 64, workspace_gb: float = 4.0,
               stages: tuple[str, ...] = STAGES,
               log: Callable[[str], None] | None = None) -> ExportResult:
    """Export every model of a run to `fmt`, each in a subprocess, and check it against Keras.

    Args:
        run_dir: a trained run directory.
        fmt: an export format of the registry (`registry.export_formats()`: `"savedmodel"`,
            `"onnx"`, `"tensorrt"`, `"tftrt"`, ...). With `precision` it names the runtime
            (`onnx` + `int8` is `onnx_int8`); an export made from another (INT8 ONNX and
            TensorRT from the ONNX export, TF-TRT from the SavedModel) makes that one first
            where it is missing or older than the `.keras` file.
        precision: `"fp32"`, `"fp16"` or `"int8"`, as the format's runtimes take them.
        batch: the batch TensorRT / TF-TRT optimise for, and the parity check's batch.
        opset: the ONNX opset. Defaults to 17.
        data: the dataset folder for parity and calibration images. Defaults to the run's.
        parity_images: images compared with Keras per model; 0 skips the check.
        calibration_images: INT8 calibration images.
        workspace_gb: TensorRT workspace limit, in GiB.
        stages: which models: `("classifier", "segmenter")` by default.
        log: called with one line per exported model.

    Returns:
        An :class:`ExportResult`; `parity.json` is written beside each stage's files.

    Raises:
        ConfigError: a bad format, precision, batch or opset.
        RuntimeUnavailableError: TensorRT / TF-TRT cannot run here (says what to install).
        DataError: the run directory or its data is missing.
    """
    runtime = runtime_for_export(fmt, precision)
    _check_options(batch, opset)
    models = run_models(run_dir, stages)
    check_available(runtime, precision)
    result = ExportResult(runtime.name, runtime.export_folder, precision)
    options = {"opset": opset, "precision": precision, "batch": batch, "data": data,
               "calibration_images": calibration_images, "workspace_gb": workspace_gb}
    with tempfile.TemporaryDirectory(prefix="steel-keras-export-") as tmp:
        for model in models:
            start = time.perf_counter()
            info = _export_one(model, runtime, options, Path(tmp))
            result.files[model.name] = runtime.export_path(model)
            result.seconds[model.name] = time.perf_counter() - start
            parity = (check_parity([model], runtime.name, images=parity_images, batch=batch,
                                   data=data)
                      if parity_images > 0 else {model.name: {}})[model.name]
            result.parity[model.name] = parity
            _write_parity(model, runtime, {**parity, "precision": precision, "export": info})
            if log:
                log(describe(model.name, result.files[model.name], info, parity))
    return result


def describe(name: str, path: Path, info: dict[str, Any], parity: dict[str, Any]) -> str:
    """One line about one exported model, for the command line."""
    seconds, peak = info.get("seconds", 0.0), info.get("peak_rss_mb", 0.0)
    line = f"{name}: {path} ({seconds:.0f} s, subprocess peak {peak:.0f} MB)"
    if parity:
        line += (f"; vs Keras on {parity['images']} images: max |diff| "
                 f"{parity['max_abs_diff']:.2e}, Dice agreement {parity['dice_agreement']:.4f}")
    return line

