"""How much of this CPU a runtime uses: FLOPs per image, achieved GFLOP/s, share of the peak.

**FLOPs per image** are counted from the Keras model's layers, their configs and their input
and output shapes (:func:`keras_flops`): each multiply-add of a convolution (``Conv1D/2D/3D``
with groups, ``DepthwiseConv2D``, both halves of ``SeparableConv2D``, ``Conv2DTranspose``) or
of a ``Dense`` layer counts as 2 FLOPs. Everything else (batch normalisation, activations,
additions, pooling, upsampling, the per-image standardisation) is left out: elementwise work,
bound by memory rather than arithmetic, and a few percent of the total for these networks.
:func:`onnx_flops` counts the same from an ONNX file's ``Conv``, ``ConvTranspose``, ``Gemm``
and ``MatMul`` nodes (weights and shape-inferred output shapes); the tests check that both
agree, and agree with counts worked out by hand.

**Peak GFLOP/s** (:func:`cpu_peak`) is ``cores x FMA units x float32 lanes x 2 x clock``:

- cores: those this process may run on (its CPU affinity);
- lanes: 16 with AVX-512, 8 with AVX2 + FMA, 4 otherwise (SSE), from ``/proc/cpuinfo``'s flags;
- FMA units: 2 per core, as on the Intel (Haswell and later server parts) and AMD (Zen 2 and
  later) CPUs seen here; AMD Zen 4 (family 25) runs 512-bit instructions as two 256-bit halves,
  so its AVX-512 peak is counted at 8 lanes x 2 units. Some Intel parts have one 512-bit FMA
  unit: pass ``fma_units=1`` there;
- clock: the highest the CPU reports (``cpuinfo_max_freq``, else ``lscpu``'s ``CPU max MHz``,
  else ``/proc/cpuinfo``'s current ``cpu MHz``, the only one a virtual machine often shows);
  all-core AVX clocks are lower, so the share of the peak is, if anything, understated.

**Achieved GFLOP/s** is ``FLOPs per image x images per second``. :func:`add_roofline` adds
both, and the share of the peak, to every measured row of a ``benchmark_run`` result.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steel_keras.deploy.bf16 import cpu_info

_CONV = ("Conv1D", "Conv2D", "Conv3D")


def _shape(tensor: Any) -> tuple[int, ...]:
    """A tensor's shape without its batch axis; an unknown size is an error."""
    dims = tuple(tensor.shape[1:])
    if any(d is None for d in dims):
        raise ValueError(f"shape {tuple(tensor.shape)} is not fixed: give the image size")
    return tuple(int(d) for d in dims)


def _layer_macs(layer: Any, inputs: tuple[int, ...], outputs: tuple[int, ...]) -> int:
    """Multiply-adds of one call of `layer` on one image (0 for layers without any)."""
    kind, config = type(layer).__name__, layer.get_config()
    kernel = math.prod(config.get("kernel_size", (1,)))
    c_in, c_out = inputs[-1], outputs[-1]
    out_positions = math.prod(outputs[:-1])
    if kind in _CONV:
        return out_positions * c_out * kernel * c_in // int(config.get("groups", 1))
    if kind == "DepthwiseConv2D":
        return out_positions * c_out * kernel  # c_out = c_in x depth multiplier
    if kind == "SeparableConv2D":
        depthwise = c_in * int(config.get("depth_multiplier", 1))
        return out_positions * depthwise * (kernel + c_out)
    if kind in ("Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose"):
        return math.prod(inputs[:-1]) * c_in * kernel * c_out  # each input scattered
    if kind == "Dense":
        return out_positions * c_in * c_out
    return 0


def _leaf_layers(model: Any) -> list[Any]:
    """Every layer that is not itself a model, nested models opened up."""
    import keras

    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if not isinstance(layer, keras.Model)
    ]


def keras_flops(model: Any, image_size: tuple[int, int] | None = None) -> int:
    """FLOPs (2 per multiply-add of convolutions and dense layers) for one image.

    Args:
        model: a Keras model.
        image_size: `(height, width)` for a model whose input size is free (`(None, None, 1)`);
            the model is then rebuilt (without its weights) at that size to know every shape.

    Example:

    >>> import keras
    >>> x = keras.Input((8, 16, 1))
    >>> m = keras.Model(x, keras.layers.Conv2D(4, 3, padding="same")(x))
    >>> keras_flops(m)  # 8 * 16 positions * 4 filters * 9 taps * 1 channel * 2
    9216
    """
    import keras

    if any(d is None for d in model.input_shape[1:]):
        if image_size is None:
            raise ValueError(f"{model.name} takes images of any size: give image_size")
        fixed = keras.Input((*image_size, model.input_shape[-1]))
        model = keras.models.clone_model(model, input_tensors=fixed)
    macs = 0
    for layer in _leaf_layers(model):
        for node in layer._inbound_nodes:
            if node.input_tensors and node.output_tensors:
                inputs, outputs = node.input_tensors[0], node.output_tensors[0]
                macs += _layer_macs(layer, _shape(inputs), _shape(outputs))
    return 2 * macs


def onnx_flops(path: str | Path) -> int:
    """The same count as :func:`keras_flops` from an ONNX file (one image; NCHW or NHWC)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for value in model.graph.input:  # batch 1, so that shape inference knows every size
        value.type.tensor_type.shape.dim[0].dim_value = 1
    # data_prop: propagate the constant shapes that upsampling (Tile / Resize) computes.
    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    weights = {t.name: tuple(numpy_helper.to_array(t).shape) for t in graph.initializer}
    shapes = {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in (*graph.value_info, *graph.output, *graph.input)
    }
    macs = 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if len(node.input) > 1 else None
        out = shapes.get(node.output[0])
        if weight is None or node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        if not out or 0 in out:
            raise ValueError(f"{path}: the output shape of {node.name} is unknown ({out})")
        if node.op_type == "Conv":  # weight (C_out, C_in / groups, k...), output (N, C_out, ...)
            macs += math.prod(out[1:]) * math.prod(weight[1:])
        elif node.op_type == "ConvTranspose":  # weight (C_in, C_out / groups, k...)
            source = shapes[node.input[0]]
            macs += math.prod(source[1:]) * math.prod(weight[1:])
        elif node.op_type in ("Gemm", "MatMul") and len(weight) == 2:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            macs += math.prod(out[1:]) * weight[1 if trans_b else 0]  # x (inputs) = K
    return 2 * macs


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _lscpu_max_mhz() -> float | None:
    if not shutil.which("lscpu"):
        return None
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False)
    for line in out.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "CPU max MHz":
            return float(value.strip().replace(",", "."))
    return None


def cpu_clock_mhz(info: Mapping[str, str] | None = None) -> tuple[float | None, str]:
    """The CPU's highest clock in MHz, and where it was read."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(path.read_text()) / 1000, "cpufreq max"
    except (OSError, ValueError):
        pass
    mhz = _lscpu_max_mhz()
    if mhz:
        return mhz, "lscpu max"
    info = cpu_info() if info is None else info
    if info and info.get("cpu MHz"):
        return float(info["cpu MHz"]), "/proc/cpuinfo current"
    return None, "unknown"


def vector_units(info: Mapping[str, str]) -> tuple[str, int, int]:
    """The widest float32 FMA instructions this CPU has: `(name, lanes, units per core)`."""
    flags = set(info.get("flags", "").split())
    zen4 = info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
    if "avx512f" in flags:
        # Zen 4 splits each 512-bit instruction in two 256-bit halves: the peak of AVX2.
        return ("avx512 (2 x 256-bit)", 8, 2) if zen4 else ("avx512", 16, 2)
    if "avx2" in flags and "fma" in flags:
        return "avx2+fma", 8, 2
    return "sse", 4, 1


def cpu_peak(
    cores: int | None = None,
    fma_units: int | None = None,
    mhz: float | None = None,
    cpuinfo: str | Path = "/proc/cpuinfo",
) -> dict[str, Any]:
    """This CPU's float32 peak: `cores x FMA units x lanes x 2 x clock`, with each factor.

    Any factor can be given where the machine reports it wrongly (see the module's notes).

    Returns:
        `{"peak_gflops", "cores", "fma_units", "lanes", "instructions", "mhz",
        "clock_source"}`; `peak_gflops` is None where the clock cannot be read.
    """
    info = cpu_info(cpuinfo) or {}
    name, lanes, units = vector_units(info)
    source = "given"
    if mhz is None:
        mhz, source = cpu_clock_mhz(info)
    cores, units = cores or _cores(), fma_units or units
    peak = cores * units * lanes * 2 * mhz / 1000 if mhz else None
    return {
        "peak_gflops": peak,
        "cores": cores,
        "fma_units": units,
        "lanes": lanes,
        "instructions": name,
        "mhz": mhz,
        "clock_source": source,
        "cpu_model": info.get("model name"),
    }


def achieved(flops_per_image: float, images_per_s: float, peak_gflops: float | None) -> dict:
    """`gflops_per_s` and `peak_share` (None without a peak) of a measured throughput."""
    gflops = flops_per_image * images_per_s / 1e9
    share = gflops / peak_gflops if peak_gflops else None
    return {"gflops_per_s": gflops, "peak_share": share}


def model_flops(keras_path: str | Path, image_size: tuple[int, int] | None = None) -> int:
    """:func:`keras_flops` of a `.keras` file (loaded without compiling)."""
    from steel_keras.models import load_model

    return keras_flops(load_model(keras_path, compile=False), image_size)


def add_roofline(
    result: dict[str, Any],
    flops: Mapping[str, float] | None = None,
    peak: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add FLOPs per image, achieved GFLOP/s and the share of the CPU's peak to a benchmark.

    Args:
        result: what `benchmark_run` returns (`run`, `image_size`, `results` rows with `model`
            as `stage/stem` and `throughput_ips` where measured); changed in place.
        flops: FLOPs per image by model name. Defaults to :func:`model_flops` of
            `RUN/stage/stem.keras` at the result's image size.
        peak: :func:`cpu_peak`'s result. Defaults to this machine's.

    Returns:
        `result`, with `roofline` (the peak and how it was computed, `flops_per_image` by
        model) and, in each measured row, `flops_per_image`, `gflops_per_s`, `peak_share`.
    """
    peak = cpu_peak() if peak is None else peak
    size = tuple(result["image_size"])
    counts = dict(flops or {})
    for row in result["results"]:
        name = row["model"]
        if name not in counts:
            counts[name] = model_flops(Path(result["run"]) / f"{name}.keras", size)
        if row.get("status") == "ok":
            row["flops_per_image"] = counts[name]
            row.update(achieved(counts[name], row["throughput_ips"], peak["peak_gflops"]))
    result["roofline"] = {**peak, "flops_per_image": counts}
    return result


def roofline_cells(row: Mapping[str, Any]) -> list[str]:
    """`GFLOP/image`, `GFLOP/s` and `% of peak` of one benchmark row, as table cells."""
    if "gflops_per_s" not in row:
        return ["", "", ""]
    share = row.get("peak_share")
    return [
        f"{row['flops_per_image'] / 1e9:.2f}",
        f"{row['gflops_per_s']:.1f}",
        "" if share is None else f"{100 * share:.1f} %",
    ]


ROOFLINE_HEADER = ("GFLOP/image", "GFLOP/s", "% of peak")
