"""OpenVINO on real tiny models: IR from the project's ONNX export, FP32 and INT8, the runner.

A demo run (untrained, batch-norm calibrated separable U-Net and a two-output small-CNN
classifier, 64 x 128; ``steel_keras.deploy.demo``) is exported to ONNX through the command line,
then to OpenVINO IR, and run against Keras on real images of its dataset. Skipped, with the
reason, where OpenVINO or NNCF is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steel_keras.deploy import Parity, run_images
from steel_keras.deploy.openvino import (
    OpenVINOInt8Runner,
    OpenVINORunner,
    export_openvino,
    openvino_status,
)
from steel_keras.errors import ConfigError, DataError

SIZE = (64, 128)


@pytest.fixture(scope="module")
def onnx_run(tiny_dataset, tmp_path_factory) -> Path:
    """A demo run with a multi-label classifier, exported to ONNX as the project does it."""
    reason = openvino_status(int8=True)
    if reason:
        pytest.skip(reason)
    from steel_keras.cli import main
    from steel_keras.deploy.demo import make_demo_run

    run = make_demo_run(
        tmp_path_factory.mktemp("openvino") / "run", tiny_dataset, seg_size=SIZE, multilabel=True
    )
    assert main(["export", "--run", str(run), "--format", "onnx", "--parity-images", "0"]) == 0
    return run


def keras_outputs(run: Path, stage: str, x: np.ndarray):
    from steel_keras.models import load_model

    model = load_model(run / stage / "model.keras", compile=False)
    out = model.predict(x, batch_size=len(x), verbose=0)
    return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else out


def onnx_file(run: Path, stage: str) -> Path:
    return run / "export" / "onnx" / stage / "model.onnx"


@pytest.fixture(scope="module")
def fp32_irs(onnx_run) -> dict[str, Path]:
    out = {}
    for stage in ("segmenter", "classifier"):
        out[stage] = onnx_run / "export" / "openvino" / stage / "model.xml"
        info = export_openvino(onnx_file(onnx_run, stage), out[stage])
        assert info["precision"] == "fp32" and info["inputs"] == {"image": [None, *SIZE, 1]}
    return out


def test_fp32_ir_files_and_shapes(fp32_irs, onnx_run):
    seg = fp32_irs["segmenter"]
    assert seg.is_file() and seg.with_suffix(".bin").is_file()
    # float32 weights, not save_model's default FP16 compression: the .bin holds about as
    # many bytes as the ONNX file's weights.
    assert (
        seg.with_suffix(".bin").stat().st_size
        > 0.9 * onnx_file(onnx_run, "segmenter").stat().st_size
    )
    assert sorted(p.name for p in seg.parent.iterdir()) == ["model.bin", "model.xml"]


@pytest.mark.parametrize("hint", ["LATENCY", "THROUGHPUT"])
def test_fp32_runner_matches_keras(fp32_irs, onnx_run, hint):
    x = run_images(onnx_run, SIZE, 5)  # 5: an odd batch, split unevenly over the streams
    runner = OpenVINORunner(fp32_irs["segmenter"], hint=hint, threads=2)
    assert runner.runtime == "openvino" and runner.config["INFERENCE_PRECISION_HINT"] == "f32"
    reference = keras_outputs(onnx_run, "segmenter", x)
    for batch in (x, x[:2]):  # two batch sizes: LATENCY compiles one model for each
        y = runner.predict(batch)
        assert y.shape == (len(batch), *SIZE, 4) and y.dtype == np.float32
        np.testing.assert_allclose(y, reference[: len(batch)], atol=1e-3)  # the FP32 bar
    parity = Parity()
    parity.update(reference, runner.predict(x))
    assert parity.result()["within_bars"]


def test_two_output_classifier_keeps_output_names(fp32_irs, onnx_run):
    x = run_images(onnx_run, SIZE, 3)
    reference = keras_outputs(onnx_run, "classifier", x)
    for hint in ("LATENCY", "THROUGHPUT"):
        out = OpenVINORunner(fp32_irs["classifier"], hint=hint).predict(x)
        assert isinstance(out, dict) and set(out) == set(reference) == {"has_defect", "classes"}
        for name, value in out.items():
            assert value.shape == reference[name].shape and value.dtype == np.float32
            np.testing.assert_allclose(value, reference[name], atol=1e-4)


def test_int8_ir_is_quantised_and_close_to_keras(onnx_run, fp32_irs):
    images = run_images(onnx_run, SIZE, 8)
    out = onnx_run / "export" / "openvino_int8" / "segmenter" / "model.xml"
    calibration = onnx_run / "calibration.npy"
    np.save(calibration, images)
    info = export_openvino(
        onnx_file(onnx_run, "segmenter"), out, precision="int8", calibration_images=calibration
    )
    assert info["calibration_images"] == 8 and info["fake_quantize_nodes"] > 10
    assert (
        out.with_suffix(".bin").stat().st_size
        < fp32_irs["segmenter"].with_suffix(".bin").stat().st_size / 2
    )  # 8-bit weights
    x = run_images(onnx_run, SIZE, 12)[8:]  # not the calibration images (those come first)
    runner = OpenVINOInt8Runner(out)
    assert runner.runtime == "openvino_int8"
    y, reference = runner.predict(x), keras_outputs(onnx_run, "segmenter", x)
    parity = Parity()
    parity.update(reference, y)
    result = parity.result()
    # An approximation of the same model: with the per-image standardisation kept in float,
    # NNCF's INT8 agreed with Keras at Dice 0.96 on this untrained network (AVX-512 CPU);
    # with it quantised too, at 0.68 and a mean difference of 0.33.
    assert 0 < result["max_abs_diff"] and result["mean_abs_diff"] < 0.12
    assert result["dice_agreement"] > 0.85


def test_precision_none_keeps_openvino_default(fp32_irs):
    runner = OpenVINORunner(fp32_irs["segmenter"], precision=None)
    assert "INFERENCE_PRECISION_HINT" not in runner.config
    assert runner.predict(np.zeros((1, *SIZE, 1), np.float32)).shape == (1, *SIZE, 4)


def test_bad_arguments_are_clear_and_write_nothing(onnx_run, fp32_irs, tmp_path):
    source = onnx_file(onnx_run, "segmenter")
    with pytest.raises(ConfigError, match="unknown OpenVINO precision 'fp16'"):
        export_openvino(source, tmp_path / "m.xml", precision="fp16")
    with pytest.raises(ConfigError, match="INT8 needs calibration images"):
        export_openvino(source, tmp_path / "m.xml", precision="int8")
    with pytest.raises(ConfigError, match="must be a new .xml file"):
        export_openvino(source, tmp_path / "m.onnx")
    with pytest.raises(DataError, match="no ONNX file at .*missing.onnx"):
        export_openvino(tmp_path / "missing.onnx", tmp_path / "m.xml")
    with pytest.raises(DataError, match=r"got shape \(8, 64, 128\)"):
        export_openvino(
            source,
            tmp_path / "m.xml",
            precision="int8",
            calibration_images=np.zeros((8, *SIZE), np.float32),
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="unknown OpenVINO hint 'FAST'"):
        OpenVINORunner(fp32_irs["segmenter"], hint="FAST")
    with pytest.raises(DataError, match="no OpenVINO model at"):
        OpenVINORunner(tmp_path / "none.xml")


def test_failed_int8_export_keeps_the_previous_ir(onnx_run, fp32_irs):
    ir = fp32_irs["classifier"]
    before = ir.read_bytes(), ir.with_suffix(".bin").read_bytes()
    with pytest.raises(ConfigError, match="unknown INT8 preset 'fast'"):
        export_openvino(
            onnx_file(onnx_run, "classifier"),
            ir,
            precision="int8",
            calibration_images=run_images(onnx_run, SIZE, 2),
            preset="fast",
        )
    assert (ir.read_bytes(), ir.with_suffix(".bin").read_bytes()) == before


def test_missing_openvino_is_one_line_naming_the_install():
    """In a real interpreter where `import openvino` fails (its module entry set to None)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from steel_keras.deploy.openvino import export_openvino, openvino_status\n"
        "print(openvino_status())\n"
        "try:\n    export_openvino(sys.argv[1], sys.argv[2])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, __file__, "/nonexistent/m.xml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    status, error = out.strip().splitlines()
    assert status.startswith("openvino is not installed (`import openvino` failed")
    assert "`pip install openvino nncf`" in status
    assert error == f"RuntimeUnavailableError {status}"
