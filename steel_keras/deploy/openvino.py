"""OpenVINO: IR files from the ONNX export, FP32 and INT8 (NNCF), and a runner for them.

- :func:`export_openvino` reads the project's ONNX export with ``openvino.convert_model`` and
  writes an IR pair (``model.xml`` + ``model.bin``) with float32 weights (``save_model`` would
  compress them to FP16 by default). ``precision="int8"`` first quantises the model with NNCF's
  post-training quantisation, calibrated on dataset images: weights 8-bit per output channel,
  activations 8-bit per tensor (the ``mixed`` preset: symmetric weights, asymmetric
  activations), FakeQuantize nodes in the IR that the CPU plugin runs as integer kernels.
  The per-image standardisation of the from-scratch models (``image_standardize``: mean and
  standard deviation over the whole image) stays in float: NNCF would otherwise put 8-bit
  quantisers on the image, its mean and its variance, and subtracting an 8-bit mean from an
  8-bit image of small spread loses the defects' contrast. On the test suite's demo segmenter
  (8 calibration images, 8 other images compared) that took the Dice agreement with Keras
  from 0.68 to 0.958.
- :class:`OpenVINORunner` compiles the IR for the CPU with a ``LATENCY`` or ``THROUGHPUT``
  hint. Its ``precision`` is ``"f32"`` by default: on CPUs with AVX512-BF16 or AMX, OpenVINO's
  own default runs float32 models in bfloat16 (on the test suite's demo segmenter, on a CPU
  with AVX512-BF16: max difference 0.68 and Dice agreement 0.989 with ONNX Runtime, against
  1.6e-5 and 1.0000 in f32). ``precision=None`` keeps OpenVINO's default.

OpenVINO and NNCF install from PyPI (``pip install openvino nncf``, both steel-keras
dependencies); :func:`openvino_status` says so in one line where they are missing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.errors import ConfigError, DataError, RuntimeUnavailableError

INSTALL = "`pip install openvino nncf` (steel-keras dependencies that a --no-deps install skips)"
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("fp32", "int8")
#: OpenVINO's ``INFERENCE_PRECISION_HINT`` values the runner takes (None: OpenVINO's default).
INFERENCE_PRECISIONS = ("f32", "bf16", "f16", None)
#: Operation names (regular expressions) :func:`quantize_int8` keeps in float by default: the
#: per-image standardisation (``steel_keras.models._inputs.standardize_image``).
KEEP_FLOAT = (r".*image_standardize.*",)


def openvino_status(int8: bool = False) -> str | None:
    """None where OpenVINO (and, for `int8`, NNCF) can be used here, else why (one line)."""
    names = ("openvino", "nncf") if int8 else ("openvino",)
    for name in names:
        try:
            __import__(name)
        except (ImportError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"{name} is not installed (`import {name}` failed: {reason}); install {INSTALL}"
    return None


def import_openvino(int8: bool = False) -> Any:
    """The `openvino` module, or RuntimeUnavailableError saying what to install."""
    reason = openvino_status(int8)
    if reason:
        raise RuntimeUnavailableError(reason)
    import openvino

    return openvino


def _check_images(images: Any) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or not len(x):
        raise DataError(f"INT8 calibration needs float32 images (N, H, W, C), got shape {x.shape}")
    return x


def quantize_int8(
    model: Any,
    images: np.ndarray,
    *,
    preset: str = "mixed",
    fast_bias_correction: bool = True,
    ignored_names: list[str] | None = None,
    keep_float: tuple[str, ...] = KEEP_FLOAT,
) -> Any:
    """An NNCF post-training INT8 copy of an OpenVINO model, calibrated on `images`.

    Args:
        model: an `openvino.Model` (dynamic or fixed batch).
        images: float32 `(N, H, W, C)` in `[0, 1]`, fed one at a time; all N are used.
        preset: `"mixed"` (symmetric weights, asymmetric activations) or `"performance"`
            (both symmetric).
        fast_bias_correction: NNCF's fast bias correction (else the slower, full one).
        ignored_names: operation names (OpenVINO friendly names) to keep in float.
        keep_float: regular expressions of operation names to keep in float where the model
            has them (by default the per-image standardisation).
    """
    import nncf

    presets = {
        "mixed": nncf.QuantizationPreset.MIXED,
        "performance": nncf.QuantizationPreset.PERFORMANCE,
    }
    if preset not in presets:
        raise ConfigError(f"unknown INT8 preset {preset!r}: choose mixed or performance")
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    # validate=False: a model without the standardisation (sm Unets) is not an error.
    scope = nncf.IgnoredScope(
        names=list(ignored_names or []), patterns=list(keep_float), validate=False
    )
    return nncf.quantize(
        model,
        dataset,
        preset=presets[preset],
        subset_size=len(images),
        fast_bias_correction=fast_bias_correction,
        ignored_scope=scope,
    )


def _save_ir(ov: Any, model: Any, out: Path) -> None:
    """Write `out` (.xml) and its .bin, each replaced only once both are complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".openvino-", dir=out.parent) as tmp:
        partial = Path(tmp) / out.name
        ov.save_model(model, str(partial), compress_to_fp16=False)
        # The .bin first: a reader opens the .xml, which must not name weights not yet there.
        os.replace(partial.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(partial, out)


def _shapes(ports: Any) -> dict[str, list[int | None]]:
    return {
        port.get_any_name(): [
            d.get_length() if d.is_static else None for d in port.get_partial_shape()
        ]
        for port in ports
    }


def export_openvino(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    precision: str = "fp32",
    calibration_images: Any = None,
    preset: str = "mixed",
    fast_bias_correction: bool = True,
    ignored_names: list[str] | None = None,
) -> dict[str, Any]:
    """Convert an ONNX export to an OpenVINO IR (`.xml` + `.bin`), FP32 or INT8.

    Args:
        onnx_path: the project's ONNX export (fixed image size, free batch).
        out_path: the `.xml` file to write; the `.bin` goes beside it.
        precision: `"fp32"` (float32 weights) or `"int8"` (NNCF, :func:`quantize_int8`).
        calibration_images: for INT8, float32 `(N, H, W, 1)` images, or a `.npy` file of them.
        preset, fast_bias_correction, ignored_names: INT8 options (:func:`quantize_int8`).

    Returns:
        The precision, versions, input and output shapes and, for INT8, the calibration
        images and FakeQuantize nodes.

    Raises:
        ConfigError: a bad precision, or INT8 without calibration images.
        DataError: the ONNX file is missing or the images have the wrong shape.
        RuntimeUnavailableError: OpenVINO (or NNCF for INT8) is not installed.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown OpenVINO precision {precision!r}: choose fp32 or int8")
    if precision == "int8" and calibration_images is None:
        raise ConfigError("OpenVINO INT8 needs calibration images (N, H, W, 1)")
    onnx_path, out = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise DataError(f"no ONNX file at {onnx_path}: export to ONNX first")
    if out.suffix != ".xml" or out.resolve() == onnx_path.resolve():
        raise ConfigError(f"the OpenVINO IR path must be a new .xml file, got {out}")
    ov = import_openvino(int8=precision == "int8")
    model = ov.convert_model(str(onnx_path))
    info: dict[str, Any] = {
        "precision": precision,
        "onnx": str(onnx_path),
        "openvino_version": ov.__version__,
    }
    if precision == "int8":
        import nncf

        images = calibration_images
        if isinstance(images, str | Path):
            images = np.load(images)
        images = _check_images(images)
        model = quantize_int8(
            model,
            images,
            preset=preset,
            fast_bias_correction=fast_bias_correction,
            ignored_names=ignored_names,
        )
        ops = [op.get_type_name() for op in model.get_ops()]
        info |= {
            "nncf_version": nncf.__version__,
            "calibration_images": int(len(images)),
            "preset": preset,
            "fake_quantize_nodes": ops.count("FakeQuantize"),
            "ignored_names": list(ignored_names or []),
        }
    _save_ir(ov, model, out)
    return info | {"inputs": _shapes(model.inputs), "outputs": _shapes(model.outputs)}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OpenVINORunner:
    """An OpenVINO IR compiled for the CPU: `predict(batch) -> probabilities`.

    LATENCY compiles the model for each batch size it meets (reshaped to a fixed batch,
    OpenVINO's fastest form; a run sees one or two sizes) and runs the batch in one request.
    THROUGHPUT compiles it once with its free batch and splits each batch over the parallel
    infer requests (streams) OpenVINO chooses, run asynchronously.

    Args:
        path: an IR `.xml` (or an `.onnx` file, read as it is).
        hint: `"LATENCY"` or `"THROUGHPUT"`.
        threads: CPU threads. Defaults to the cores this process may use.
        precision: `INFERENCE_PRECISION_HINT`: `"f32"` (default: exact), `"bf16"`, or None
            for OpenVINO's default on this CPU (bfloat16 where the CPU has AVX512-BF16 / AMX).
    """

    runtime = "openvino"

    def __init__(
        self,
        path: str | Path,
        *,
        hint: str = "LATENCY",
        threads: int | None = None,
        precision: str | None = "f32",
    ) -> None:
        if hint not in HINTS:
            raise ConfigError(f"unknown OpenVINO hint {hint!r}: choose LATENCY or THROUGHPUT")
        if precision not in INFERENCE_PRECISIONS:
            raise ConfigError(
                f"unknown inference precision {precision!r}: choose f32, bf16, f16 or None"
            )
        ov = import_openvino()
        self.path, self.hint = Path(path), hint
        if not self.path.is_file():
            raise DataError(f"no OpenVINO model at {self.path}")
        self._core = ov.Core()
        self._model = self._core.read_model(str(self.path))
        self._input = self._model.inputs[0].get_any_name()
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": int(threads or _cores()),
        }
        if precision:
            self.config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled: dict[int | None, Any] = {}
        self._queue: Any = None
        self._parts: list[dict[str, np.ndarray]] = []

    def compiled(self, batch: int | None) -> Any:
        """The model compiled for `batch` images (None: its free batch), made once."""
        if batch not in self._compiled:
            model = self._model.clone()
            if batch is not None:
                shape = list(model.inputs[0].get_partial_shape())
                model.reshape({self._input: [batch, *(d.get_length() for d in shape[1:])]})
            self._compiled[batch] = self._core.compile_model(model, "CPU", self.config)
        return self._compiled[batch]

    def predict(self, batch: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)  # TTA passes flipped views
        if self.hint == "LATENCY":
            result = self.compiled(len(x))(x)
            return _outputs({port.get_any_name(): value for port, value in result.items()})
        return self._predict_async(x)

    def _predict_async(self, x: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        import openvino as ov

        if self._queue is None:
            compiled = self.compiled(None)
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = ov.AsyncInferQueue(compiled, jobs)
            self._queue.set_callback(self._collect)
        chunks = [c for c in np.array_split(x, min(len(self._queue), len(x))) if len(c)]
        self._parts = [{} for _ in chunks]
        for index, chunk in enumerate(chunks):
            self._queue.start_async({self._input: chunk}, index)
        self._queue.wait_all()
        parts = self._parts
        return _outputs({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    def _collect(self, request: Any, index: int) -> None:
        # The request reuses its output buffers: copy them before it takes the next chunk.
        self._parts[index] = {
            port.get_any_name(): np.array(request.get_tensor(port).data)
            for port in request.model_outputs
        }


class OpenVINOInt8Runner(OpenVINORunner):
    """:class:`OpenVINORunner` on an INT8 (NNCF) IR: an approximation of the FP32 model."""

    runtime = "openvino_int8"


def _outputs(named: dict[str, Any]) -> np.ndarray | dict[str, np.ndarray]:
    """One output as an array, several as `{name: array}` (the runners' contract)."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in named.items()}
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays
