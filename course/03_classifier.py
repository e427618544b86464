# %% [markdown]
# # Chapter 3: A binary defect classifier
#
# **What you will learn:** how to frame "does this image show a defect?" as binary
# classification and what accuracy to beat; a tf.data input pipeline with augmentation; a
# small convolutional network built step by step in Keras, trained, with its training curves;
# the same model from the library (`steel_keras.models.build_classifier`) and its training loop
# (`steel_keras.train.train_classifier`); an Xception backbone from `keras.applications`; the
# ROC curve and its area, by hand and from the library; and how to choose the decision
# threshold for the job the classifier has in the two-stage pipeline.
#
# **Run time:** a few minutes on a laptop CPU (two small CNNs, six epochs each at 128 x 800);
# training Xception is off by default (`TRAIN_XCEPTION`), it wants a GPU. **Hardware:** a CPU;
# a GPU makes it faster but is not needed.
#
# **Exercises:** `exercises/ch03_classifier.py` (the majority-class accuracy, a classifier
# head, the small CNN, ROC AUC by ranks, a threshold for a target recall); check them with
# `steel-keras grade --chapter 3 --path exercises`.

# %% [markdown]
# ## Setup
#
# The constants a reader may change are at the top. `pick(full=..., smoke=...)` gives the
# first value normally and the second in smoke mode (`STEEL_KERAS_SMOKE=1`, used by CI: tiny
# images, one epoch; the numbers it prints are then noise).
#
# - `PRETRAINED = True` starts Xception from ImageNet weights, which Keras downloads (about
#   80 MB) on first use. The default, `False`, starts from random weights and downloads nothing.
# - `TRAIN_XCEPTION = True` trains the Xception classifier too: worth it on a GPU.

# %%
# %matplotlib inline
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from steel_keras.chapters import SMOKE, course_data, pick, work_dir
from steel_keras.data import SteelDataset, make_augmentation
from steel_keras.data.tfdata import classification_dataset
from steel_keras.metrics.classification import (
    confusion_matrix,
    majority_accuracy,
    roc_auc,
    roc_curve,
    threshold_for_recall,
)
from steel_keras.models import build_classifier, build_small_cnn, load_model
from steel_keras.recipes import load_recipe
from steel_keras.train import train_classifier
from steel_keras.viz import plot_training_curves

IMAGE_SIZE = pick(full=(128, 800), smoke=(32, 192))  # (height, width): a half-size image
XCEPTION_SIZE = pick(full=(128, 800), smoke=(72, 144))  # Xception needs at least 71 x 71
BATCH_SIZE = pick(full=16, smoke=8)
EPOCHS = pick(full=6, smoke=1)
PRETRAINED = False
TRAIN_XCEPTION = False

recipe = load_recipe("quick-cpu")  # the library's CPU recipe: its seed and validation split
SEED = recipe["seed"]
keras.utils.set_random_seed(SEED)
ds = SteelDataset(course_data())
runs = work_dir("03_classifier")
print(f"Keras {keras.__version__}, backend {keras.backend.backend()}; smoke mode: {SMOKE}")

# %% [markdown]
# ## 1. The task, and the accuracy to beat
#
# The label of an image is 1 when it has a mask of any class. We hold out a validation split,
# stratified by class combination so that both sides have the same mix (the library's
# `SteelDataset.split`, with the recipe's seed and fraction, so that the library's training
# below sees the same split).
#
# About half the images are defect-free, so a "classifier" that always answers the majority
# class is right about half the time: that accuracy, printed below, is the bar to beat. Its
# ROC AUC is 0.5: it cannot rank images at all.

# %%
train_ids, val_ids = ds.split(recipe["val_fraction"], seed=SEED)
y_train = ds.class_labels(train_ids).any(axis=1).astype(int)
y_val = ds.class_labels(val_ids).any(axis=1).astype(int)
majority = majority_accuracy(y_val)
print(f"train: {len(train_ids)} images, {y_train.mean():.1%} defective")
print(f"validation: {len(val_ids)} images, {y_val.mean():.1%} defective")
print(f"majority-class accuracy on validation: {majority:.3f}")

# %% [markdown]
# ## 2. The input pipeline
#
# `classification_dataset` reads each JPEG as grayscale, resizes it by area to `IMAGE_SIZE`,
# scales it to `[0, 1]` and batches `(images, labels)` as a `tf.data.Dataset`, reading in
# parallel threads. For training it shuffles and augments: horizontal and vertical flips and
# random brightness and contrast, the augmentations of the winning solution (none of them
# changes whether a defect is present).

# %%
augment = make_augmentation(hflip=True, vflip=True, brightness_contrast=True)
train_data = classification_dataset(ds, train_ids, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE,
                                    augment=augment, shuffle=True, seed=SEED)
val_data = classification_dataset(ds, val_ids, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE)
images, labels = next(iter(train_data))
print("images:", images.shape, images.dtype, "labels:", labels.shape)

fig, axes = plt.subplots(4, 1, figsize=(10, 4.5))
for ax, image, label in zip(axes, images[:4], labels[:4], strict=False):
    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title("defect" if label[0] else "no defect", fontsize=9, loc="left")
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. A small CNN, step by step
#
# The building block is a 3 x 3 convolution with stride 2, which halves the height and width
# while it learns features, then batch normalisation and a ReLU. Five blocks take a 128 x 800
# image down to 4 x 25 while the channels grow from 8 to 128: each output position then "sees"
# a patch of the input large enough to contain a small defect.
#
# Two details decide whether this network learns anything at all here:
#
# - **Standardise each image.** Frames differ in overall brightness far more than a defect
#   differs from the steel around it (the grain is a few percent of the range). A
#   `LayerNormalization` over height, width and channels, with no learned scale or offset,
#   brings every image to zero mean and unit variance before the first convolution.
# - **Batch-norm momentum 0.9.** During training batch normalisation uses each batch's
#   statistics; at inference it uses moving averages that start at mean 0 and variance 1 and
#   move towards the real ones by `1 - momentum` per step. With Keras's default 0.99 and a few
#   hundred steps they are still far off, and a model that ranks its training batches well
#   predicts at chance on the validation images. 0.9 settles within about 50 steps.
#
# The library's `build_small_cnn` is this network: the standardisation, five such blocks
# (each a `Conv2D`, a `BatchNormalization` and a `ReLU`, named `block1` to `block5`) and the
# head below.
#
# The head turns the feature map into one probability. Global average pooling averages each
# channel over all positions (so the model accepts any image size and a defect anywhere
# counts), dropout regularises, and one sigmoid unit gives P(defect). One output with a
# sigmoid, not two with a softmax: the binary cross-entropy loss then reads it directly. It is
# the library's `classifier_head`, which ends every `keras.applications` classifier too.

# %%
model = build_small_cnn((*IMAGE_SIZE, 1))
for i in range(1, 6):
    print(f"block{i}: {model.get_layer(f'block{i}_relu').output.shape}")
model.summary()

# %% [markdown]
# Train it with Adam and binary cross-entropy, watching accuracy and ROC AUC on the
# validation split after every epoch.

# %%
model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy",
              metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                       keras.metrics.AUC(name="auc")])
start = time.perf_counter()
# shuffle=False: the tf.data pipeline shuffles already (reproducibly, from the seed).
history = model.fit(train_data, validation_data=val_data, epochs=EPOCHS, shuffle=False,
                    verbose=2)
print(f"trained {EPOCHS} epoch(s) in {time.perf_counter() - start:.0f} s")
plot_training_curves(history.history)

# %% [markdown]
# Read the curves: the training loss should fall; the validation AUC is what to watch, since
# accuracy at a fixed threshold of 0.5 hides how well the model *ranks* images. When the
# validation loss turns up while the training loss keeps falling, the model is overfitting.

# %% [markdown]
# ## 4. The library's version
#
# `build_classifier("small_cnn")` builds the same network with one change in the head: it
# pools the last feature map by its mean *and* its maximum and concatenates the two. A defect
# is a small local anomaly; the mean over the whole sheet dilutes it, the maximum keeps the
# strongest response. That adds 128 weights to the dense layer (checked below). And
# `train_classifier` trains it from a recipe: the same pipeline and augmentation, a cosine
# learning-rate schedule, early stopping on the validation AUC, the best checkpoint saved
# as `model.keras`, the history as a CSV, and a summary. The recipe `quick-cpu` is the
# library's CPU recipe; we override its image size and epochs to match this chapter.

# %%
library_model = build_classifier("small_cnn", input_shape=(*IMAGE_SIZE, 1))
print(f"hand-built: {model.count_params():,} weights; library: "
      f"{library_model.count_params():,} weights")
assert library_model.count_params() == model.count_params() + 128

overrides = {"backbone": "small_cnn", "image_size": list(IMAGE_SIZE), "batch_size": BATCH_SIZE,
             "epochs": EPOCHS, "verbose": 2}
result = train_classifier(ds, runs / "small_cnn", recipe="quick-cpu", overrides=overrides)
for key, value in result.summary.items():
    print(f"{key:>24}: {value:.3f}" if isinstance(value, float) else f"{key:>24}: {value}")
plot_training_curves(result.run_dir / "classifier" / "history.csv")

# %% [markdown]
# `accuracy_over_majority` is the validation accuracy minus the majority-class accuracy: the
# part of the accuracy the model earned.

# %% [markdown]
# ## 5. The ROC curve and its area
#
# A classifier outputs a probability; a threshold turns it into a decision. Each threshold
# gives a true positive rate (the share of defective images flagged, the *recall*) and a
# false positive rate (the share of clean images flagged). The ROC curve draws all of them.
# Its area (ROC AUC) is the probability that a random defective image gets a higher score than
# a random clean one: 1 is a perfect ranking, 0.5 is a coin.
#
# We score the validation images with the library's trained model, then compute the curve by
# hand.

# %%
classifier = load_model(result.model_paths[0])
scores = np.asarray(classifier.predict(val_data, verbose=0)).ravel()

thresholds = np.r_[np.inf, np.sort(np.unique(scores))[::-1]]
tpr = np.array([(scores[y_val == 1] >= t).mean() for t in thresholds])
fpr = np.array([(scores[y_val == 0] >= t).mean() for t in thresholds])

# %% [markdown]
# The area by ranks (the Mann-Whitney statistic): sort all scores, sum the ranks of the
# defective images, subtract the smallest that sum could be, and divide by the number of
# (defective, clean) pairs. Ties count half, which average ranks take care of. It must equal
# the area under the curve above (by the trapezoid rule) and the library's `roc_auc`.

# %%
def roc_auc_by_ranks(truth, score):
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    for value in np.unique(score):  # ties share their average rank
        ranks[score == value] = ranks[score == value].mean()
    n_pos, n_neg = truth.sum(), (1 - truth).sum()
    return (ranks[truth == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


print(f"AUC by ranks:      {roc_auc_by_ranks(y_val, scores):.4f}")
print(f"AUC by trapezoids: {np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2):.4f}")
print(f"library roc_auc:   {roc_auc(y_val, scores):.4f}")

lib_fpr, lib_tpr, _ = roc_curve(y_val, scores)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot(lib_fpr, lib_tpr, marker=".", label=f"small CNN (AUC {roc_auc(y_val, scores):.3f})")
ax.plot([0, 1], [0, 1], "--", color="gray", label="chance (AUC 0.5)")
ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)",
       title="ROC on the validation split")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# ## 6. Choosing the threshold
#
# 0.5 is rarely the right threshold. In the two-stage pipeline the classifier is a **gate**:
# an image it rejects gets no masks at all. Rejecting a defective image loses its masks
# (Dice 0 on those pairs); letting a clean image through costs only if the segmenter then
# draws something on it. So the gate should keep recall high and reject only the images it
# is sure about. One way to set it: the highest threshold that still keeps a target recall
# on the validation split (the library's `threshold_for_recall`).

# %%
TARGET_RECALL = 0.95
gate = threshold_for_recall(y_val, scores, TARGET_RECALL)
for name, t in [("0.5", 0.5), (f"recall >= {TARGET_RECALL}", gate)]:
    counts = confusion_matrix(y_val, scores >= t)
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    rejected_clean = counts["tn"] / max(1, counts["tn"] + counts["fp"])
    print(f"threshold {t:.3f} ({name}): {counts}; recall {recall:.3f}, "
          f"clean images rejected {rejected_clean:.3f}")

# %% [markdown]
# The trade-off at every threshold: recall falls as the threshold rises, and the share of
# clean images the gate rejects (what it is there for) grows.

# %%
grid = np.linspace(0, 1, 101)
recall_curve = [(scores[y_val == 1] >= t).mean() for t in grid]
rejected_curve = [(scores[y_val == 0] < t).mean() for t in grid]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grid, recall_curve, label="recall (defective images kept)")
ax.plot(grid, rejected_curve, label="clean images rejected")
ax.axvline(gate, color="gray", ls="--", label=f"threshold for recall {TARGET_RECALL}")
ax.set(xlabel="threshold", ylabel="share", title="What the gate threshold trades")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Chapter 5 goes one step further and chooses the gate threshold of each class by the
# competition metric itself, together with the segmenter's thresholds.

# %% [markdown]
# ## 7. An Xception backbone
#
# The small CNN learns its features from a few hundred images. The winning solutions used
# networks pretrained on ImageNet, which already know edges, textures and blobs.
# `build_classifier("xception")` puts the same head on `keras.applications.Xception` (with its
# classification top removed). Two details for grayscale steel: the image is repeated to
# three channels, and Xception's own preprocessing (scaling to `[-1, 1]`) is a layer of the
# model, so the model takes the same `[0, 1]` images as the small CNN.

# %%
xception = build_classifier("xception", input_shape=(*XCEPTION_SIZE, 1),
                            encoder_weights="imagenet" if PRETRAINED else None)
print([layer.name for layer in xception.layers])
print(f"Xception classifier: {xception.count_params():,} weights "
      f"({xception.count_params() / library_model.count_params():.0f}x the small CNN)")

# %% [markdown]
# That is a lot more work per image. Time one forward pass of a batch through each model
# (after a first call that builds the computation):

# %%
def seconds_per_batch(net, size, batch=BATCH_SIZE, repeats=2):
    x = np.random.default_rng(0).random((batch, *size, 1), dtype=np.float32)
    net(x, training=False)
    start = time.perf_counter()
    for _ in range(repeats):
        net(x, training=False)
    return (time.perf_counter() - start) / repeats


small_s = seconds_per_batch(build_classifier("small_cnn", (*XCEPTION_SIZE, 1)), XCEPTION_SIZE)
xception_s = seconds_per_batch(xception, XCEPTION_SIZE)
steps = int(np.ceil(len(train_ids) / BATCH_SIZE))
print(f"forward pass, batch {BATCH_SIZE} at {XCEPTION_SIZE}: small CNN {small_s:.3f} s, "
      f"Xception {xception_s:.3f} s ({xception_s / small_s:.0f}x)")
print(f"rough Xception epoch on this machine ({steps} steps, training ~3x a forward pass): "
      f"{3 * xception_s * steps / 60:.1f} min")

# %% [markdown]
# On a CPU that epoch time is why `TRAIN_XCEPTION` is off by default. With it on (ideally on
# a GPU, with `PRETRAINED = True`), the library trains Xception exactly like the small CNN,
# with a lower learning rate, as is usual when fine-tuning pretrained weights:

# %%
if TRAIN_XCEPTION:
    xception_result = train_classifier(
        ds, runs / "xception", recipe="quick-cpu",
        overrides={**overrides, "backbone": "xception", "image_size": list(XCEPTION_SIZE),
                   "encoder_weights": "imagenet" if PRETRAINED else None,
                   "learning_rate": 3e-4})
    print(f"Xception validation AUC {xception_result.summary['val_auc']:.3f} vs small CNN "
          f"{result.summary['val_auc']:.3f}")
    display(plot_training_curves(xception_result.run_dir / "classifier" / "history.csv"))
else:
    print("TRAIN_XCEPTION is False: set it to True (and PRETRAINED = True) to train Xception")

# %% [markdown]
# ## Summary
#
# - The bar to beat is the majority-class accuracy; AUC says how well a model ranks images,
#   independently of any threshold.
# - A small CNN is five strided conv blocks and a pooled sigmoid head; the library's
#   `build_classifier` and `train_classifier` are the tested versions, with checkpoints,
#   early stopping and a recipe.
# - Xception brings ImageNet features at many times the cost per image.
# - The threshold follows from the classifier's job: as a gate it must keep recall high.
#
# Chapter 4 trains the segmenters that draw the masks.
