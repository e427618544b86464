# %% [markdown]
# # Chapter 2: Exploring the data, and what it means for the metric
#
# **What you will learn:** how unbalanced the four defect classes are; how many images have
# no defect at all, and how many have several classes; how large the masks are and how many
# pieces they come in; what the defects look like; and why, with this data, a submission that
# predicts **nothing at all** already scores about 0.85 on the competition's metric, which is
# the most important fact for everything that follows.
#
# **Run time:** under a minute on a laptop CPU. **Hardware:** a CPU; no GPU.
#
# **Exercises:** `exercises/ch02_eda.py` (a per-image table, the class balance, classes per
# image, the share of empty pairs); check them with `steel-keras grade --chapter 2 --path
# exercises`.

# %% [markdown]
# ## Setup
#
# `SteelDataset.per_image_table()` is the table this chapter works from: one row per train
# image with the classes it holds and each class's mask area in pixels, summed from the RLE
# run lengths without decoding a single mask (exercise 2.1 builds it).
#
# The real dataset's figures below (`REAL`) are Kaggle's, from the competition's `train.csv`
# and leaderboard; every other number is computed here, on whatever data `course_data()`
# gives.

# %%
# %matplotlib inline
import numpy as np
import pandas as pd
from scipy import ndimage

from steel_keras.chapters import SMOKE, course_data
from steel_keras.data import SteelDataset, defect_free_ids
from steel_keras.eda import class_balance, classes_per_image, empty_pair_share
from steel_keras.metrics.competition import competition_dice
from steel_keras.rle import decode_rle
from steel_keras.viz import (
    plot_area_histograms,
    plot_class_balance,
    plot_classes_per_image,
    plot_overlays,
)

ds = SteelDataset(course_data())
table = ds.per_image_table()
masks = ds.masks_table
CLASSES = [1, 2, 3, 4]
REAL = {
    "images": 12568,
    "defect_free": 5902,
    "images_per_class": {1: 897, 2: 247, 3: 5150, 4: 801},
    "objects_per_class": {1: 3082, 2: 321, 3: 14648, 4: 1907},
    "multi_class_images": 427,
    "all_empty_public_lb": 0.85560,
}
print(f"{len(table)} train images, {len(masks)} masks  (smoke mode: {SMOKE})")
table.head()

# %% [markdown]
# ## 1. Defect-free images
#
# About half of the real images show no defect. A model that sees only defective images (a
# classic mistake with the later `train.csv`, which lists defective images only) never learns
# to say "nothing here".

# %%
n_images = len(table)
n_free = len(defect_free_ids(masks, ds.train_image_ids))
print(f"defect-free: {n_free} of {n_images} = {n_free / n_images:.1%} "
      f"(real data: {REAL['defect_free'] / REAL['images']:.1%})")

# %% [markdown]
# ## 2. Class balance
#
# Count the images that have each class. In the real data class 3 dominates and class 2 is
# rare (the `real share` column); the synthetic data copies that balance, up to chance in a
# small sample. A model trained on all classes at once sees few class 2 examples, which is one
# reason the winning solutions trained per class or weighted the rare ones (chapter 4).

# %%
images_per_class = class_balance(masks)
balance = pd.DataFrame({
    "images": images_per_class,
    "share of masks": images_per_class / images_per_class.sum(),
    "real share": pd.Series(REAL["images_per_class"]) / sum(REAL["images_per_class"].values()),
})
print(balance.to_string(float_format="{:.1%}".format))
plot_class_balance(images_per_class.to_dict(), images_without_defects=n_free,
                   total_images=n_images)

# %% [markdown]
# ## 3. Classes per image
#
# Most defective images hold one class; a few hold two, almost never three. Classes never
# overlap on a pixel. So the task is **multi-label** (an image can have several classes),
# not multi-class, and a model needs one sigmoid per class, not one softmax over them.

# %%
class_counts = classes_per_image(masks, ds.train_image_ids)
print(class_counts.to_string())
multi = int((table["n_classes"] > 1).sum())
print(f"images with more than one class: {multi} = {multi / n_images:.1%} "
      f"(real data: {REAL['multi_class_images'] / REAL['images']:.1%})")
print("most common combinations:")
print(table.loc[table["has_defect"], "classes"].value_counts().head(6).to_string())
plot_classes_per_image(class_counts.to_dict())

# %% [markdown]
# ## 4. Mask sizes, and how many pieces a mask has
#
# Mask sizes differ a lot between classes (compare the medians printed below): in the real
# data class 1 and 2 masks are small and class 3 and 4 masks large. That matters twice later:
# a minimum-area threshold must be set per class, and a pixel-level loss like BCE is dominated
# by the large classes.

# %%
areas = {c: table.loc[table[f"area_{c}"] > 0, f"area_{c}"].to_numpy() for c in CLASSES}
area_table = pd.DataFrame({
    c: {"masks": len(a), "median px": np.median(a) if len(a) else np.nan,
        "median % of image": 100 * np.median(a) / (256 * 1600) if len(a) else np.nan,
        "10th pct px": np.percentile(a, 10) if len(a) else np.nan,
        "90th pct px": np.percentile(a, 90) if len(a) else np.nan}
    for c, a in areas.items()
}).T
print(area_table.round(1).to_string())
plot_area_histograms(areas)

# %% [markdown]
# A mask is often several separate regions (connected components), drawn by the annotator as
# one mask. Counting them needs the decoded mask:

# %%
def components(rle):
    _, count = ndimage.label(decode_rle(rle), structure=np.ones((3, 3)))
    return count


masks_with_parts = masks.assign(parts=masks["EncodedPixels"].map(components))
parts = masks_with_parts.groupby("ClassId")["parts"].mean().reindex(CLASSES)
real_parts = pd.Series({c: REAL["objects_per_class"][c] / REAL["images_per_class"][c]
                        for c in CLASSES})
print(pd.DataFrame({"regions per mask": parts, "real data": real_parts}).round(2).to_string())

# %% [markdown]
# Defect pixels are also a small share of all pixels, even within the images that have the
# class. This is the imbalance a segmentation loss has to live with:

# %%
pixel_share = pd.Series({c: areas[c].sum() / (n_images * 256 * 1600) for c in CLASSES},
                        name="share of all train pixels")
print(pixel_share.map("{:.3%}".format).to_string())

# %% [markdown]
# ## 5. What the defects look like
#
# One image of each class present (the one with the largest mask of that class), drawn with
# `steel_keras.viz.plot_overlays`, one colour per class throughout the course. Class 1:
# small pits; class 2: small vertical marks; class 3: scratches and long streaks; class 4:
# large patches. Some are faint: the defects' contrast varies, like the real ones'.

# %%
examples = []
for c in CLASSES:
    with_class = table[table[f"area_{c}"] > 0]
    if with_class.empty:
        continue
    image_id = with_class.sort_values(f"area_{c}").iloc[-1]["ImageId"]
    examples.append((ds.load_image(image_id), ds.load_masks(image_id),
                     f"class {c}: {image_id}"))
plot_overlays(examples)

# %% [markdown]
# ## 6. What this means for the metric
#
# The competition scores a submission by the **mean Dice over every (image, class) pair**:
# four pairs per test image, each scored `2 |X ∩ Y| / (|X| + |Y|)` for the predicted mask X
# and the true mask Y, and **1 when both are empty**.
#
# So an empty prediction scores 1 on every pair whose true mask is empty and 0 on the others.
# The score of a submission with no masks at all is the share of empty pairs:

# %%
empty_share = empty_pair_share(masks, n_images)
print(f"train: {len(masks)} masks in {4 * n_images} pairs -> all-empty score {empty_share:.4f}")
real_masks = sum(REAL["images_per_class"].values())
print(f"real train set: 1 - {real_masks} / (4 x {REAL['images']}) = "
      f"{1 - real_masks / (4 * REAL['images']):.4f}; all-empty on Kaggle's public "
      f"leaderboard: {REAL['all_empty_public_lb']}")

# %% [markdown]
# The same, scored properly on the held-out test images with the library's
# `competition_dice` (the synthetic data has their true masks in `test_truth.csv`):

# %%
truth = ds.test_truth
test_ids = ds.test_image_ids
nothing = pd.DataFrame(columns=["ImageId", "ClassId", "EncodedPixels"])
all_empty = competition_dice(nothing, truth, image_ids=test_ids)
print(f"all-empty submission on {len(test_ids)} test images: "
      f"{all_empty.competition_dice:.4f}")
print("per class:", {c: round(v, 4) for c, v in all_empty.per_class.items()})

# %% [markdown]
# Now the other side of the coin. Take a "perfect" segmenter that draws every true mask
# exactly, but also puts a small false mask (100 pixels) on every empty pair, as a segmenter
# without a gate tends to do on clean steel:

# %%
def with_false_positives(truth_table, image_ids, rle="1 100"):
    empty = [(i, c) for i in image_ids for c in CLASSES
             if ((truth_table["ImageId"] == i) & (truth_table["ClassId"] == c)).sum() == 0]
    noise = pd.DataFrame(empty, columns=["ImageId", "ClassId"]).assign(EncodedPixels=rle)
    return pd.concat([truth_table, noise], ignore_index=True)


true_table = truth.table[truth.table["ImageId"].isin(test_ids)]
perfect = competition_dice(true_table, truth, image_ids=test_ids)
noisy = competition_dice(with_false_positives(true_table, test_ids), truth, image_ids=test_ids)
print(f"perfect masks, nothing else:           {perfect.competition_dice:.4f}")
print(f"perfect masks + a false mask per empty pair: {noisy.competition_dice:.4f}")

# %% [markdown]
# The perfect segmenter with false positives scores **below the all-empty submission** printed
# above: it wins the few non-empty pairs and loses the many empty ones. Every empty pair a
# model leaves empty is worth as much as a perfect mask on a defect. This is why the
# two-stage pipeline of the winning solutions starts with a **classifier** that decides
# whether an image (or a class in it) has any defect before a segmenter draws anything
# (chapter 3), and why post-processing throws away small, unsure masks (chapter 5).
#
# With a perfect gate, a segmenter with mean Dice `d` on the non-empty pairs scores
# `empty_share + (1 - empty_share) * d`:

# %%
for d in (0.0, 0.3, 0.5, 0.7, 0.9):
    print(f"segmenter Dice {d:.1f} on defects, perfect gate: "
          f"{all_empty.empty_pair_share + (1 - all_empty.empty_pair_share) * d:.4f}")

# %% [markdown]
# ## Summary
#
# - Roughly half the images are defect-free; classes are very unbalanced (class 3 common,
#   class 2 rare); a few images hold two classes; masks are large for classes 3 and 4, small
#   for 1 and 2, and often in several pieces.
# - The metric averages Dice over all (image, class) pairs, most of them empty: doing nothing
#   scores the share of empty pairs, and a false positive on an empty pair costs a full point.
#
# Chapter 3 trains the classifier that guards those empty pairs.
