# %% [markdown]
# # Chapter 5: The two-stage pipeline and the competition metric
#
# **What you will learn:** the competition's metric by hand, and why the empty (image, class)
# pairs dominate it; the classifier as a gate in front of the segmenter; the post-processing
# knobs (pixel threshold, minimum mask area, small components); test-time augmentation (TTA);
# a threshold search on validation images; the score of each stage, from an all-empty
# submission to the full pipeline, by hand and from `steel_keras.evaluate`; writing and
# scoring a submission; and how the winning solution's choices map onto these knobs.
#
# **Run time:** about ten minutes on a laptop CPU (it trains the library's CPU classifier and
# segmenter first, then predicts the validation and test images several times).
# **Hardware:** a CPU; no GPU needed.
#
# **Exercises:** `exercises/ch05_two_stage_pipeline.py` (Dice of a pair, the metric on mask
# arrays, removing small components, the minimum-area rule, the gate, flip TTA); check them
# with `steel-keras grade --chapter 5 --path exercises`.

# %% [markdown]
# ## Setup: a classifier and a segmenter
#
# Chapters 3 and 4 built and trained both stages. Here we train them with the library's
# `quick-cpu` recipe (a small CNN classifier; the keras.io separable U-Net with plain BCE)
# into one run directory, which is what `steel-keras baseline` does first. A recipe is a JSON
# file; we write a copy that only turns off the progress bars.
#
# In smoke mode (`STEEL_KERAS_SMOKE=1`, CI) an untrained run stands in
# (`steel_keras.deploy.demo.make_demo_run`: fresh networks with batch-norm statistics set from
# real images), since chapters 3 and 4 already exercise the training: every figure printed is
# then noise, and the pipeline's code is the same.

# %%
# %matplotlib inline
import json
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from steel_keras.chapters import SMOKE, course_data, work_dir
from steel_keras.data import Annotations, SteelDataset, read_submission
from steel_keras.data.images import model_input
from steel_keras.deploy.demo import make_demo_run
from steel_keras.evaluate import ABLATIONS, ablation_table, evaluate_run, predict_run, tune_run
from steel_keras.metrics.competition import competition_dice, score_files
from steel_keras.metrics.masks import competition_score, dice
from steel_keras.pipeline import (
    Thresholds,
    apply_min_area,
    flip_tta,
    postprocess,
    remove_small_components,
    search_thresholds,
)
from steel_keras.recipes import load_recipe
from steel_keras.rundir import read_config
from steel_keras.runs import load_run
from steel_keras.train import train_classifier, train_segmenter
from steel_keras.viz import plot_stage_scores, plot_threshold_curves

CLASSES = [1, 2, 3, 4]
# TensorFlow warns each time a model sees a new batch size (the last batch is smaller);
# harmless here, and it would bury the outputs.
tf.get_logger().setLevel("ERROR")

ds = SteelDataset(course_data())
work = work_dir("05_two_stage_pipeline")
run = work / "run"
start = time.perf_counter()
if SMOKE:
    make_demo_run(run, ds.root, seg_size=(32, 192))
else:
    recipe = load_recipe("quick-cpu", classifier={"verbose": 0}, segmenter={"verbose": 0})
    recipe_file = work / "recipe.json"
    recipe_file.write_text(json.dumps(recipe, indent=2))
    train_classifier(ds, run, recipe=str(recipe_file))
    train_segmenter(ds, run, recipe=str(recipe_file))
config = read_config(run)
print(f"run ready in {time.perf_counter() - start:.0f} s ({config['recipe']}); "
      f"smoke mode: {SMOKE}")
print({stage: config[stage]["image_size"] for stage in ("classifier", "segmenter")})

# %% [markdown]
# The thresholds are tuned on the **validation** split (train images the models did not
# train on) and the pipeline is scored on the **test** images, whose masks the synthetic data
# provides in `test_truth.csv`. Tuning and scoring on the same images would flatter it.

# %%
_, val_ids = ds.split(config["val_fraction"], seed=config["seed"])  # the run's own split
test_ids = ds.test_image_ids
truth = ds.test_truth
print(f"{len(val_ids)} validation images for tuning, {len(test_ids)} test images for scoring")

# %% [markdown]
# ## 1. The metric by hand
#
# For every test image and each of the four classes, one Dice score, `2 |X ∩ Y| / (|X| + |Y|)`
# between the predicted mask X and the true mask Y, **1 when both are empty**; the score is
# the mean over all these pairs. On mask arrays, the library's `dice` (one pair) and
# `competition_score` (every pair of `(N, H, W, 4)` arrays):

# %%
a = np.zeros((1, 4, 4, 4), np.uint8)
b = a.copy()
a[0, :2, :2, 0], b[0, :2, :3, 0] = 1, 1  # class 1: 4 and 6 pixels, 4 shared
print(f"one image: class 1 Dice {dice(a[0, ..., 0], b[0, ..., 0]):.3f}, three empty pairs "
      f"score 1 -> image score {competition_score(a, b):.3f}")

# %% [markdown]
# The library's `competition_dice` does the same on RLE tables, without decoding masks. Check
# that both agree on the test set for the true masks with one class dropped:

# %%
true_masks = np.stack([ds.load_masks(i, split="test") for i in test_ids])
dropped = true_masks.copy()
dropped[..., 2] = 0  # predict everything but class 3
table = truth.table[(truth.table["ImageId"].isin(test_ids)) & (truth.table["ClassId"] != 3)]
print(f"on masks {competition_score(dropped, true_masks):.4f}, on RLE tables "
      f"{competition_dice(table, truth, image_ids=test_ids).competition_dice:.4f}")

# %% [markdown]
# ## 2. Why the empty pairs dominate
#
# Every pair falls in one of four kinds. Empty predicted empty scores 1; a mask where the
# truth is empty (a false positive) or no mask where there is one (a miss) scores 0; a mask
# on a defect scores its overlap. The first kind is most of the test set (chapter 2), so it
# decides most of the score. Here is the breakdown for the raw segmenter (every pixel above
# 0.5, no gate, no post-processing):

# %%
predictor = load_run(run, tta="none", use_thresholds=False)
test_plain = predictor.probabilities(ds, test_ids, split="test", tta="none")
raw = predictor.annotations(test_plain, Thresholds(), gate=False)
print(raw.table.head(3).to_string())  # the long table: one row per predicted mask


def pair_kinds(masks):
    pairs = competition_dice(masks, truth, image_ids=test_ids, per_pair=True).per_pair
    kind = np.select([(pairs.pred_pixels == 0) & (pairs.true_pixels == 0),
                      (pairs.pred_pixels > 0) & (pairs.true_pixels == 0),
                      (pairs.pred_pixels == 0) & (pairs.true_pixels > 0)],
                     ["empty, predicted empty", "false positive", "missed"], "mask on a defect")
    summary = pairs.groupby(kind)["dice"].agg(pairs="size", points="sum")
    summary["share of the score"] = summary["points"] / len(pairs)
    return summary


print(pair_kinds(raw).round(4).to_string())

# %% [markdown]
# The `share of the score` column adds up to the competition score. Every false positive
# is a pair that an empty prediction would have scored 1 on.
#
# ## 3. The classifier as a gate
#
# The classifier says how likely an image is to hold any defect. Where that probability is
# below a *label threshold*, the pipeline keeps no mask for the image at all. Scan the
# threshold, same for all classes, with the raw segmenter behind it:

# %%
def score(masks):
    return competition_dice(masks, truth, image_ids=test_ids).competition_dice


gate_grid = [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.01]
gate_scores = [score(predictor.annotations(test_plain, Thresholds(label=[t] * 4)))
               for t in gate_grid]
for t, s in zip(gate_grid, gate_scores, strict=True):
    print(f"label threshold {t:.2f}: {s:.4f}")
print(f"(1.01 rejects every image: the all-empty score, "
      f"{score(Annotations.empty(test_ids)):.4f})")

# %% [markdown]
# At 0 the gate lets everything through (the raw segmenter); above 1 it rejects everything
# (the all-empty submission). A useful classifier has its best somewhere in between.
#
# ## 4. Post-processing: pixel threshold, small components, minimum area
#
# Three more knobs, per class, turn probabilities into masks:
#
# - the **pixel threshold**: a pixel is foreground above it;
# - **small components**: connected blobs smaller than this many pixels are noise;
# - the **minimum area**: a mask with fewer pixels in all is dropped whole, which removes the
#   small, unsure masks that are false positives on empty pairs.
#
# Step by step on one image with the library's pieces, `remove_small_components` and
# `apply_min_area` (`gate_masks` is the classifier's gate of section 3), then all at once
# with `postprocess` (areas are given at full size, 256 x 1600, and scaled to the segmenter's
# resolution):

# %%
prob = test_plain.masks[int(np.argmax(test_plain.masks.max(axis=(1, 2, 3))))]
scale = prob.shape[0] * prob.shape[1] / (256 * 1600)
th = Thresholds(pixel=[0.5] * 4, min_area=[600] * 4, min_component=150)
thresholded = prob >= 0.5
smallest = int(round(150 * scale))  # in pixels at this resolution
cleaned = np.stack([remove_small_components(thresholded[..., c], smallest) for c in range(4)],
                   axis=-1)
mine = apply_min_area(cleaned, [600 * scale] * 4)
print("pixels per class before:", thresholded.sum(axis=(0, 1)).tolist(),
      "without small components:", cleaned.sum(axis=(0, 1)).tolist(),
      "after the minimum area:", mine.sum(axis=(0, 1)).tolist())
print("same as the library's postprocess:", np.array_equal(mine, postprocess(prob, None, th)))

# %% [markdown]
# How the minimum area alone moves the score on the test set (pixel threshold 0.5, no gate):

# %%
area_grid = [0, 300, 600, 1000, 2000, 4000]
for area in area_grid:
    masks = predictor.annotations(test_plain, Thresholds(min_area=[area] * 4), gate=False)
    print(f"minimum area {area:>5} px: {score(masks):.4f}")

# %% [markdown]
# ## 5. Test-time augmentation
#
# A steel surface flipped left-right or top-bottom is still steel with the same defects, so
# the segmenter can be asked several times (as is, and flipped each way) and the answers,
# each flipped back, averaged; `"flips"` uses the image as is, flipped left-right and flipped
# top-bottom, so it costs two more forward passes per image. A horizontal flip on a batch made
# here, with the library's `flip_tta` (what the predictor runs on each batch), against the
# predictor's own `probabilities(..., tta="hflip")`:

# %%
# The images as every model of the library sees them, in training and prediction alike:
# resized by area, scaled to [0, 1] (`model_input`).
segmenter = predictor.segmenters[0]["all"]
batch = model_input(np.stack([ds.load_image(i, split="test") for i in test_ids[:4]]),
                    predictor.seg_size)
plain_out = np.asarray(segmenter.predict_on_batch(batch))
hflip = flip_tta(segmenter.predict_on_batch, batch)  # axis 2: left-right, flipped back
library = predictor.probabilities(ds, test_ids[:4], split="test", tta="hflip").masks
print(f"largest change TTA makes to a probability: {np.abs(hflip - plain_out).max():.4f}")
print(f"hflip TTA here matches the predictor's: {np.allclose(hflip, library, atol=1e-5)}")

# %% [markdown]
# ## 6. Searching the thresholds
#
# `search_thresholds` tries every combination of pixel threshold, minimum area and gate
# threshold on the validation images, class by class (the metric is a mean over classes, so
# each class can be tuned on its own), and keeps the best. We tune on flip-TTA probabilities,
# as the pipeline will predict with them.

# %%
val_tta = predictor.probabilities(ds, val_ids, split="train", tta="flips")
val_truth = np.stack([ds.load_masks(i, size=predictor.seg_size) for i in val_ids])
tuned, record = search_thresholds(val_tta, val_truth)
print(pd.DataFrame({"pixel": tuned.pixel, "min area": tuned.min_area, "label": tuned.label,
                    "validation Dice": [record["per_class"][str(c)]["dice"] for c in CLASSES]},
                   index=[f"class {c}" for c in CLASSES]).to_string())
plot_threshold_curves(record)

# %% [markdown]
# ## 7. From all-empty to the full pipeline
#
# Now each stage on the test images, one knob at a time:

# %%
test_tta = predictor.probabilities(ds, test_ids, split="test", tta="flips")
stages = {
    "all_empty": Annotations.empty(test_ids),
    "segmenter_only": predictor.annotations(test_plain, Thresholds(), gate=False),
    "classifier_segmenter": predictor.annotations(test_plain, Thresholds(label=[0.5] * 4)),
    "postprocessed": predictor.annotations(test_plain, tuned),
    "two_stage": predictor.annotations(test_tta, tuned),
}
by_hand_scores = {stage: score(masks) for stage, masks in stages.items()}
for stage, value in by_hand_scores.items():
    print(f"{stage:>22}: {value:.4f}")

# %% [markdown]
# The library runs the same steps: `tune_run` searches the thresholds on the validation split
# (flip TTA) and saves them with the run (`pipeline.json`); `evaluate_run` scores every stage
# on the held-out images and writes `metrics.json`, `report.md` and figures. Its table must
# match the one above:

# %%
tune_run(run, ds, tta="flips")
metrics = evaluate_run(run, ds, out=run / "evaluation")
print(ablation_table(metrics))
print("library agrees with the table by hand:",
      all(abs(metrics[s]["competition_dice"] - by_hand_scores[s]) < 1e-9 for s in ABLATIONS))
plot_stage_scores(metrics, ABLATIONS)

# %% [markdown]
# ## 8. A submission
#
# `predict_run` runs the tuned pipeline over every image of `test_images/` and writes a CSV in
# the format of the folder's `sample_submission.csv`. Scoring it against the truth with
# `score_files` (what `steel-keras score` does) gives the two-stage figure again.

# %%
submission = predict_run(run, ds, run / "submission.csv")
print(submission.read_text().splitlines()[:5])
scored = score_files(submission, ds.root / "test_truth.csv")
print(f"{read_submission(submission).table.shape[0]} masks in the submission; score "
      f"{scored.competition_dice:.4f} (two-stage row above: "
      f"{metrics['two_stage']['competition_dice']:.4f})")

# %% [markdown]
# ## 9. The winning solution's knobs
#
# The first place (private leaderboard 0.90883, from its public write-up) used exactly these
# knobs, tuned on the real data for much larger models:
#
# | knob | 1st place | here |
# |---|---|---|
# | gate (label threshold), classes 1-4 | 0.7, 0.7, 0.6, 0.6 | `tuned.label` |
# | pixel threshold | 0.55 | `tuned.pixel` |
# | minimum mask area, classes 1-4 | 600, 600, 900, 2000 px | `tuned.min_area` |
# | small components removed | under 150 px | `Thresholds.min_component` |
# | TTA | horizontal and vertical flips | `tta="flips"` |
#
# Its gate was three EfficientNet-b1 classifiers and a ResNet34; its segmenters a Unet and an
# FPN on EfficientNet-b3, averaged (a list of segmenters in `TwoStagePredictor` averages them
# too). Our tuned values, for the table's last column:

# %%
print(pd.DataFrame({"label": tuned.label, "pixel": tuned.pixel, "min area": tuned.min_area},
                   index=[f"class {c}" for c in CLASSES]).T.to_string())

# %% [markdown]
# ## Summary
#
# - The metric is a mean over all (image, class) pairs, most of them empty: a false positive
#   on an empty pair costs as much as a perfect mask earns.
# - So the pipeline gates with a classifier, thresholds pixels, drops small masks and
#   components, and averages flipped predictions; every knob is tuned on validation images,
#   per class, for the metric itself.
# - `steel_keras.evaluate` (`tune_run`, `evaluate_run`, `predict_run`) and
#   `steel-keras baseline` do all of it from a trained run directory.
#
# Chapter 6 takes the trained models out of Python: ONNX, TensorRT and their speed.
