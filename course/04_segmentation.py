# %% [markdown]
# # Chapter 4: Segmentation: U-Nets, and BCE against Dice
#
# **What you will learn:** segmentation as one yes/no question per pixel and class; a U-Net
# built step by step in Keras (encoder, decoder blocks with skip connections); binary
# cross-entropy, the soft Dice loss and their sum, by hand and from `steel_keras.losses`, and
# how they compare when everything else is equal; what training one model per class changes
# for the rare class 2; the library's segmenters (`build_segmenter`, `train_segmenter`)
# including a U-Net on an Xception encoder; and overlays of the predictions.
#
# **Run time:** about ten minutes on a laptop CPU (five small models at 64 x 400); training
# the Xception U-Net is off by default (`TRAIN_XCEPTION`), it wants a GPU. **Hardware:** a
# CPU; a GPU makes it faster but is not needed.
#
# **Exercises:** `exercises/ch04_segmentation.py` (the soft Dice loss, BCE + Dice, a U-Net
# decoder block, Dice per class on defects); check them with
# `steel-keras grade --chapter 4 --path exercises`.

# %% [markdown]
# ## Setup
#
# As in chapter 3: `pick(full=..., smoke=...)` shrinks everything in smoke mode (CI), where
# the printed figures are noise. `PRETRAINED = True` starts the Xception encoder from ImageNet
# weights (an 80 MB download); `TRAIN_XCEPTION = True` trains the Xception U-Net too.

# %%
# %matplotlib inline
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from keras import layers, ops

from steel_keras.chapters import SMOKE, course_data, pick, work_dir
from steel_keras.data import SteelDataset, make_augmentation
from steel_keras.data.tfdata import load_arrays, per_class_ids, segmentation_dataset
from steel_keras.losses import BCEDice, SoftDice, WeightedBCE
from steel_keras.metrics.keras_metrics import DicePerClass
from steel_keras.metrics.masks import dice_per_class_on_defects
from steel_keras.models import build_segmenter, decoder_block, load_model
from steel_keras.recipes import load_recipe
from steel_keras.train import train_segmenter
from steel_keras.viz import plot_overlays, plot_training_curves

IMAGE_SIZE = pick(full=(64, 400), smoke=(32, 192))  # U-Nets need multiples of 16 here
XCEPTION_SIZE = pick(full=(128, 800), smoke=(72, 144))
BATCH_SIZE = 8
EPOCHS = pick(full=8, smoke=1)
PRETRAINED = False
TRAIN_XCEPTION = False
CLASSES = [1, 2, 3, 4]

recipe = load_recipe("quick-cpu")
SEED = recipe["seed"]
keras.utils.set_random_seed(SEED)
ds = SteelDataset(course_data())
runs = work_dir("04_segmentation")
train_ids, val_ids = ds.split(recipe["val_fraction"], seed=SEED)
print(f"{len(train_ids)} train and {len(val_ids)} validation images; smoke mode: {SMOKE}")

# %% [markdown]
# ## 1. The task
#
# A segmenter answers, for every pixel and every class, "is this pixel part of a defect of
# this class?": four sigmoid outputs per pixel, not a softmax, because the question is asked
# per class (classes do not overlap in the labels, but the model need not know that).
#
# With the classifier of chapter 3 as a gate, the segmenter only has to draw masks on images
# that have defects. So in this chapter we train it on the defective images only (as the
# `unet-bce-25` recipe does) and measure it on the defective validation images. The library's
# `quick-cpu` recipe adds a tenth of the clean images (`clean_fraction: 0.1`), so that the
# segmenter sees some clean steel; chapter 5 shows what its false masks on clean images cost
# the metric, and how the classifier's gate removes most of them.

# %%
def defective(ids):
    labels = ds.class_labels(ids)
    return [i for i, row in zip(ids, labels, strict=True) if row.any()]


seg_train_ids, seg_val_ids = defective(train_ids), defective(val_ids)
x_val, y_val = load_arrays(ds, seg_val_ids, IMAGE_SIZE)
print(f"training on {len(seg_train_ids)} defective images, validating on {len(seg_val_ids)}")
print("validation arrays:", x_val.shape, y_val.shape)
share = y_val.mean(axis=(0, 1, 2))
print("share of defect pixels per class on validation:",
      {c: f"{s:.3%}" for c, s in zip(CLASSES, share, strict=True)})

# %% [markdown]
# Even on defective images, defect pixels are a few percent at most: a model that predicts
# "no defect" everywhere is right on almost every pixel. Keep that in mind for the losses.
#
# The training pipeline reads, resizes (masks by area, then thresholded) and augments images
# and masks together: a flip moves the mask with the image.

# %%
augment = make_augmentation(hflip=True, vflip=True, brightness_contrast=True)
train_data = segmentation_dataset(ds, seg_train_ids, image_size=IMAGE_SIZE,
                                  batch_size=BATCH_SIZE, augment=augment, shuffle=True,
                                  seed=SEED)
images, masks = next(iter(train_data))
print("a batch:", images.shape, masks.shape)

# %% [markdown]
# ## 2. A U-Net, step by step
#
# A U-Net (Ronneberger et al., 2015) has two halves. The **encoder** is a classifier's
# backbone: blocks of convolutions, each followed by a 2x downsampling, so that deep features
# see large parts of the image. The **decoder** climbs back up: each block upsamples 2x and
# concatenates the encoder's feature map of the same size (the *skip connection*), which
# carries back the fine detail that downsampling threw away. A 1 x 1 convolution with a
# sigmoid then gives one probability per pixel and class. The decoder block is the library's
# `decoder_block`, the block its Xception U-Net is built from.

# %%
def conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def encoder_block(x, filters, name):
    x = conv_bn_relu(x, filters, f"{name}a")
    skip = conv_bn_relu(x, filters, f"{name}b")
    return layers.MaxPooling2D(2, name=f"{name}_pool")(skip), skip


def get_unet(input_shape, classes=4, filters=(16, 32, 64, 128)):
    image = keras.Input(shape=input_shape, name="image")
    x, skips = image, []
    for i, f in enumerate(filters[:-1], start=1):
        x, skip = encoder_block(x, f, f"encoder{i}")
        skips.append(skip)
    x = conv_bn_relu(x, filters[-1], "bottleneck")
    for i, (f, skip) in enumerate(zip(filters[-2::-1], skips[::-1], strict=True), start=1):
        x = decoder_block(x, skip, f, f"decoder{i}")
    masks = layers.Conv2D(classes, 1, activation="sigmoid", name="masks")(x)
    return keras.Model(image, masks, name="my_unet")


unet = get_unet((*IMAGE_SIZE, 1))
for name in ["encoder1b_relu", "encoder2b_relu", "encoder3b_relu", "bottleneck_relu",
             "decoder1b_relu", "decoder2b_relu", "decoder3b_relu", "masks"]:
    print(f"{name:>16}: {unet.get_layer(name).output.shape}")
print(f"{unet.count_params():,} weights")

# %% [markdown]
# ## 3. Three losses, by hand
#
# **Binary cross-entropy** (BCE) scores every pixel on its own:
# `-[y log p + (1 - y) log(1 - p)]`, averaged over pixels. Since almost every pixel is
# background, a model can get a low BCE by predicting low probabilities everywhere, which
# draws small masks or none.
#
# The **soft Dice loss** is one minus the Dice coefficient computed on probabilities instead
# of thresholded masks, per image and class: `1 - (2 Σ y p + s) / (Σ y + Σ p + s)`. It scores
# overlap, whatever the size of the defect: a small mask missed entirely costs as much as a
# large one. The smoothing `s` (1 here) makes an empty mask predicted empty a perfect match.
#
# **BCE + Dice** weighs the two; the winning solution fine-tuned with 0.75 BCE + 0.25 Dice.

# %%
def bce_by_hand(y, p, eps=1e-7):
    p = ops.clip(p, eps, 1 - eps)
    return -ops.mean(y * ops.log(p) + (1 - y) * ops.log(1 - p), axis=(1, 2, 3))


def soft_dice_by_hand(y, p, smooth=1.0):
    intersection = ops.sum(y * p, axis=(1, 2))
    total = ops.sum(y, axis=(1, 2)) + ops.sum(p, axis=(1, 2))
    return 1 - ops.mean((2 * intersection + smooth) / (total + smooth), axis=-1)


y = np.asarray(masks)
p = np.random.default_rng(0).random(y.shape).astype(np.float32)
checks = {
    "BCE": (bce_by_hand(y, p), WeightedBCE(pos_weight=None)),
    "soft Dice": (soft_dice_by_hand(y, p), SoftDice()),
    "0.75 BCE + 0.25 Dice": (0.75 * bce_by_hand(y, p) + 0.25 * soft_dice_by_hand(y, p),
                             BCEDice(0.75, 0.25)),
}
for name, (by_hand, library_loss) in checks.items():
    print(f"{name:>22}: by hand {float(ops.mean(by_hand)):.5f}, "
          f"library {float(library_loss(y, p)):.5f}")

# %% [markdown]
# What each loss thinks of two lazy predictions on a batch of real masks: all zeros
# (probability 0.01 everywhere) and a blurry "maybe" (0.5 everywhere).

# %%
for name, guess in [("all 0.01", 0.01), ("all 0.5", 0.5)]:
    q = np.full(y.shape, guess, np.float32)
    print(f"{name}: BCE {float(ops.mean(bce_by_hand(y, q))):.3f}, "
          f"soft Dice {float(ops.mean(soft_dice_by_hand(y, q))):.3f}")

# %% [markdown]
# BCE rewards the near-empty guess with a small loss; Dice gives it nearly the worst loss
# there is (Dice cannot be satisfied without overlap).
#
# ## 4. BCE, Dice and BCE + Dice on the same data and budget
#
# A fair comparison changes one thing only. The three runs below start from **the same
# initial weights**, see **the same batches in the same order** (the pipeline is seeded) and
# train for the same number of epochs; only the loss differs. Each is scored on the
# validation images with the competition's Dice (thresholded at 0.5), per class, on the
# (image, class) pairs that have a defect (the library's `dice_per_class_on_defects`, which
# training's summary reports too), and by how often it draws a mask where the true mask is
# empty.

# %%
def false_mask_rate(prob, truth, threshold=0.5):
    drawn = (prob > threshold).any(axis=(1, 2))
    empty = ~(truth > 0.5).any(axis=(1, 2))
    return drawn[empty].mean() if empty.any() else np.nan


def predict(model, x, batch_size=BATCH_SIZE):
    """Probabilities batch by batch, eagerly: no graph to trace for a few validation images."""
    return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])


initial_weights = unet.get_weights()
losses = {"BCE": WeightedBCE(pos_weight=None), "Dice": SoftDice(),
          "0.75 BCE + 0.25 Dice": BCEDice(0.75, 0.25)}
results, histories = {}, {}
for name, loss in losses.items():
    unet.set_weights(initial_weights)
    # run_eagerly in smoke mode: for a handful of steps, tracing the graph costs more than it
    # saves. Real training always runs the traced graph.
    unet.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss,
                 metrics=[DicePerClass(name="dice")], run_eagerly=SMOKE)
    start = time.perf_counter()
    history = unet.fit(segmentation_dataset(ds, seg_train_ids, image_size=IMAGE_SIZE,
                                            batch_size=BATCH_SIZE, augment=augment,
                                            shuffle=True, seed=SEED),
                       epochs=EPOCHS, shuffle=False, verbose=0)
    prob = predict(unet, x_val)
    per_class = dice_per_class_on_defects(prob, y_val)
    results[name] = {"Dice on defects": np.nanmean(per_class),
                     **{f"class {c}": d for c, d in zip(CLASSES, per_class, strict=True)},
                     "false masks on empty pairs": false_mask_rate(prob, y_val),
                     "seconds": time.perf_counter() - start}
    histories[name] = history.history
comparison = pd.DataFrame(results).T
print(comparison.round(3).to_string())
best_loss = comparison["Dice on defects"].idxmax()
print(f"\nbest mean Dice on defects: {best_loss}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
comparison[[f"class {c}" for c in CLASSES]].T.plot.bar(ax=axes[0], rot=0)
axes[0].set(title="validation Dice on defects, per class", ylabel="Dice", ylim=(0, 1))
for name, history in histories.items():
    axes[1].plot(range(1, EPOCHS + 1), history["dice"], marker="o", label=name)
axes[1].set(title="Dice on the training batches, per epoch", xlabel="epoch", ylim=(0, 1))
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# Read the table above with its setting in mind: one small U-Net, a few epochs, a few
# hundred images (a handful in smoke mode). What to look for: Dice-based losses tend to draw
# bolder masks, which shows as more false masks on empty pairs (the last column but one), and
# plain BCE tends to stay timid on the small classes, which shows in their Dice; whether that
# happened in this run is in the numbers above. A false mask on an empty pair is exactly the
# costly mistake of chapter 2, which is why the pipeline gates and post-processes the
# segmenter's output (chapter 5) rather than trusting it alone.

# %% [markdown]
# ## 5. One model per class: what changes for class 2
#
# Class 2 is rare: few training images have it, so in a four-channel model its channel gets
# few positive pixels per epoch. The alternative is one single-channel model per class, each
# trained on the images of its class plus a share of the others (so it also learns to draw
# nothing); `per_class_ids` picks them. The share of class 2 images in each training set:

# %%
class2_ids = per_class_ids(ds, train_ids, class_id=2, other_fraction=0.3, seed=SEED)
has2_multi = ds.class_labels(seg_train_ids)[:, 1].mean()
has2_single = ds.class_labels(class2_ids)[:, 1].mean()
print(f"four-channel model: {len(seg_train_ids)} images, {has2_multi:.1%} with class 2")
print(f"class 2 model:      {len(class2_ids)} images, {has2_single:.1%} with class 2")

# %% [markdown]
# Train the same U-Net with one output channel on those images, with the loss that did best
# above, and compare its Dice on the validation images that have class 2 with the
# four-channel model's class 2 channel (from the same loss's run).

# %%
class2_unet = get_unet((*IMAGE_SIZE, 1), classes=1)
class2_unet.compile(optimizer=keras.optimizers.Adam(2e-3), loss=losses[best_loss],
                    run_eagerly=SMOKE)
class2_unet.fit(segmentation_dataset(ds, class2_ids, image_size=IMAGE_SIZE,
                                     batch_size=BATCH_SIZE, class_id=2, augment=augment,
                                     shuffle=True, seed=SEED),
                epochs=EPOCHS, shuffle=False, verbose=0)
val_class2 = y_val[..., 1:2]
if val_class2.any():
    single = dice_per_class_on_defects(predict(class2_unet, x_val), val_class2)[0]
    print(f"class 2 Dice on its {int(val_class2.any(axis=(1, 2, 3)).sum())} validation "
          f"image(s): per-class model {single:.3f}, four-channel model "
          f"{results[best_loss]['class 2']:.3f}")
else:
    print("no validation image has class 2 in this split: nothing to compare")

# %% [markdown]
# With so few class 2 images, any single figure here is noisy; the library trains per-class
# models with `train_segmenter(..., overrides={"mode": "per_class"})`, and the pipeline
# (chapter 5) combines the four models into one four-channel prediction. Another remedy for a
# rare class is a heavier BCE weight on its positive pixels, `WeightedBCE(pos_weight=...)`:
# the winning solution used `(2.0, 2.0, 1.0, 1.5)` for classes 1 to 4.

# %% [markdown]
# ## 6. The library's segmenters
#
# `build_segmenter(arch, backbone)` builds every segmenter of the course with one signature:
# segmentation-models' `unet`, `fpn` and `linknet` on its backbones, the keras.io separable
# U-Net `unet_separable`, and `unet_xception`. Each takes grayscale images in `[0, 1]` and
# ends in a layer named `masks`:

# %%
for arch, backbone in [("unet", "resnet18"), ("unet_separable", None)]:
    model = build_segmenter(arch, backbone, input_shape=(*IMAGE_SIZE, 1), classes=4)
    print(f"{model.name:>16}: {model.count_params():>12,} weights, output {model.output_shape}")

# %% [markdown]
# `train_segmenter` trains the recipe's segmenter on the recipe's images (`quick-cpu`: the
# defective train images and a tenth of the clean ones) with the recipe's loss (`quick-cpu`:
# plain BCE), checkpoints on the validation Dice, and reports the Dice on the defective
# validation images, per class.

# %%
overrides = {"image_size": list(IMAGE_SIZE), "batch_size": BATCH_SIZE, "epochs": EPOCHS,
             "verbose": 2}
seg_result = train_segmenter(ds, runs / "unet_separable", recipe="quick-cpu",
                             overrides=overrides)
print({k: v for k, v in seg_result.summary.items() if k != "per_class"})
print("per class:", seg_result.summary["per_class"])
plot_training_curves(seg_result.run_dir / "segmenter" / "history.csv")

# %% [markdown]
# ## 7. A U-Net on an Xception encoder
#
# `unet_xception` swaps the hand-built encoder for `keras.applications.Xception` (ImageNet
# weights with `PRETRAINED = True`) and takes the skips from five of its stages. Xception's
# first convolutions use "valid" padding, so its feature maps have odd sizes; each decoder
# stage crops or pads to the size of the skip it joins.

# %%
xunet = build_segmenter("unet_xception", input_shape=(*XCEPTION_SIZE, 1), classes=4,
                        encoder_weights="imagenet" if PRETRAINED else None)
encoder = xunet.get_layer("xception_encoder")
print("encoder stages:", [tuple(t.shape[1:3]) for t in encoder.outputs])
print([layer.name for layer in xunet.layers if layer.name.startswith("decoder_stage1")])
print(f"{xunet.count_params():,} weights ({xunet.count_params() / unet.count_params():.0f}x "
      "the hand-built U-Net)")


def seconds_per_batch(net, size):
    x = np.random.default_rng(0).random((pick(BATCH_SIZE, 2), *size, 1), dtype=np.float32)
    net(x, training=False)
    start = time.perf_counter()
    repeats = pick(full=2, smoke=1)
    for _ in range(repeats):
        net(x, training=False)
    return (time.perf_counter() - start) / repeats


small_s = seconds_per_batch(get_unet((*XCEPTION_SIZE, 1)), XCEPTION_SIZE)
xception_s = seconds_per_batch(xunet, XCEPTION_SIZE)
print(f"forward pass of a batch: hand-built U-Net {small_s:.3f} s, "
      f"Xception U-Net {xception_s:.3f} s")

# %%
if TRAIN_XCEPTION:
    xception_result = train_segmenter(
        ds, runs / "unet_xception", recipe="quick-cpu",
        overrides={**overrides, "arch": "unet_xception", "image_size": list(XCEPTION_SIZE),
                   "encoder_weights": "imagenet" if PRETRAINED else None,
                   "learning_rate": 3e-4})
    print("Xception U-Net:", xception_result.summary["dice_defective"], "vs separable U-Net:",
          seg_result.summary["dice_defective"])
else:
    print("TRAIN_XCEPTION is False: set it to True (and PRETRAINED = True) to train it")

# %% [markdown]
# ## 8. What the predictions look like
#
# The library's trained segmenter on three validation images: the true masks, then the
# predicted masks (probability above 0.5), at the model's resolution.

# %%
segmenter = load_model(seg_result.model_paths[0])
prob = predict(segmenter, x_val[:3])
examples = []
for n, image_id in enumerate(seg_val_ids[:3]):
    image = (x_val[n, ..., 0] * 255).astype(np.uint8)
    examples.append((image, y_val[n].astype(np.uint8), f"{image_id}: truth"))
    examples.append((image, (prob[n] > 0.5).astype(np.uint8), f"{image_id}: prediction"))
plot_overlays(examples)

# %% [markdown]
# ## Summary
#
# - A U-Net is an encoder, a decoder and skip connections; the library's `build_segmenter`
#   builds it on many encoders, Xception included.
# - BCE scores pixels, Dice scores overlap; compared on the same data, weights and budget,
#   the table above shows what each buys on defects and what it costs on empty pairs.
# - Per-class models give the rare class 2 a training set where it is not drowned out.
#
# Chapter 5 puts the classifier and the segmenter together and tunes the pipeline for the
# competition's metric.
