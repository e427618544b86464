"""FLOPs per image counted by hand and by the library, the CPU peak, and the benchmark columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steel_keras.deploy.roofline import (
    ROOFLINE_HEADER,
    achieved,
    add_roofline,
    cpu_clock_mhz,
    cpu_peak,
    keras_flops,
    onnx_flops,
    roofline_cells,
)

# Multiply-adds of each layer of `tiny_model`, worked out by hand.
HAND_MACS = {
    "conv": 8 * 16 * 4 * (3 * 3 * 2),  # positions x filters x taps x input channels
    "separable": 8 * 16 * (4 * 2) * 9 + 8 * 16 * 6 * (4 * 2),  # depthwise x2, then pointwise
    "depthwise": 4 * 8 * 6 * 9,  # stride 2: 4 x 8 positions, 6 channels, 9 taps
    "transpose": 4 * 8 * 6 * (2 * 2) * 5,  # each of 4 x 8 x 6 inputs scattered to 2x2x5
    "grouped": 8 * 16 * 10 * 1,  # groups=5: each filter sees 5 / 5 = 1 channel
    "dense": 10 * 3,
}


def tiny_model(size=(8, 16), groups=5):
    import keras

    x = keras.Input((*size, 2))
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="separable")(y)
    y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="depthwise")(y)
    y = keras.layers.Conv2DTranspose(5, 2, strides=2, name="transpose")(y)
    y = keras.layers.Conv2D(10, 1, groups=groups, name="grouped", activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(3, name="dense")(y))


def test_keras_count_matches_the_hand_count():
    assert keras_flops(tiny_model()) == 2 * sum(HAND_MACS.values()) == 62908


def test_nested_models_and_free_input_size():
    import keras

    inner = tiny_model()
    x = keras.Input((8, 16, 2))
    outer = keras.Model(x, inner(x))
    assert keras_flops(outer) == keras_flops(inner)
    free = tiny_model((None, None))
    with pytest.raises(ValueError, match="give image_size"):
        keras_flops(free)
    assert keras_flops(free, (8, 16)) == 62908
    assert keras_flops(free, (16, 32)) == 4 * (62908 - 60) + 60  # all but Dense scale


def test_onnx_count_agrees(tmp_path):
    import tensorflow as tf
    import tf2onnx

    # tf2onnx cannot convert grouped convolutions: here the last one sees all 5 channels.
    model = tiny_model(groups=1)
    expected = 2 * (sum(HAND_MACS.values()) - HAND_MACS["grouped"] + 8 * 16 * 10 * 5)
    assert keras_flops(model) == expected
    spec = [tf.TensorSpec((None, 8, 16, 2), tf.float32, name="image")]
    tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=17, output_path=str(tmp_path / "tiny.onnx")
    )
    assert onnx_flops(tmp_path / "tiny.onnx") == expected


def write_cpuinfo(path, vendor, family, flags):
    path.write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
        f"model name\t: Test CPU\ncpu MHz\t\t: 2500.000\nflags\t\t: {flags}\n"
    )
    return path


@pytest.mark.parametrize(
    ("vendor", "family", "flags", "lanes", "peak"),
    [
        ("GenuineIntel", "6", "sse2 avx fma avx2", 8, 4 * 2 * 8 * 2 * 3.0),
        ("GenuineIntel", "6", "sse2 avx fma avx2 avx512f", 16, 4 * 2 * 16 * 2 * 3.0),
        ("AuthenticAMD", "25", "sse2 avx fma avx2 avx512f", 8, 4 * 2 * 8 * 2 * 3.0),  # Zen 4
        ("AuthenticAMD", "26", "sse2 avx fma avx2 avx512f", 16, 4 * 2 * 16 * 2 * 3.0),  # Zen 5
        ("GenuineIntel", "6", "sse2 sse4_2", 4, 4 * 1 * 4 * 2 * 3.0),
    ],
)
def test_cpu_peak_from_flags(tmp_path, vendor, family, flags, lanes, peak):
    info = write_cpuinfo(tmp_path / "cpuinfo", vendor, family, flags)
    result = cpu_peak(cores=4, mhz=3000, cpuinfo=info)
    assert result["lanes"] == lanes and result["peak_gflops"] == pytest.approx(peak)
    assert result["clock_source"] == "given" and result["cpu_model"] == "Test CPU"
    assert cpu_peak(cores=4, mhz=3000, fma_units=1, cpuinfo=info)["peak_gflops"] == (
        pytest.approx(peak / result["fma_units"])
    )


def test_this_machine_has_a_peak():
    mhz, source = cpu_clock_mhz()
    peak = cpu_peak()
    if mhz is None:
        pytest.skip("this machine reports no clock")
    assert mhz > 100 and source != "unknown"
    assert peak["peak_gflops"] > 1 and peak["cores"] >= 1


def test_add_roofline_to_a_benchmark_result(tmp_path):
    model = tiny_model()
    (tmp_path / "segmenter").mkdir()
    model.save(tmp_path / "segmenter" / "model.keras")
    result = {
        "run": str(tmp_path),
        "image_size": [8, 16],
        "results": [
            {
                "model": "segmenter/model",
                "runtime": "keras",
                "status": "ok",
                "throughput_ips": 1000.0,
            },
            {
                "model": "segmenter/model",
                "runtime": "tensorrt",
                "status": "skipped",
                "reason": "no GPU",
            },
        ],
    }
    peak = {"peak_gflops": 0.5, "cores": 1}
    add_roofline(result, peak=peak)  # FLOPs from the .keras file
    ok, skipped = result["results"]
    assert ok["flops_per_image"] == 62908
    assert ok["gflops_per_s"] == pytest.approx(62908 * 1000 / 1e9)
    assert ok["peak_share"] == pytest.approx(62908 * 1000 / 1e9 / 0.5)
    assert "gflops_per_s" not in skipped and roofline_cells(skipped) == ["", "", ""]
    assert result["roofline"]["flops_per_image"] == {"segmenter/model": 62908}
    assert roofline_cells(ok) == ["0.00", "0.1", "12.6 %"]
    assert len(ROOFLINE_HEADER) == 3
    json.dumps(result)  # the JSON the benchmark writes
    assert achieved(2e9, 10, None) == {"gflops_per_s": 20.0, "peak_share": None}
    assert np.isfinite(ok["peak_share"])
