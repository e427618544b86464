"""One interface over every runtime: ``runner.predict(batch) -> probabilities``.

A batch is float32 ``(B, H, W, 1)`` in ``[0, 1]`` at the run's image size; the result is a
float32 array, or ``{output name: array}`` for a model with several outputs (the multi-label
classifier), as Keras's ``model.predict`` gives. Runners have no ``predict_on_batch``, so the
two-stage predictor calls their ``predict``.

Which runtimes exist, what makes their files and how to tell whether they can run here is the
registry's (:mod:`steel_keras.deploy.registry`); this module holds the runner classes and
:func:`load_runner`, which builds one for a run's model. Runners of the ``.keras`` file are
built as ``cls(keras_model, image_size)``, runners of an export as ``cls(export_path)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.deploy.registry import get_runtime, resolve
from steel_keras.errors import DataError, RuntimeUnavailableError, SteelKerasError, first_line
from steel_keras.rundir import model_for_path


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _numpy(output: Any) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(output, dict):
        if len(output) == 1:
            return np.asarray(next(iter(output.values())), dtype=np.float32)
        return {str(k): np.asarray(v, dtype=np.float32) for k, v in output.items()}
    return np.asarray(output, dtype=np.float32)


class KerasRunner:
    """`model.predict(batch)`: the reference the other runtimes are compared with."""

    runtime = "keras"

    def __init__(self, model: Any, image_size: tuple[int, int] | None = None) -> None:
        self.model = model

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        return _numpy(self.model.predict(batch, batch_size=len(batch), verbose=0))


class TFFunctionRunner:
    """The Keras model called inside one `tf.function` traced once for `(None, H, W, C)`.

    Args:
        model: a Keras model.
        image_size: `(height, width)` of the batches; the model's own where it is fixed.
    """

    runtime = "tf_function"

    def __init__(self, model: Any, image_size: tuple[int, int] | None = None) -> None:
        import tensorflow as tf

        shape = tuple(model.input_shape[1:])
        size = tuple(image_size) if image_size else shape[:2]
        self.model = model
        spec = tf.TensorSpec((None, *size, shape[-1]), tf.float32, name="image")
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                               jit_compile=False, autograph=False)

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        output = self._fn(np.asarray(batch, dtype=np.float32))
        if isinstance(output, dict):
            return _numpy({k: v.numpy() for k, v in output.items()})
        return _numpy(output.numpy())


class BFloat16Runner(TFFunctionRunner):
    """`tf_function` on :func:`steel_keras.deploy.bf16.bfloat16_model` of the model: float32 in
    and out, bfloat16 inside (whole-image normalisations and output layers in float32)."""

    runtime = "tf_bf16"

    def __init__(self, model: Any, image_size: tuple[int, int] | None = None) -> None:
        import warnings

        from steel_keras.deploy.bf16 import bfloat16_model, emulation_warning

        message = emulation_warning()
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        super().__init__(bfloat16_model(model), image_size)


class SavedModelRunner:
    """A SavedModel folder's serving function (`serve`, else `serving_default`)."""

    runtime = "savedmodel"

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.path = Path(path)
        self._loaded = tf.saved_model.load(str(self.path))
        self._signature = self._loaded.signatures["serving_default"]
        self._input = next(iter(self._signature.structured_input_signature[1]))
        self._serve = getattr(self._loaded, "serve", None)

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        import tensorflow as tf

        x = tf.constant(np.asarray(batch, dtype=np.float32))
        output = self._serve(x) if self._serve is not None else self._signature(
            **{self._input: x})
        if isinstance(output, dict):
            return _numpy({k: v.numpy() for k, v in output.items()})
        return _numpy(output.numpy())


class TFTRTRunner(SavedModelRunner):
    """A TF-TRT converted SavedModel (TensorFlow built with TensorRT, NVIDIA GPU)."""

    runtime = "tftrt"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._serve = None  # TF-TRT saves the signatures only


def onnx_providers() -> list[str]:
    """ONNX Runtime providers in order of preference: TensorRT, CUDA where built in, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in available] or ["CPUExecutionProvider"]


class OnnxRunner:
    """An ONNX Runtime session with all graph optimisations, one intra-op thread per core.

    Args:
        path: an `.onnx` file.
        providers: ONNX Runtime execution providers. Defaults to :func:`onnx_providers`.
        threads: intra-op threads. Defaults to the cores this process may use.
    """

    runtime = "onnx"

    def __init__(self, path: str | Path, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                            providers=providers or onnx_providers())
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)  # TTA passes flipped views
        outputs = self.session.run(None, {self._input: x})
        return _numpy(dict(zip(self._outputs, outputs, strict=True)))


class OnnxInt8Runner(OnnxRunner):
    """ONNX Runtime on an INT8 (QDQ) model: an approximation of the FP32 model, faster on CPUs
    with integer dot-product instructions (AVX-512 VNNI, AVX-VNNI)."""

    runtime = "onnx_int8"


class TensorRTRunner:
    """A TensorRT engine; batches larger than the engine's profile run in chunks."""

    runtime = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        from steel_keras.deploy.tensorrt import TensorRTEngine

        self.path = Path(path)
        self.engine = TensorRTEngine(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        size = self.engine.max_batch
        parts = [self.engine.run(batch[i:i + size]) for i in range(0, len(batch), size)]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return _numpy(merged)


def onnxruntime_status() -> str | None:
    """None where ONNX Runtime imports, else what to install."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "ONNX Runtime is not installed: `pip install onnxruntime`"
    return None


def runtime_status(runtime: str) -> str | None:
    """None where `runtime` can run here, else the reason (one line)."""
    return get_runtime(runtime).unavailable()


def load_runner(keras_path: str | Path, runtime: str = "onnx") -> Any:
    """The runner of `runtime` for a run's model, from its `.keras` path.

    Args:
        keras_path: `RUN_DIR/{classifier,segmenter}/NAME.keras`.
        runtime: a name in the registry. The exported runtimes read
            `RUN_DIR/export/{folder}/{stage}/NAME{suffix}`.

    Raises:
        ConfigError: an unknown runtime.
        RuntimeUnavailableError: the runtime cannot run here (the message says what to install).
        DataError: the export is missing (the message gives the command that makes it).
    """
    model = model_for_path(keras_path)
    entry = get_runtime(runtime)
    reason = entry.unavailable()
    if reason:
        raise RuntimeUnavailableError(reason)
    runner = resolve(entry.runner)
    if not entry.exported:
        from steel_keras.models import load_model

        return runner(load_model(model.keras_path, compile=False), model.image_size)
    path = entry.export_path(model)
    if not path.exists():
        raise DataError(f"no {runtime} export of {model.keras_path} (expected {path}); run "
                        f"`{entry.export_command(model.run_dir)}` first")
    try:
        return runner(path)
    except SteelKerasError:
        raise
    except Exception as exc:  # each runtime raises its own types for a file it cannot read
        raise DataError(f"{path}: {runtime} cannot load this export ({first_line(exc)}); it "
                        f"may be damaged: make it again with "
                        f"`{entry.export_command(model.run_dir)}`") from None
