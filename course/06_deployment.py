# %% [markdown]
# # Chapter 6: Deployment: SavedModel, ONNX, TensorRT, and how fast each runs
#
# **What you will learn:** how to take a trained Keras model out of Python's training world:
# a TensorFlow SavedModel and an ONNX file, exported by hand and then with
# `steel_keras.deploy`; how to check that an export computes what the Keras model computes
# (the parity check); what TensorRT and TF-TRT add on an NVIDIA GPU, with code that runs where
# they are installed and says clearly why it is skipped where they are not; and a runtime
# benchmark, by hand and from the library, with its table and a plot.
#
# **Run time:** a few minutes on a laptop CPU when chapter 5's trained run is there to reuse,
# a few more when this chapter trains its own. **Hardware:** a CPU; the TensorRT and TF-TRT
# cells run only on an NVIDIA GPU with those installed.
#
# **Exercises:** `exercises/ch06_deployment.py` (max absolute difference, Dice agreement,
# latency percentiles, throughput); check them with
# `steel-keras grade --chapter 6 --path exercises`.

# %% [markdown]
# ## Setup: a run to deploy
#
# The deployment tools work on a run directory, as `steel-keras baseline` or chapter 5 write
# it. This chapter reuses chapter 5's run when it is there, and trains the library's
# `quick-cpu` run otherwise. In smoke mode (`STEEL_KERAS_SMOKE=1`, CI) it uses an untrained
# run instead (`steel_keras.deploy.demo.make_demo_run`: fresh networks whose batch-norm
# statistics are set from real images, so their probabilities spread out like a trained
# model's): exporting and timing a model do not depend on what it learned.

# %%
# %matplotlib inline
import shutil
import time

import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import tensorflow as tf
import tf2onnx
from IPython.display import Markdown, display

from steel_keras.chapters import SMOKE, course_data, pick, work_dir
from steel_keras.data import SteelDataset
from steel_keras.deploy import (
    Parity,
    available_runtimes,
    benchmark_run,
    export_run,
    load_runner,
    markdown_report,
    run_images,
)
from steel_keras.deploy.benchmark import latency_percentiles, throughput
from steel_keras.deploy.bf16 import cpu_bf16_support
from steel_keras.deploy.demo import make_demo_run
from steel_keras.deploy.parity import dice_agreement, max_abs_difference
from steel_keras.metrics.competition import competition_dice
from steel_keras.models import load_model
from steel_keras.paths import default_runs_dir
from steel_keras.runs import load_run
from steel_keras.train import train_classifier, train_segmenter

# TensorFlow logs each SavedModel it writes and warns when a model sees a new batch size;
# harmless here, and it would bury the outputs.
tf.get_logger().setLevel("ERROR")
BATCH = pick(full=8, smoke=2)
ITERATIONS = pick(full=10, smoke=2)
BENCHMARK_RUNTIMES = pick(full=None, smoke=["keras", "onnx", "onnx_int8"])  # None: all
EXPORTS = pick(full=[("onnx", ("classifier", "segmenter")), ("savedmodel", ("segmenter",))],
               smoke=[("onnx", ("classifier", "segmenter"))])  # each export is a subprocess

ds = SteelDataset(course_data())
work = work_dir("06_deployment")
run = work / "run"
chapter5_run = default_runs_dir() / "course" / "05_two_stage_pipeline" / "run"
if SMOKE:
    make_demo_run(run, ds.root, seg_size=(32, 192))
    origin = "an untrained, batch-norm calibrated demo run (smoke mode)"
elif (chapter5_run / "segmenter" / "model.keras").is_file():
    shutil.copytree(chapter5_run, run, ignore=shutil.ignore_patterns("export", "evaluation"))
    origin = f"chapter 5's trained run, copied from {chapter5_run}"
else:
    train_classifier(ds, run, recipe="quick-cpu", overrides={"verbose": 0})
    train_segmenter(ds, run, recipe="quick-cpu", overrides={"verbose": 0})
    origin = "the quick-cpu recipe, trained here"
segmenter_path = run / "segmenter" / "model.keras"
segmenter = load_model(segmenter_path, compile=False)
size = tuple(segmenter.input_shape[1:3])
images = run_images(run, size, BATCH)  # real validation images, as the model takes them
print(f"deploying {origin}: segmenter input {segmenter.input_shape}, "
      f"{segmenter.count_params():,} weights")

# %% [markdown]
# ## 1. A SavedModel, by hand
#
# A SavedModel is TensorFlow's own format: the computation as a graph plus the weights, in a
# folder that TensorFlow Serving, TensorFlow Lite's converter, TF-TRT and any TensorFlow
# program can load without the Python code that built the model. Keras 3 writes one with
# `model.export(path, format="tf_saved_model")`; its `serve` function is the inference call.

# %%
saved = work / "by_hand" / "segmenter_savedmodel"
segmenter.export(str(saved), format="tf_saved_model", verbose=False)
print(sorted(p.name for p in saved.iterdir()))
reloaded = tf.saved_model.load(str(saved))
keras_out = np.asarray(segmenter.predict(images, verbose=0))
saved_out = reloaded.serve(tf.constant(images)).numpy()
print(f"SavedModel vs Keras: max |difference| {np.abs(saved_out - keras_out).max():.2e}")

# %% [markdown]
# ## 2. ONNX, by hand
#
# ONNX is a framework-neutral format: a graph of standard operators (the *opset* fixes their
# definitions) with the weights inside. ONNX Runtime runs it on CPUs and GPUs without
# TensorFlow, and TensorRT builds its engines from it. `tf2onnx` converts a Keras model given
# an input signature: here the height and width fixed at the model's size, the batch free
# (`None`), so one file serves any batch.

# %%
signature = (tf.TensorSpec((None, *size, 1), tf.float32, name="image"),)
onnx_model, _ = tf2onnx.convert.from_keras(segmenter, input_signature=signature, opset=17)
onnx.checker.check_model(onnx_model)
graph_input = onnx_model.graph.input[0]
print("input:", graph_input.name, [d.dim_param or d.dim_value
                                   for d in graph_input.type.tensor_type.shape.dim])
print("operators used:", sorted({node.op_type for node in onnx_model.graph.node})[:12], "...")
session = ort.InferenceSession(onnx_model.SerializeToString(),
                               providers=["CPUExecutionProvider"])
onnx_out = session.run(None, {"image": images})[0]

# %% [markdown]
# ## 3. The parity check
#
# An export is only useful if it computes the same thing. Two numbers say how close: the
# **largest absolute difference** between the two models' probabilities, and the **Dice
# agreement** of the masks both give at 0.5 (1 where both masks are identical). Float32 maths
# in a different order is not bit-identical, so the difference is small rather than zero; the
# library's bars for an FP32 export are a difference of at most 1e-3 and an agreement of at
# least 0.999. For one pair of outputs, the library's `max_abs_difference` and
# `dice_agreement`; over many batches, its `Parity`:

# %%
parity = Parity()
parity.update(keras_out, onnx_out)
print(f"max |difference| {max_abs_difference(keras_out, onnx_out):.2e}, "
      f"Dice agreement {dice_agreement(keras_out, onnx_out):.6f}")
print({k: v for k, v in parity.result().items() if k in ("max_abs_diff", "dice_agreement",
                                                         "within_bars")})

# %% [markdown]
# ## 4. The library's exports
#
# `export_run` exports every model of a run, each conversion in a fresh subprocess (a
# full-size conversion can take several GB, and a process that already ran inference has
# been seen to take much more), then runs the parity check on real validation images and
# writes `parity.json` beside the files. `steel-keras export --run RUN --format onnx` is the
# same on the command line. (Smoke mode skips the SavedModel export here: section 1 made one.)

# %%
exports = {}
for fmt, stages in EXPORTS:
    result = export_run(run, fmt, batch=BATCH, parity_images=BATCH, stages=stages)
    for name, path in result.files.items():
        exports[(fmt, name)] = {"file": str(path.relative_to(run)),
                                "seconds": result.seconds[name],
                                **{k: result.parity[name][k] for k in
                                   ("max_abs_diff", "dice_agreement", "within_bars")}}
print(pd.DataFrame(exports).T.to_string())

# %% [markdown]
# The whole two-stage pipeline of chapter 5 then runs on ONNX Runtime, with no TensorFlow in
# the loop: the same two-stage predictor, loaded with `load_run(run, runtime="onnx")` (what
# `steel-keras predict --runtime onnx` does). Its masks must agree with the Keras pipeline's:
# scored with the competition metric against the Keras masks as if they were the truth, 1
# means identical.

# %%
test_ids = ds.test_image_ids[:pick(full=16, smoke=4)]
keras_masks = load_run(run).predict(ds, test_ids, split="test")
onnx_masks = load_run(run, runtime="onnx").predict(ds, test_ids, split="test")
agreement = competition_dice(onnx_masks, keras_masks, image_ids=test_ids)
print(f"{len(test_ids)} test images: Keras pipeline {len(keras_masks.table)} masks, ONNX "
      f"pipeline {len(onnx_masks.table)} masks; agreement {agreement.competition_dice:.6f}")

# %% [markdown]
# ### INT8 on the CPU
#
# ONNX Runtime can also *quantise* a model: weights and activations stored as 8-bit integers,
# each with a scale (per output channel for the weights), the activations' ranges measured on
# real calibration images. On CPUs with integer dot-product instructions (AVX-512 VNNI,
# AVX-VNNI) the convolutions then run faster than in FP32; the price is an approximation, so
# the parity check matters more here, not less. `steel-keras export --format onnx --precision
# int8` does it, and the runtime `onnx_int8` runs it:

# %%
int8 = export_run(run, "onnx", precision="int8", batch=BATCH, parity_images=BATCH,
                  calibration_images=pick(full=32, smoke=8), stages=("segmenter",))
for name, p in int8.parity.items():
    print(f"{name} INT8 vs Keras: max |diff| {p['max_abs_diff']:.4f}, mean |diff| "
          f"{p['mean_abs_diff']:.5f}, Dice agreement {p['dice_agreement']:.4f} "
          "(the FP32 bars: 1e-3 and 0.999)")

# %% [markdown]
# ### bfloat16 on the CPU
#
# A third way to trade precision for speed needs no export at all. *bfloat16* keeps float32's
# exponent and 8 bits of its mantissa (about 3 significant digits); CPUs with AVX512-BF16 or
# AMX multiply such numbers at about twice the float32 rate, and TensorFlow uses them. The
# runtime `tf_bf16` rebuilds the Keras model with the `mixed_bfloat16` policy (weights stay
# float32, layers compute in bfloat16), except the per-image standardisation (a mean over a
# whole image) and the output layer, which stay float32. Where the CPU lacks those
# instructions TensorFlow emulates them and `tf_bf16` is *slower* than float32 (on a 2-core AVX2
# CPU at full size: 0.92x the float32 `tf_function` for the sm Unet, 0.16x for the separable
# U-Net), and `load_runner` warns. Which runtime is fastest depends on the CPU: on that AVX2
# machine it was ONNX Runtime in float32 (about 2x `model.predict`), on one with AVX512-BF16
# `tf_bf16` (1.9x to 2.4x). Measure on the machine you deploy to (`steel-keras benchmark`).

# %%
print("native bfloat16 on this CPU:", cpu_bf16_support() or "no (emulated: expect it slower)")
bf16_runner = load_runner(segmenter_path, "tf_bf16")
bf16_parity = Parity()
bf16_parity.update(segmenter.predict(images, verbose=0), bf16_runner.predict(images))
record = bf16_parity.result()
print(f"bfloat16 vs Keras: max |diff| {record['max_abs_diff']:.4f}, "
      f"Dice agreement {record['dice_agreement']:.4f}")

# %% [markdown]
# ## 5. TensorRT and TF-TRT
#
# On an NVIDIA GPU, **TensorRT** compiles a network into an *engine* for that GPU: it fuses
# layers (a convolution, its batch norm and its ReLU become one kernel), picks the fastest
# kernel for each layer by timing them, and can compute in FP16, or INT8 after calibrating on
# real images. An engine is built from the ONNX file (`export_run(run, "tensorrt")`), for one
# GPU model and TensorRT version, with a range of batch sizes.
#
# **TF-TRT** does the same from inside TensorFlow: it replaces the parts of a SavedModel that
# TensorRT supports by TensorRT engines and leaves the rest to TensorFlow. It needs a
# TensorFlow built with TensorRT, which pip's TensorFlow has not been since 2.18 (use 2.17 or
# NVIDIA's TensorFlow container).
#
# Which runtimes can run here, and why not where they cannot:

# %%
status = available_runtimes()
for runtime, reason in status.items():
    print(f"{runtime:>12}: {'available' if reason is None else 'skipped: ' + reason}")

# %% [markdown]
# Where TensorRT or TF-TRT is available, the cell below builds the FP16 exports and checks
# them; elsewhere it prints the reason and moves on (use ONNX Runtime there, as above). FP16
# halves the precision, so expect larger differences than FP32's, and judge them by the Dice
# agreement of the masks.

# %%
for fmt in ("tensorrt", "tftrt"):
    if status[fmt] is not None:
        print(f"{fmt}: skipped here. {status[fmt]}")
        continue
    result = export_run(run, fmt, precision="fp16", batch=BATCH, parity_images=BATCH,
                        stages=("segmenter",))
    for name, record in result.parity.items():
        print(f"{fmt} fp16 {name}: max |difference| {record['max_abs_diff']:.2e}, "
              f"Dice agreement {record['dice_agreement']:.4f}")

# %% [markdown]
# ## 6. How fast: a benchmark by hand
#
# Timing inference honestly takes a few rules: the same real batch for every runtime; a few
# untimed warm-up calls first (the first call builds graphs, allocates memory, and in
# TensorRT's case may choose kernels); many timed calls, reported as percentiles of the
# latency (the median and the 95th percentile, since a mean hides the slow calls) and as
# throughput (images per second), with the library's `latency_percentiles` and `throughput`
# (what `benchmark_run` reports too). Keras's `model.predict` against ONNX Runtime:

# %%
def time_calls(predict, batch, iterations=ITERATIONS, warmup=2):
    for _ in range(warmup):
        predict(batch)
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        predict(batch)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


onnx_runner = load_runner(segmenter_path, "onnx")
by_hand = {}
for name, predict in [("keras predict", lambda x: segmenter.predict(x, verbose=0)),
                      ("onnx runtime", onnx_runner.predict)]:
    seconds = time_calls(predict, images)
    p50, p95 = latency_percentiles(seconds, (50, 95)).values()
    by_hand[name] = {"images/s": throughput(len(images), seconds), "p50 ms": p50, "p95 ms": p95}
print(pd.DataFrame(by_hand).T.round(1).to_string())

# %% [markdown]
# `model.predict` pays for its generality (it wraps the batch in a dataset and loops over it);
# for one batch at a time, calling the model, or a `tf.function` around it (the library's
# `tf_function` runtime), is closer to what a service would do.
#
# ## 7. The library's benchmark
#
# `benchmark_run` times the same real batches through every runtime that can run here, each in
# its own subprocess (so that peak memory is its own and no runtime warms the next one's
# caches), and compares each with Keras. `steel-keras benchmark --run RUN` prints the same
# table. The machine and the load on it matter: the table's first line says how many cores
# and how busy they were.

# %%
bench = benchmark_run(run, BENCHMARK_RUNTIMES, batch=BATCH, iterations=ITERATIONS, warmup=2)
display(Markdown(markdown_report(bench)))

# %%
measured = pd.DataFrame([r for r in bench["results"] if r["status"] == "ok"])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].bar(measured["runtime"], measured["throughput_ips"], color="#0072B2")
axes[0].set(title=f"throughput, batch {BATCH} at {size[0]} x {size[1]}", ylabel="images / s")
x = np.arange(len(measured))
axes[1].bar(x - 0.2, measured["latency_p50_ms"], 0.4, label="p50")
axes[1].bar(x + 0.2, measured["latency_p95_ms"], 0.4, label="p95")
axes[1].set_xticks(x, measured["runtime"])
axes[1].set(title="latency per batch", ylabel="ms")
axes[1].legend()
plt.show()

# %% [markdown]
# Read the table with its conditions: a CPU, small images, a small batch, and a machine
# possibly busy with other work (see the load average above the table). The ranking of
# runtimes can change with the model, the image size, the batch and the hardware; on a GPU,
# TensorRT's engines (FP16 especially) are built for speed, and deserve the same careful
# measurement. A fair comparison keeps all of
# those equal, as this one does, and reports parity next to speed: a fast runtime that draws
# different masks is not a faster version of the same model.
#
# ## Summary
#
# - A SavedModel (`model.export`) and an ONNX file (`tf2onnx`) take the model out of Keras;
#   ONNX Runtime runs the whole pipeline without TensorFlow.
# - Every export is checked against Keras on real images: max difference and Dice agreement.
# - TensorRT and TF-TRT build GPU engines where they are installed; elsewhere the library says
#   why and points to ONNX.
# - A benchmark is only as good as its conditions: same batches, warm-up, percentiles,
#   parity, and the machine and its load stated with the numbers.
