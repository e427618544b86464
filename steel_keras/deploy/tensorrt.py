"""TensorRT engines from ONNX files, and running them.

TensorRT is optional: it installs from NVIDIA's own package index and needs an NVIDIA GPU and
driver. Where ``import tensorrt`` fails, :func:`tensorrt_status` says what to install and every
command that needs TensorRT stops with that one line.

- TensorRT 10: FP32 by default; ``BuilderFlag.FP16``; INT8 with ``BuilderFlag.INT8`` and an
  entropy calibrator fed with dataset images (plus FP16 for the layers INT8 does not cover).
- TensorRT 11: networks are strongly typed and the precision flags are gone. FP16 comes from
  converting the ONNX model to FP16 first (NVIDIA ModelOpt AutoCast, else onnxconverter-common),
  with float32 inputs and outputs kept; INT8 needs Q/DQ nodes in the ONNX model (explicit
  quantization), which this module does not add: it says so.

Buffers on the GPU use ``cuda-python`` (``pip install cuda-python``).

None of this has run on the machine these files were written on (no GPU, no TensorRT); see
``docs/deployment.md``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.errors import ConfigError, RuntimeUnavailableError, SteelKerasError
from steel_keras.paths import atomic_output
from steel_keras.rundir import read_json, write_json

INSTALL_HINT = ("install it from NVIDIA's index with `pip install tensorrt --extra-index-url "
                "https://pypi.nvidia.com` on a machine with an NVIDIA GPU and driver; meanwhile "
                "use `--format onnx` (ONNX Runtime, CPU)")


def import_tensorrt() -> Any:
    """The `tensorrt` module, or RuntimeUnavailableError with what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there, libnvinfer is not
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeUnavailableError(
            f"TensorRT is not installed (`import tensorrt` failed: {reason}); {INSTALL_HINT}"
        ) from None
    return trt


def trt_major(trt: Any) -> int:
    """The major version of an imported `tensorrt` module (10, 11, ...)."""
    return int(str(trt.__version__).split(".")[0])


def import_cudart() -> Any:
    """cuda-python's runtime bindings (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise RuntimeUnavailableError(
                "running TensorRT engines needs cuda-python for GPU buffers: "
                "`pip install cuda-python`") from None
    return cudart


def _cuda(result: Any) -> Any:
    """Unwrap a cuda-python call's `(error, value...)` tuple; raise on an error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise SteelKerasError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else (values or None)


def gpu_name() -> str:
    """The name of GPU 0 (cuda-python, else nvidia-smi), or "unknown"."""
    try:
        cudart = import_cudart()
        props = _cuda(cudart.cudaGetDeviceProperties(0))
        name = props.name
        return (name.decode() if isinstance(name, bytes) else str(name)).strip("\x00 ")
    except Exception:  # noqa: BLE001 - metadata only; fall back to nvidia-smi
        pass
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    return "unknown"


def tensorrt_status() -> str | None:
    """None where TensorRT engines can be built and run here, else the reason (one line)."""
    try:
        import_tensorrt()
        cudart = import_cudart()
    except SteelKerasError as exc:
        return str(exc)
    try:
        count = _cuda(cudart.cudaGetDeviceCount())
    except SteelKerasError as exc:
        return f"TensorRT is installed but CUDA cannot reach a GPU ({exc}); use `--format onnx`"
    if not count:
        return "TensorRT is installed but no CUDA GPU is visible; use `--format onnx`"
    return None


def check_precision(trt: Any, precision: str) -> None:
    """Refuse, with the reason, a precision the installed TensorRT cannot build."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}: choose fp32, fp16 or int8")
    if precision == "int8" and trt_major(trt) >= 11:
        raise ConfigError(
            f"INT8 on TensorRT {trt.__version__} needs an explicitly quantized ONNX model "
            "(Q/DQ nodes, e.g. from NVIDIA ModelOpt: `python -m modelopt.onnx.quantization`); "
            "calibration builds are gone since TensorRT 11: use --precision fp16, or TensorRT "
            "10 for calibrated INT8")


def precision_supported(precision: str) -> None:
    """Refuse, before any conversion starts, a precision the installed TensorRT cannot build."""
    check_precision(import_tensorrt(), precision)


def fp16_onnx(onnx_path: Path, out: Path) -> Path:
    """An FP16 copy of an ONNX model with float32 inputs and outputs (TensorRT 11's FP16)."""
    import onnx

    try:
        from modelopt.onnx import autocast

        model = autocast.convert_to_mixed_precision(
            onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    except ImportError:
        try:
            from onnxconverter_common import float16
        except ImportError:
            raise RuntimeUnavailableError(
                "FP16 on TensorRT 11 converts the ONNX model first: install NVIDIA ModelOpt "
                "(`pip install nvidia-modelopt[onnx] --extra-index-url https://pypi.nvidia.com`)"
                " or `pip install onnxconverter-common`") from None
        model = float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx.save(model, str(out))
    return out


def _load_network(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if trt_major(trt) >= 11 and strongly_typed is not None:
        flags = 1 << int(strongly_typed)  # the default in 11; explicit where the flag remains
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SteelKerasError(f"TensorRT could not parse {onnx_path}: {errors}")
    return network


def _profile(builder: Any, network: Any, batch: int, max_batch: int) -> Any:
    """Dynamic batch 1..max_batch (optimised for `batch`) at the ONNX model's fixed image size."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(int(d) for d in tensor.shape[1:])
        if any(d < 0 for d in rest):
            raise SteelKerasError(f"input {tensor.name} has a free dimension besides the batch "
                                  f"({tuple(tensor.shape)}); export with a fixed image size")
        profile.set_shape(tensor.name, (1, *rest), (batch, *rest), (max_batch, *rest))
    return profile


def _calibrator(trt: Any, images: np.ndarray, batch: int, cache: Path) -> Any:
    """An INT8 entropy calibrator (TensorRT 10) fed with `images` in batches of `batch`."""
    cudart = import_cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = _cuda(cudart.cudaMalloc(images[:batch].nbytes))

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + batch > len(images):
                return None
            chunk = np.ascontiguousarray(images[self.index:self.index + batch], np.float32)
            _cuda(cudart.cudaMemcpy(self.device, chunk.ctypes.data, chunk.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            self.index += batch
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def _builder_config(trt: Any, builder: Any, precision: str, workspace_gb: float,
                    profile: Any) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.add_optimization_profile(profile)
    if trt_major(trt) < 11 and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines fall back to FP16, not FP32
    if trt_major(trt) < 11 and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
    return config


def build_engine(source: str | Path, out: str | Path, *, precision: str = "fp32",
                 batch: int = 8, max_batch: int | None = None, workspace_gb: float = 4.0,
                 calibration: str | Path | None = None, **_options: Any) -> dict[str, Any]:
    """Build and serialise a TensorRT engine from an ONNX file; write `{stem}.json` beside it.

    Args:
        source: an ONNX model with a fixed image size and a free batch dimension.
        out: the `.engine` file to write.
        precision: `"fp32"`, `"fp16"` or `"int8"` (TensorRT 10, calibrated on `calibration`).
        batch: the batch size the optimisation profile is tuned for.
        max_batch: the largest batch the engine takes. Defaults to `batch`.
        workspace_gb: the builder's workspace memory limit, in GiB.
        calibration: for INT8, a `.npy` of float32 images `(N, H, W, 1)`, N >= `batch`.

    Returns:
        The metadata written next to the engine.
    """
    trt = import_tensorrt()
    check_precision(trt, precision)
    onnx_path, out = Path(source), Path(out)
    max_batch = max(max_batch or batch, batch)
    source = onnx_path
    if precision == "fp16" and trt_major(trt) >= 11:
        source = fp16_onnx(onnx_path, out.with_suffix(".fp16.onnx"))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _load_network(trt, builder, logger, source)
    profile = _profile(builder, network, batch, max_batch)
    config = _builder_config(trt, builder, precision, workspace_gb, profile)
    if precision == "int8":
        if calibration is None:
            raise ConfigError("INT8 needs calibration images (export passes dataset images)")
        images = np.load(calibration)
        config.int8_calibrator = _calibrator(trt, images, batch, out.with_suffix(".calib"))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SteelKerasError(f"TensorRT could not build an engine from {source} (see the log)")
    with atomic_output(out) as partial:
        partial.write_bytes(bytes(serialized))
    meta = {"tensorrt_version": str(trt.__version__), "gpu": gpu_name(), "precision": precision,
            "onnx": str(onnx_path), "built_from": str(source), "workspace_gb": workspace_gb,
            "batch": {"min": 1, "opt": batch, "max": max_batch},
            "inputs": _io_shapes(network, network.num_inputs, network.get_input),
            "outputs": _io_shapes(network, network.num_outputs, network.get_output)}
    write_json(out.with_suffix(".json"), meta)
    return meta


def _io_shapes(network: Any, count: int, get: Any) -> dict[str, list[int]]:
    return {get(i).name: [int(d) for d in get(i).shape] for i in range(count)}


class TensorRTEngine:
    """A deserialised engine with GPU buffers for its largest batch; `run(batch) -> outputs`.

    Args:
        path: a `.engine` file written by :func:`build_engine` (with its `.json` beside it).
    """

    def __init__(self, path: str | Path) -> None:
        trt = import_tensorrt()
        self._cudart = import_cudart()
        path = Path(path)
        meta_path = path.with_suffix(".json")
        fix = "make the engine again with `steel-keras export --format tensorrt`"
        meta = read_json(meta_path, "engine's metadata", fix) if meta_path.is_file() else {}
        self.max_batch = int(meta.get("batch", {}).get("max", 8))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise SteelKerasError(f"TensorRT could not load {path}: built by another TensorRT "
                                  "version or GPU? Rebuild with `steel-keras export`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.inputs = [n for n, i in zip(names, is_input, strict=True) if i]
        self.outputs = [n for n, i in zip(names, is_input, strict=True) if not i]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._stream = _cuda(self._cudart.cudaStreamCreate())
        self._buffers = {n: _cuda(self._cudart.cudaMalloc(self._max_bytes(n))) for n in names}

    def _max_bytes(self, name: str) -> int:
        shape = [self.max_batch if d < 0 else int(d) for d in self.engine.get_tensor_shape(name)]
        return int(np.prod(shape)) * self._dtypes[name].itemsize

    def _copy(self, dst: Any, src: Any, nbytes: int, kind: str) -> None:
        kinds = self._cudart.cudaMemcpyKind
        _cuda(self._cudart.cudaMemcpyAsync(dst, src, nbytes, getattr(kinds, kind), self._stream))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for one batch of at most `max_batch` images."""
        batch = np.ascontiguousarray(batch, dtype=self._dtypes[self.inputs[0]])
        name = self.inputs[0]
        self.context.set_input_shape(name, tuple(batch.shape))
        self._copy(self._buffers[name], batch.ctypes.data, batch.nbytes, "cudaMemcpyHostToDevice")
        for tensor, ptr in self._buffers.items():
            self.context.set_tensor_address(tensor, int(ptr))
        if not self.context.execute_async_v3(self._stream):
            raise SteelKerasError("TensorRT execution failed (see the log)")
        results = {}
        for out in self.outputs:
            host = np.empty(tuple(self.context.get_tensor_shape(out)), self._dtypes[out])
            self._copy(host.ctypes.data, self._buffers[out], host.nbytes,
                       "cudaMemcpyDeviceToHost")
            results[out] = host
        _cuda(self._cudart.cudaStreamSynchronize(self._stream))
        return {k: v.astype(np.float32, copy=False) for k, v in results.items()}

    def __del__(self) -> None:
        for ptr in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(ptr)
