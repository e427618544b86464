"""bfloat16 inference in TensorFlow: the runtime ``tf_bf16``.

bfloat16 keeps float32's exponent range and 8 bits of mantissa (about 3 significant digits).
CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake) or AMX (Intel Sapphire Rapids
and later) multiply bfloat16 matrices at about twice the float32 rate, and TensorFlow's oneDNN
kernels use those instructions (on a 2-core AMD EPYC with AVX512-BF16, 1.9x to 2.4x
``model.predict`` at 256 x 1600: ``docs/benchmarks.md``). Elsewhere TensorFlow emulates
bfloat16, which is slower than float32 (on a 2-core AVX2 CPU: 0.92x ``tf_function`` for the sm
Unet, 0.16x for the separable U-Net): :func:`cpu_bf16_support` says which case this machine is,
and the runner warns (:func:`emulation_warning`).

:func:`bfloat16_model` rebuilds a Keras model with the ``mixed_bfloat16`` policy (weights stay
float32, every layer computes in bfloat16) except the layers that must not lose precision:

- normalisations over a whole image (the per-image standardisation of the from-scratch models,
  a ``LayerNormalization`` over 409,600 pixels at full size, whose mean in bfloat16 would be off
  by far more than a defect's contrast);
- the model's output layers, so that probabilities come out in float32.

Batch normalisation computes its statistics in float32 under a mixed policy anyway. No export is
needed: the runner rebuilds the model from the run's ``.keras`` file when it starts.

Example:
    >>> from steel_keras.deploy import load_runner  # doctest: +SKIP
    >>> runner = load_runner("runs/baseline/segmenter/model.keras", "tf_bf16")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The dtype policy of the rebuilt layers.
POLICY = "mixed_bfloat16"

_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, str] | None:
    """The fields of ``/proc/cpuinfo`` (``model name``, ``flags``, ...; the first CPU's value of
    each), or None where it cannot be read (not Linux)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _native_bf16(info: dict[str, str]) -> str | None:
    flags = set(info.get("flags", "").split())
    return next((flag for flag in reversed(_CPU_FLAGS) if flag in flags), None)


def cpu_bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU feature that runs bfloat16 natively (``amx_bf16``, ``avx512_bf16``), or None.

    None also where the CPU's flags cannot be read (not Linux): the runtime still runs there,
    perhaps emulated and slower than float32.
    """
    info = cpu_info(cpuinfo)
    return _native_bf16(info) if info is not None else None


def emulation_warning(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """What to tell a user of ``tf_bf16`` on a CPU without native bfloat16; None where it has it.

    Also None where the flags cannot be read (not Linux): nothing is known then.
    """
    info = cpu_info(cpuinfo)
    if info is None or _native_bf16(info):
        return None
    return ("tf_bf16: this CPU has neither AVX512-BF16 nor AMX, so TensorFlow emulates "
            "bfloat16, slower than float32 (0.92x tf_function for the sm Unet, 0.16x for the "
            "separable U-Net on a 2-core AVX2 CPU: docs/deployment.md); use tf_function, onnx "
            "or onnx_int8 here")


def _keeps_float32(layer: Any, outputs: set[int]) -> bool:
    import keras

    whole_image_norms = (keras.layers.LayerNormalization, keras.layers.GroupNormalization,
                         keras.layers.UnitNormalization)
    return id(layer) in outputs or isinstance(layer, whole_image_norms)


def bfloat16_model(model: Any) -> Any:
    """A copy of `model` computing in bfloat16, with the same (float32) weights.

    Args:
        model: a Keras functional or sequential model (any model ``steel_keras.models`` builds).

    Returns:
        A new model: ``mixed_bfloat16`` layers, except whole-image normalisations and the output
        layers (float32). Its outputs are float32.
    """
    import keras

    outputs = {id(t._keras_history.operation) for t in keras.tree.flatten(model.outputs)}

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        config["dtype"] = "float32" if _keeps_float32(layer, outputs) else POLICY
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    weights = model.get_weights()
    if len(copy.weights) != len(weights):
        raise RuntimeError(f"bfloat16 copy of {model.name} has {len(copy.weights)} weights, the "
                           f"model {len(weights)}: a layer could not be rebuilt")
    copy.set_weights(weights)
    return copy
