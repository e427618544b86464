"""Deployment on real tiny models: ONNX and SavedModel exports, runners, predict, benchmark.

Run directories hold real, untrained models whose batch-norm statistics come from real images
(``steel_keras.deploy.demo``), at 64 x 128. Conversions run in real subprocesses. The default
run exports the separable U-Net and the small CNN classifier; the segmentation-models families,
the Xception U-Net and the keras.applications classifier are behind ``-m slow`` (each peaks near
5 GB converting). TensorRT and TF-TRT tests skip with the reason where they cannot run; the
messages for a missing TensorRT / TF-TRT are tested where they are missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steel_keras.cli import main
from steel_keras.deploy import (
    BARS,
    RUNTIMES,
    KerasRunner,
    OnnxRunner,
    Parity,
    SavedModelRunner,
    TFFunctionRunner,
    available_runtimes,
    load_runner,
    run_images,
)
from steel_keras.deploy.benchmark import latency_percentiles, throughput
from steel_keras.deploy.parity import dice_agreement, max_abs_difference
from steel_keras.errors import ConfigError, DataError, RuntimeUnavailableError, SteelKerasError
from steel_keras.rundir import run_models

SIZE = (64, 128)


def steel_keras(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steel_keras", *args], capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (TensorFlow's own log lines aside)."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("steel-keras ")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def demo_run(tiny_dataset, tmp_path_factory) -> Path:
    from steel_keras.deploy.demo import make_demo_run

    return make_demo_run(tmp_path_factory.mktemp("deploy") / "run", tiny_dataset, seg_size=SIZE)


@pytest.fixture(scope="module")
def onnx_run(demo_run) -> Path:
    """The demo run exported to ONNX through the command line (conversions in subprocesses)."""
    code = main(["export", "--run", str(demo_run), "--format", "onnx", "--batch", "2",
                 "--parity-images", "4"])
    assert code == 0
    return demo_run


@pytest.fixture(scope="module")
def savedmodel_run(onnx_run) -> Path:
    code = main(["export", "--run", str(onnx_run), "--format", "savedmodel", "--stage",
                 "segmenter", "--batch", "2", "--parity-images", "4"])
    assert code == 0
    return onnx_run


# ----- parity arithmetic ------------------------------------------------------------------------


def test_parity_max_diff_and_dice_agreement():
    parity = Parity()
    reference = np.array([[0.1, 0.6], [0.7, 0.49]], np.float32)
    parity.update(reference, reference + np.array([[0.0, 0.0], [0.0, 0.02]], np.float32))
    result = parity.result()
    assert result["max_abs_diff"] == pytest.approx(0.02, abs=1e-6)
    # Keras says {0.6, 0.7} are on; the other says {0.6, 0.7, 0.51}: Dice 2*2 / (2 + 3).
    assert result["dice_agreement"] == pytest.approx(0.8)
    assert result["within_bars"] is False


def test_parity_of_dict_outputs_and_empty_masks():
    parity = Parity()
    out = {"has_defect": np.zeros((2, 1)), "classes": np.full((2, 4), 0.2)}
    parity.update(out, {k: v + 1e-5 for k, v in out.items()})
    result = parity.result()
    assert result["dice_agreement"] == 1.0  # nothing on in either
    assert result["values"] == 10 and result["within_bars"]
    assert BARS == {"max_abs_diff": 1e-3, "dice_agreement": 0.999}


def test_parity_is_dice_agreement_and_max_abs_difference_over_all_batches():
    rng = np.random.default_rng(3)
    reference = [rng.random((2, 4, 6, 4)).astype(np.float32) for _ in range(3)]
    other = [r + rng.normal(scale=0.05, size=r.shape).astype(np.float32) for r in reference]
    parity = Parity()
    for r, o in zip(reference, other, strict=True):
        parity.update(r, o)
    result = parity.result()
    everything = np.concatenate([r.ravel() for r in reference]), np.concatenate(
        [o.ravel() for o in other])
    assert result["dice_agreement"] == pytest.approx(dice_agreement(*everything))
    assert result["max_abs_diff"] == max_abs_difference(*everything) > 0
    with pytest.raises(ValueError, match="differ in shape"):
        parity.update(reference[0], other[0][:1])


def test_benchmark_figures_from_latencies():
    seconds = np.array([0.010, 0.012, 0.011, 0.050])
    assert latency_percentiles(seconds, (50,)) == {50: pytest.approx(11.5)}
    assert throughput(8, seconds) == pytest.approx(32 / 0.083)
    with pytest.raises(ValueError):
        throughput(8, np.array([]))


# ----- export and runners -----------------------------------------------------------------------


def test_onnx_export_layout_checker_and_parity(onnx_run):
    import onnx

    for stage in ("classifier", "segmenter"):
        path = onnx_run / "export" / "onnx" / stage / "model.onnx"
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [*SIZE, 1]
        parity = json.loads((path.parent / "parity.json").read_text())["model"]
        assert parity["images"] == 4 and parity["precision"] == "fp32"
        assert parity["max_abs_diff"] <= 1e-3 and parity["dice_agreement"] >= 0.999
        assert parity["export"]["peak_rss_mb"] > 0
        assert (path.parent / "model.log").is_file()


def test_runners_agree_on_real_batches(savedmodel_run):
    seg = savedmodel_run / "segmenter" / "model.keras"
    x = run_images(savedmodel_run, SIZE, 3)  # an odd batch: the ONNX batch axis is free
    runners = [load_runner(seg, name) for name in ("keras", "tf_function", "savedmodel", "onnx")]
    assert [type(r) for r in runners] == [KerasRunner, TFFunctionRunner, SavedModelRunner,
                                          OnnxRunner]
    reference = runners[0].predict(x)
    assert reference.shape == (3, *SIZE, 4) and reference.dtype == np.float32
    assert 0.05 < reference.mean() < 0.95  # calibrated batch norm: not saturated
    for runner in runners[1:]:
        assert not hasattr(runner, "predict_on_batch")
        # TensorFlow runners run the same graph; ONNX Runtime computes the per-image
        # standardisation's moments its own way (differences of a few 1e-4 seen): the
        # project's parity bar, 1e-3.
        tolerance = 1e-3 if isinstance(runner, OnnxRunner) else 1e-4
        np.testing.assert_allclose(runner.predict(x), reference, atol=tolerance)


def test_savedmodel_parity_recorded(savedmodel_run):
    parity = json.loads(
        (savedmodel_run / "export/savedmodel/segmenter/parity.json").read_text())["model"]
    assert parity["max_abs_diff"] <= 1e-5 and parity["dice_agreement"] == 1.0
    assert (savedmodel_run / "export/savedmodel/segmenter/model/saved_model.pb").is_file()


def test_onnx_predictor_matches_keras_predictor(onnx_run, tiny_dataset):
    from steel_keras.data import open_dataset
    from steel_keras.runs import load_run

    ds = open_dataset(tiny_dataset)
    ids = ds.test_image_ids[:4]
    keras_probs = load_run(onnx_run, runtime="keras", batch_size=2).probabilities(ds, ids)
    onnx_probs = load_run(onnx_run, runtime="onnx", batch_size=2).probabilities(ds, ids)
    np.testing.assert_allclose(onnx_probs.masks, keras_probs.masks, atol=1e-3)  # the bar
    np.testing.assert_allclose(onnx_probs.gate, keras_probs.gate, atol=1e-5)


def test_predict_runtime_onnx_writes_a_submission(onnx_run, tiny_dataset, tmp_path):
    import pandas as pd

    out = tmp_path / "submission.csv"
    assert main(["predict", "--run", str(onnx_run), "--runtime", "onnx", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    test_ids = sorted(p.name for p in (tiny_dataset / "test_images").iterdir())
    assert sorted(set(table["ImageId"])) == test_ids


def copy_run(run: Path, to: Path) -> Path:
    """The run's config and Keras files without its exports."""
    import shutil

    to.mkdir()
    shutil.copy(run / "config.json", to / "config.json")
    for stage in ("classifier", "segmenter"):
        shutil.copytree(run / stage, to / stage)
    return to


def test_missing_export_says_which_command_makes_it(demo_run, tmp_path):
    bare = copy_run(demo_run, tmp_path / "bare")
    seg = bare / "segmenter" / "model.keras"
    with pytest.raises(DataError, match=r"run `steel-keras export --run .*bare --format onnx`"):
        load_runner(seg, "onnx")
    with pytest.raises(ConfigError, match="unknown runtime 'onnnx'"):
        load_runner(seg, "onnnx")
    with pytest.raises(DataError, match="not RUN_DIR/classifier"):
        load_runner(bare / "config.json", "onnx")


def test_run_models_and_missing_data_folder(demo_run, tmp_path):
    assert [m.name for m in run_models(demo_run)] == ["classifier/model", "segmenter/model"]
    assert RUNTIMES["tensorrt"].export_path(run_models(demo_run)[1]) == (
        demo_run / "export" / "tensorrt" / "segmenter" / "model.engine")
    assert RUNTIMES["onnx_int8"].export_path(run_models(demo_run)[0]) == (
        demo_run / "export" / "onnx_int8" / "classifier" / "model.onnx")
    bare = copy_run(demo_run, tmp_path / "moved")
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone")}))
    with pytest.raises(DataError, match="data folder .*gone does not exist; pass --data"):
        run_images(bare, SIZE, 2)


def test_export_subprocess_errors_come_back_as_one_line(tmp_path):
    from steel_keras.deploy.export import run_worker

    log = tmp_path / "model.log"
    with pytest.raises(SteelKerasError, match=r"^unknown precision 'int9': choose fp32"):
        run_worker("tftrt", log, source=str(tmp_path), out=str(tmp_path / "out"),
                   precision="int9")
    assert log.read_text().startswith("error: unknown precision")
    with pytest.raises(SteelKerasError) as info:  # a bug in the subprocess: the log has it
        run_worker("tensorrt", log, onnx_path="model.onnx", out="model.engine")
    message = str(info.value)
    assert "the tensorrt export subprocess failed (exit code 1)" in message
    assert "missing 1 required positional argument: 'source'" in message and str(log) in message
    assert "Traceback" in log.read_text() and "\n" not in message


def test_export_option_errors_are_one_line(demo_run):
    one = one_error_line(steel_keras("export", "--run", str(demo_run), "--format", "onnx",
                                     "--precision", "fp16"))
    assert "--format onnx takes --precision fp32 or int8, not 'fp16'" in one
    one = one_error_line(steel_keras("export", "--run", str(demo_run / "nope"), "--format",
                                     "onnx"))
    assert "does not exist" in one


# ----- TensorRT and TF-TRT where they are missing -----------------------------------------------


def test_available_runtimes_gives_reasons():
    status = available_runtimes()
    assert status["keras"] is None and status["tf_function"] is None
    assert status["onnx"] is None and status["savedmodel"] is None
    for name in ("tensorrt", "tftrt"):
        assert status[name] is None or isinstance(status[name], str)


def test_export_tensorrt_without_tensorrt_is_one_clear_line(demo_run):
    from steel_keras.deploy.tensorrt import tensorrt_status

    if tensorrt_status() is None:
        pytest.skip("TensorRT and a GPU are available here: the missing-TensorRT message "
                    "cannot show")
    result = steel_keras("export", "--run", str(demo_run), "--format", "tensorrt",
                         "--precision", "fp16")
    line = one_error_line(result)
    assert line.startswith("steel-keras export: error: ")
    if "import tensorrt" in line:  # not installed (rather than installed without a GPU)
        assert "pip install tensorrt --extra-index-url https://pypi.nvidia.com" in line
        assert "NVIDIA GPU" in line
    assert "--format onnx" in line
    assert not (demo_run / "export" / "tensorrt").exists()


def test_tensorrt_runtime_without_tensorrt_raises_the_same_reason(onnx_run):
    from steel_keras.deploy.tensorrt import tensorrt_status

    reason = tensorrt_status()
    if reason is None:
        pytest.skip("TensorRT and a GPU are available here")
    with pytest.raises(RuntimeUnavailableError) as info:
        load_runner(onnx_run / "segmenter" / "model.keras", "tensorrt")
    assert str(info.value) == reason and "\n" not in reason


def test_export_tftrt_without_tensorrt_build_is_one_clear_line(demo_run):
    from steel_keras.deploy.tftrt import tftrt_status

    if tftrt_status() is None:
        pytest.skip("this TensorFlow was built with TensorRT")
    line = one_error_line(steel_keras("export", "--run", str(demo_run), "--format", "tftrt"))
    assert "TensorFlow 2.17 or older" in line and "nvcr.io/nvidia/tensorflow" in line
    assert "--format onnx" in line


def test_tftrt_converter_runtime_error_becomes_the_message(savedmodel_run, tmp_path):
    """The real TrtGraphConverterV2 on a real SavedModel: TF 2.18+ raises RuntimeError."""
    from steel_keras.deploy.tftrt import convert_tftrt, tftrt_status

    if tftrt_status() is None:
        pytest.skip("this TensorFlow was built with TensorRT: see test_tftrt_conversion")
    saved = savedmodel_run / "export" / "savedmodel" / "segmenter" / "model"
    with pytest.raises(RuntimeUnavailableError, match="TensorFlow 2.17 or older"):
        convert_tftrt(saved, tmp_path / "tftrt", precision="fp16", batch=2)
    assert not (tmp_path / "tftrt").exists()


# ----- TensorRT and TF-TRT where they can run (an NVIDIA GPU) -----------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_keras(onnx_run, precision):
    from steel_keras.deploy import export_run
    from steel_keras.deploy.tensorrt import tensorrt_status

    reason = tensorrt_status()
    if reason:
        pytest.skip(reason)
    result = export_run(onnx_run, "tensorrt", precision=precision, batch=2, parity_images=4)
    meta = json.loads((onnx_run / "export/tensorrt/segmenter/model.json").read_text())
    assert meta["precision"] == precision and meta["batch"]["max"] == 2
    parity = result.parity["segmenter/model"]
    assert parity["max_abs_diff"] <= (1e-3 if precision == "fp32" else 2e-2)
    assert parity["dice_agreement"] >= (0.999 if precision == "fp32" else 0.99)


def test_tftrt_conversion_matches_keras(savedmodel_run):
    from steel_keras.deploy import export_run
    from steel_keras.deploy.tftrt import tftrt_status

    reason = tftrt_status()
    if reason:
        pytest.skip(reason)
    result = export_run(savedmodel_run, "tftrt", batch=2, parity_images=4,
                        stages=("segmenter",))
    assert result.parity["segmenter/model"]["max_abs_diff"] <= 1e-3


# ----- benchmark --------------------------------------------------------------------------------


def test_benchmark_command_times_runtimes_and_lists_skipped(onnx_run, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--run", str(onnx_run), "--runtimes", "onnx,tf_bf16,tensorrt",
                 "--batch", "2", "--iterations", "3", "--warmup", "0", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["runtime"]: r for r in result["results"]}
    assert list(rows) == ["keras", "onnx", "tf_bf16", "tensorrt"]  # keras always: reference
    # The CPU's relevant features, since they decide which runtime is fastest (Linux here).
    assert isinstance(result["machine"]["cpu_features"], list)
    # bfloat16: close to Keras, not equal.
    assert 0 < rows["tf_bf16"]["max_abs_diff"] < 0.3 and rows["tf_bf16"]["dice_agreement"] > 0.9
    for name in ("keras", "onnx", "tf_bf16"):
        row = rows[name]
        assert row["status"] == "ok" and row["timed_batches"] == 3
        assert row["throughput_ips"] > 0 and row["latency_p95_ms"] >= row["latency_p50_ms"]
        assert 0 < row["rss_delta_mb"] < row["peak_rss_mb"]
    assert rows["keras"]["speedup_vs_keras"] == 1.0 and rows["keras"]["max_abs_diff"] == 0.0
    assert rows["onnx"]["max_abs_diff"] <= 1e-3 and rows["onnx"]["dice_agreement"] >= 0.999
    # ONNX Runtime alone does not need TensorFlow: far less memory than Keras.
    assert rows["onnx"]["peak_rss_mb"] < rows["keras"]["peak_rss_mb"]
    if rows["tensorrt"]["status"] == "skipped":
        assert "TensorRT" in rows["tensorrt"]["reason"]
    table = capsys.readouterr().out
    assert "| segmenter/model | onnx |" in table and "Not measured:" in table


def test_benchmark_skips_runtimes_whose_export_is_missing(demo_run, tmp_path):
    from steel_keras.deploy import benchmark_run
    from steel_keras.deploy.benchmark import _skip_reason

    bare = copy_run(demo_run, tmp_path / "bare")
    seg = run_models(bare, ("segmenter",))[0]
    status = {"savedmodel": None, "tensorrt": "TensorRT is not installed"}
    assert "--format savedmodel` first" in _skip_reason(seg, "savedmodel", status)
    assert _skip_reason(seg, "tensorrt", status) == "TensorRT is not installed"
    with pytest.raises(ConfigError, match="unknown runtime 'xla'"):
        benchmark_run(bare, ["xla"])


# ----- every model family (slow: each conversion peaks near 5 GB) -------------------------------


FAMILIES = [
    ("unet", "resnet18", SIZE),
    ("fpn", "resnet18", SIZE),
    ("linknet", "resnet18", SIZE),
    ("unet_xception", None, (96, 128)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "backbone", "size"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_segmenter_family_onnx_parity(arch, backbone, size, tiny_dataset, tmp_path):
    from steel_keras.deploy import export_run
    from steel_keras.deploy.demo import make_demo_run

    run = make_demo_run(tmp_path / arch, tiny_dataset, arch=arch, backbone=backbone,
                        seg_size=size, classifier=None)
    result = export_run(run, "onnx", batch=2, parity_images=4)
    parity = result.parity["segmenter/model"]
    assert parity["max_abs_diff"] <= 1e-3 and parity["dice_agreement"] >= 0.999
    x = run_images(run, size, 2)
    runner = load_runner(run / "segmenter" / "model.keras", "onnx")
    assert runner.predict(x).shape == (2, *size, 4)


@pytest.mark.slow
def test_export_refuses_a_model_of_another_size(demo_run, tmp_path):
    from steel_keras.deploy.export import run_worker

    with pytest.raises(SteelKerasError, match=r"takes 64 x 128 images but the run's config "
                                              r"says 32 x 64"):
        run_worker("onnx", tmp_path / "model.log",
                   source=str(demo_run / "segmenter" / "model.keras"),
                   out=str(tmp_path / "model.onnx"), image_size=[32, 64], opset=17)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "multilabel"), [("mobilenetv2", False),
                                                      ("small_cnn", True)])
def test_classifier_onnx_parity(backbone, multilabel, tiny_dataset, tmp_path):
    from steel_keras.deploy import export_run
    from steel_keras.deploy.demo import make_demo_run

    run = make_demo_run(tmp_path / backbone, tiny_dataset, classifier=backbone,
                        multilabel=multilabel, seg_size=SIZE)
    result = export_run(run, "onnx", batch=2, parity_images=4, stages=("classifier",))
    parity = result.parity["classifier/model"]
    assert parity["max_abs_diff"] <= 1e-3 and parity["dice_agreement"] >= 0.999
    out = load_runner(run / "classifier" / "model.keras", "onnx").predict(run_images(run, SIZE, 2))
    if multilabel:
        assert {k: v.shape for k, v in out.items()} == {"has_defect": (2, 1), "classes": (2, 4)}
    else:
        assert out.shape == (2, 1)


# ----- INT8 ONNX (ONNX Runtime static quantisation) ----------------------------------------------


@pytest.fixture(scope="module")
def int8_run(onnx_run) -> Path:
    code = main(["export", "--run", str(onnx_run), "--format", "onnx", "--precision", "int8",
                 "--batch", "2", "--parity-images", "4", "--calibration-images", "6"])
    assert code == 0
    return onnx_run


def test_onnx_int8_export_is_quantised_checked_and_compared(int8_run):
    import onnx

    path = int8_run / "export" / "onnx_int8" / "segmenter" / "model.onnx"
    onnx.checker.check_model(str(path))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 10
    fp32 = int8_run / "export" / "onnx" / "segmenter" / "model.onnx"
    assert path.stat().st_size < fp32.stat().st_size / 2  # 8-bit weights
    record = json.loads((path.parent / "parity.json").read_text())["model"]
    assert record["precision"] == "int8" and record["export"]["calibration_images"] == 6
    assert record["images"] == 4 and record["max_abs_diff"] > 0  # an approximation, reported
    # ... of the same model: on this untrained demo network, calibrated on 6 images, the
    # masks agree at Dice 0.96 (seen on an AVX2 CPU without VNNI with the 7-bit weights, and on
    # one with AVX512-VNNI with 8-bit weights); a broken quantisation gives noise. (Without
    # VNNI, 8-bit weights saturate the integer kernels: Dice 0.86, mean |diff| 0.19: fails.)
    assert record["mean_abs_diff"] < 0.1 and record["dice_agreement"] > 0.8


def test_onnx_int8_runner_and_predict_runtime(int8_run, tiny_dataset, tmp_path):
    from steel_keras.deploy.runners import OnnxInt8Runner

    seg = int8_run / "segmenter" / "model.keras"
    runner = load_runner(seg, "onnx_int8")
    assert isinstance(runner, OnnxInt8Runner) and runner.runtime == "onnx_int8"
    x = run_images(int8_run, SIZE, 3)
    y, reference = runner.predict(x), KerasRunner(load_runner(seg, "keras").model).predict(x)
    assert y.shape == reference.shape and y.dtype == np.float32
    assert float(np.abs(y - reference).mean()) < 0.1
    out = tmp_path / "submission.csv"
    assert main(["predict", "--run", str(int8_run), "--data", str(tiny_dataset), "--out",
                 str(out), "--runtime", "onnx_int8"]) == 0
    assert out.is_file()


def test_missing_int8_export_names_the_precision_flag(demo_run, tmp_path):
    bare = copy_run(demo_run, tmp_path / "bare")
    with pytest.raises(DataError, match="--format onnx --precision int8` first"):
        load_runner(bare / "segmenter" / "model.keras", "onnx_int8")


# ----- ONNX numerics: means over whole images ----------------------------------------------------


def test_standardisation_exports_exactly_at_full_size(tmp_path):
    """ONNX Runtime's ReduceMean over 409,600 float32 pixels drifts by ~1e-4 of the mean; the
    per-image standardisation divides that by a small standard deviation. The exporter splits
    the reduction per axis, which keeps the standardised image within float32 noise."""
    import keras
    import onnxruntime as ort

    from steel_keras.deploy.export import convert_onnx
    from steel_keras.models._inputs import standardize_image

    inputs = keras.Input((256, 1600, 1))
    keras.Model(inputs, standardize_image(inputs)).save(tmp_path / "std.keras")
    info = convert_onnx(tmp_path / "std.keras", tmp_path / "std.onnx", image_size=(256, 1600))
    assert info["split_reductions"] == 2  # the mean and the variance
    rng = np.random.default_rng(0)  # bright steel, small spread: mean 0.3, std 0.05
    x = np.clip(0.3 + 0.05 * rng.standard_normal((2, 256, 1600, 1)), 0, 1).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "std.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(1, 2, 3), keepdims=True), x64.var(axis=(1, 2, 3), keepdims=True)
    exact = (x64 - mean) / np.sqrt(var + 1e-6)
    assert np.abs(got - exact).max() < 2e-5


@pytest.mark.parametrize("opset", [17, 18])
def test_split_reductions_keeps_the_value(opset):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from steel_keras.deploy.export import split_reductions

    if opset >= 18:  # axes are an input
        initializers = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
                        numpy_helper.from_array(np.array([1, 2], np.int64), "axes2")]
        node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=1)
        keep = helper.make_node("ReduceMean", ["x", "axes2"], ["z"], name="flat", keepdims=0)
    else:
        initializers = []
        node = helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1, 2, 3])
        keep = helper.make_node("ReduceMean", ["x"], ["z"], name="flat", axes=[1, 2],
                                keepdims=0)
    graph = helper.make_graph(
        [node, keep], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64, 96, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 1, 1]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    x = np.random.default_rng(1).random((2, 64, 96, 3), dtype=np.float32)

    def run(m):
        session = ort.InferenceSession(m.SerializeToString())
        return session.run(None, {"x": x})

    before = run(model)
    assert split_reductions(model) == 1  # keepdims=0 is left alone
    onnx.checker.check_model(model)
    ops = [(n.op_type, n.name) for n in model.graph.node]
    assert [name for _, name in ops] == ["mean__axis3", "mean__axis2", "mean__axis1", "flat"]
    after = run(model)
    np.testing.assert_allclose(after[0], x.mean(axis=(1, 2, 3), keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5)
    np.testing.assert_array_equal(after[1], before[1])


def test_the_command_line_offers_exactly_the_registry():
    """One registry: the choices of export, predict and benchmark are read from it."""
    from steel_keras.cli import build_parser
    from steel_keras.deploy.registry import export_formats, precisions

    verbs = build_parser()._subparsers._group_actions[0].choices

    def choices(verb: str, dest: str) -> list[str]:
        return next(a.choices for a in verbs[verb]._actions if a.dest == dest)

    assert list(choices("predict", "runtime")) == list(RUNTIMES)
    assert list(choices("export", "fmt")) == export_formats()
    assert list(choices("export", "precision")) == precisions()
    runtimes = next(a for a in verbs["benchmark"]._actions if a.dest == "runtimes")
    assert runtimes.default == list(RUNTIMES)
    assert set(export_formats()) == {r.export_format for r in RUNTIMES.values() if r.exported}
    for runtime in RUNTIMES.values():  # every entry names code that exists
        from steel_keras.deploy.registry import resolve

        for ref in (runtime.runner, runtime.status, runtime.convert, runtime.check_precision):
            if ref:
                assert callable(resolve(ref)), (runtime.name, ref)
        assert runtime.source is None or RUNTIMES[runtime.source].exported


# ----- bfloat16 (tf_bf16) ------------------------------------------------------------------------


def test_bfloat16_copy_keeps_weights_and_float32_where_needed(demo_run):
    import keras

    from steel_keras.deploy.bf16 import bfloat16_model
    from steel_keras.models import load_model

    model = load_model(demo_run / "segmenter" / "model.keras", compile=False)
    copy = bfloat16_model(model)
    policies = {layer.name: layer.dtype_policy.name for layer in copy.layers}
    assert policies["image_standardize"] == "float32"  # a mean over the whole image
    assert policies[copy.layers[-1].name] == "float32"  # the probabilities
    convs = [layer for layer in copy.layers if isinstance(layer, keras.layers.SeparableConv2D)]
    assert convs and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convs)
    for mine, theirs in zip(copy.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    x = run_images(demo_run, SIZE, 3)
    y, reference = np.asarray(copy(x)), np.asarray(model(x))
    assert y.dtype == np.float32 and y.shape == reference.shape
    # bfloat16 keeps ~3 significant digits: close on average, not equal. Seen on this untrained
    # network: max 0.13, mean 0.003 on a CPU with AVX512-BF16; max 0.23, mean 0.011 on an AVX2
    # CPU, where TensorFlow emulates bfloat16. A copy left in float32 would be equal.
    diff = np.abs(y - reference)
    assert 0 < diff.max() < 0.4 and diff.mean() < 0.03


def test_bfloat16_copy_of_a_multilabel_classifier_has_float32_heads(tiny_dataset):
    from steel_keras.deploy.bf16 import bfloat16_model
    from steel_keras.models import build_classifier

    model = build_classifier("small_cnn", input_shape=(*SIZE, 1), multilabel=True)
    copy = bfloat16_model(model)
    x = np.random.default_rng(0).random((2, *SIZE, 1)).astype(np.float32)
    out, reference = copy(x), model(x)
    assert set(out) == set(reference) == {"has_defect", "classes"}
    for name in out:
        assert out[name].dtype == "float32"
        np.testing.assert_allclose(np.asarray(out[name]), np.asarray(reference[name]), atol=0.02)


def test_tf_bf16_runner_and_predict_runtime(demo_run, tiny_dataset, tmp_path):
    from steel_keras.deploy import BFloat16Runner

    seg = demo_run / "segmenter" / "model.keras"
    runner = load_runner(seg, "tf_bf16")
    assert isinstance(runner, BFloat16Runner) and runner.runtime == "tf_bf16"
    x = run_images(demo_run, SIZE, 3)
    y, reference = runner.predict(x), load_runner(seg, "keras").predict(x)
    assert y.shape == reference.shape and y.dtype == np.float32
    parity = Parity()
    parity.update(reference, y)
    assert parity.result()["dice_agreement"] > 0.97
    out = tmp_path / "submission.csv"
    assert main(["predict", "--run", str(demo_run), "--data", str(tiny_dataset), "--out",
                 str(out), "--runtime", "tf_bf16"]) == 0
    assert out.is_file()


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse avx2 avx512f avx512_bf16", "avx512_bf16"),
    ("fpu avx512_bf16 amx_bf16 amx_tile", "amx_bf16"),
    ("fpu sse avx2", None),
])
def test_cpu_bf16_support_reads_the_flags(tmp_path, flags, expected):
    from steel_keras.deploy.bf16 import cpu_bf16_support

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    assert cpu_bf16_support(cpuinfo) == expected
    assert cpu_bf16_support(tmp_path / "missing") is None


def test_tf_bf16_warns_only_on_a_cpu_without_native_bfloat16(tmp_path):
    from steel_keras.deploy.bf16 import emulation_warning

    avx2, bf16 = tmp_path / "avx2", tmp_path / "bf16"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    message = emulation_warning(avx2)
    assert message.startswith("tf_bf16: this CPU has neither AVX512-BF16 nor AMX")
    assert "tf_function" in message
    assert emulation_warning(bf16) is None
    assert emulation_warning(tmp_path / "missing") is None  # unknown: say nothing


def test_cpu_description_names_the_features_that_pick_the_fastest_runtime(tmp_path):
    from steel_keras.deploy.benchmark import _cpu_words, cpu_description

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma "
                       "avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\nmodel name\t: "
                       "AMD EPYC\nflags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16\n")
    info = cpu_description(cpuinfo)
    assert info == {"cpu_model": "AMD EPYC",
                    "cpu_features": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]}
    assert _cpu_words({"cpu_cores": 2, **info}) == (
        "2 CPU cores (AMD EPYC; avx2, avx512f, avx512_vnni, avx512_bf16)")
    unknown = cpu_description(tmp_path / "missing")
    assert unknown == {"cpu_model": None, "cpu_features": None}
    assert _cpu_words({"cpu_cores": 2, **unknown}) == "2 CPU cores"
