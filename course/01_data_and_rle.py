# %% [markdown]
# # Chapter 1: The Severstal data and run-length encoding
#
# **What you will learn:** how the Kaggle download is laid out; the two formats of `train.csv`
# and how to read both into one table without losing the defect-free images; run-length
# encoding (RLE), first by hand and then with the library's tested `steel_keras.rle`; how to
# generate the synthetic data this course runs on, and how to get the real data.
#
# **Run time:** well under a minute on a laptop CPU, plus about half a minute the first time,
# when the synthetic dataset is generated. **Hardware:** a CPU; no GPU, no download.
#
# **Exercises:** `exercises/ch01_data_and_rle.py` (decode and encode RLE, a mask's area, read
# either CSV format, find the defect-free images); check them with
# `steel-keras grade --chapter 1 --path exercises`.

# %% [markdown]
# ## Setup
#
# `course_data()` is the folder the chapter reads: the synthetic dataset that ships with the
# course (generated into `datasets/synthetic/` on first use), or a small one when
# `STEEL_KERAS_SMOKE=1` (CI). Point `STEEL_KERAS_DATA` at the real Kaggle download and every
# chapter runs on it unchanged.

# %%
# %matplotlib inline
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from steel_keras.chapters import SMOKE, course_data
from steel_keras.data import (
    Annotations,
    SteelDataset,
    defect_free_ids,
    load_annotations,
    write_submission,
)
from steel_keras.errors import RLEError
from steel_keras.rle import decode_rle, encode_rle
from steel_keras.synthetic import generate_dataset
from steel_keras.viz import overlay_masks

DATA = course_data()
ds = SteelDataset(DATA)
scratch = Path(tempfile.mkdtemp(prefix="steel-keras-ch01-"))
print(f"data: {DATA}  (smoke mode: {SMOKE})")

# %% [markdown]
# ## 1. The Kaggle layout
#
# The competition's download is one folder:
#
# - `train_images/`: the training images, JPEG, 1600 pixels wide and 256 high;
# - `train.csv`: the masks of the training images, run-length encoded;
# - `test_images/`: the images to predict;
# - `sample_submission.csv`: the shape of a submission, one row per test image.
#
# The synthetic data has the same layout plus two files of its own: `test_truth.csv`, the
# masks of the test images (Kaggle kept those private, here they let us score a submission),
# and `dataset_info.json`, how it was generated.

# %%
for entry in sorted(DATA.iterdir()):
    if entry.is_dir():
        print(f"{entry.name + '/':<24} {len(list(entry.glob('*.jpg'))):>6} images")
    elif not entry.name.startswith("."):
        print(f"{entry.name:<24} {entry.stat().st_size:>10,} bytes")

# %% [markdown]
# An image is stored as RGB, but its three channels are identical: the steel is photographed
# in grayscale. The library reads it as one channel, which saves two thirds of the memory.

# %%
first_id = ds.train_image_ids[0]
rgb = np.asarray(Image.open(ds.image_path(first_id)))
print(f"{first_id}: shape {rgb.shape}, dtype {rgb.dtype}")
print("channels identical:", bool((rgb[..., 0] == rgb[..., 1]).all() and
                                  (rgb[..., 1] == rgb[..., 2]).all()))
print("as the library reads it:", ds.load_image(first_id).shape)

# %% [markdown]
# ## 2. `train.csv`, in two formats
#
# Kaggle changed the file after the competition. Today's download has one row per
# **non-empty** mask: `ImageId,ClassId,EncodedPixels`.

# %%
later = pd.read_csv(DATA / "train.csv")
print(f"{len(later)} rows for {later['ImageId'].nunique()} images "
      f"(of {len(ds.train_image_ids)} in train_images/)")
later.head().assign(EncodedPixels=later["EncodedPixels"].head().str.slice(0, 40) + " ...")

# %% [markdown]
# The original file of 2019, which most public notebooks read, has **four rows per image**,
# one per class, keyed `ImageId_ClassId`; an empty `EncodedPixels` means "no defect of that
# class". We write that format from the same masks (the library's `write_submission` writes
# any of the formats) to compare the two.

# %%
original_path = write_submission(scratch / "train_original.csv",
                                  Annotations(later, ds.train_image_ids), format="original")
original = pd.read_csv(original_path, keep_default_na=False)
print(f"{len(original)} rows = 4 x {len(ds.train_image_ids)} images")
original.head(8).assign(EncodedPixels=original["EncodedPixels"].head(8).str.slice(0, 30))

# %% [markdown]
# Both read into one **long table**, `ImageId, ClassId, EncodedPixels`, non-empty masks only.
# By hand: split `ImageId_ClassId` at its last underscore, drop the empty masks, sort.

# %%
def read_original_by_hand(path):
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    parts = raw["ImageId_ClassId"].str.rsplit("_", n=1, expand=True)
    table = pd.DataFrame({"ImageId": parts[0], "ClassId": parts[1].astype(int),
                          "EncodedPixels": raw["EncodedPixels"]})
    table = table[table["EncodedPixels"] != ""]
    return table.sort_values(["ImageId", "ClassId"]).reset_index(drop=True)


by_hand = read_original_by_hand(original_path)
print("same table from both formats:",
      by_hand.equals(later.sort_values(["ImageId", "ClassId"]).reset_index(drop=True)))

# %% [markdown]
# The library's `load_annotations` tells the formats apart by their columns, checks every
# RLE (a malformed one raises an error naming the file and the line) and also returns every
# image id the file lists. That is the catch: the original format lists the defect-free
# images (four empty rows each), the later one does not. With the later format, the
# defect-free images are the files in `train_images/` that the CSV never mentions, which is
# what `SteelDataset.train_image_ids` counts. Forget them and a "defect detector" is trained
# on defects only.

# %%
from_original = load_annotations(original_path)
from_later = load_annotations(DATA / "train.csv")
print("formats:", from_original.format, "/", from_later.format)
print("same masks:", from_original.table.equals(from_later.table))
print("image ids listed:", len(from_original.image_ids), "(original) vs",
      len(from_later.image_ids), "(later)")
defect_free = defect_free_ids(from_later.table, ds.train_image_ids)
print(f"defect-free images, found on disk: {len(defect_free)} of {len(ds.train_image_ids)}")

# %% [markdown]
# ## 3. Run-length encoding by hand
#
# A mask is 256 x 1600 = 409,600 pixels of 0 or 1. RLE stores it as pairs `start length`:
# "pixels `start` to `start + length - 1` are set". Two details decide whether a decoder is
# right:
#
# - `start` counts from **1**, not 0;
# - pixels are numbered **top to bottom, then left to right** (column-major, Fortran order):
#   pixel 1 is (row 0, col 0), pixel 2 is (row 1, col 0), pixel 257 is (row 0, col 1).
#
# Here is the numbering of a small 4 x 3 mask, and a mask with runs `1 3` and `6 2`:

# %%
height, width = 4, 3
print(np.arange(1, height * width + 1).reshape(width, height).T)

# %%
def decode_rle_by_hand(rle, shape):
    height, width = shape
    flat = np.zeros(height * width, dtype=np.uint8)
    numbers = [int(n) for n in rle.split()]
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        flat[start - 1:start - 1 + length] = 1
    return flat.reshape(shape, order="F")


print(decode_rle_by_hand("1 3 6 2", (4, 3)))

# %% [markdown]
# Encoding goes the other way: flatten in column-major order, pad with a zero at both ends,
# and the runs start where the values go 0 -> 1 and end where they go 1 -> 0. `np.diff` finds
# both without a loop over pixels.

# %%
def encode_rle_by_hand(mask):
    flat = np.concatenate([[0], mask.ravel(order="F") != 0, [0]]).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1  # 1-indexed positions where a run starts/ends
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


example = decode_rle_by_hand("1 3 6 2", (4, 3))
print(repr(encode_rle_by_hand(example)))

# %% [markdown]
# Now on the real thing: every mask of `train.csv` must survive a round trip, and the hand
# versions must agree with the library's `decode_rle` and `encode_rle`, which are vectorised
# (no Python loop over runs) and validate their input.

# %%
rles = from_later.table["EncodedPixels"].tolist()
shape = (256, 1600)
agree = all(
    np.array_equal(decode_rle_by_hand(r, shape), decode_rle(r, shape))
    and encode_rle_by_hand(decode_rle(r, shape)) == encode_rle(decode_rle(r, shape)) == r
    for r in rles
)
print(f"{len(rles)} masks: hand and library agree, round trip exact: {agree}")

start = time.perf_counter()
for r in rles:
    decode_rle_by_hand(r, shape)
hand_s = time.perf_counter() - start
start = time.perf_counter()
for r in rles:
    decode_rle(r, shape)
library_s = time.perf_counter() - start
print(f"decoding {len(rles)} masks: by hand {hand_s * 1000:.0f} ms, library "
      f"{library_s * 1000:.0f} ms ({hand_s / library_s:.1f}x faster)")

# %% [markdown]
# A decoder also has to refuse bad input rather than draw a wrong mask. The library raises an
# `RLEError` (a `ValueError`) that says what is wrong; the hand version would silently accept
# most of these.

# %%
for bad in ["1 3 5", "10 5 12 3", "409600 2", "5 0"]:
    try:
        decode_rle(bad, image_id="example.jpg", class_id=3)
    except RLEError as exc:
        print(f"{bad!r:>14}: {exc}")

# %% [markdown]
# ## 4. A mask on its image
#
# `SteelDataset.load_masks` decodes an image's four masks into one `(256, 1600, 4)` array,
# class 1 first, and `steel_keras.viz.overlay_masks` draws them in the course's class colours.
# Here is the training image with the most classes:

# %%
table = ds.per_image_table()
busiest = table.sort_values(["n_classes", "ImageId"], ascending=[False, True]).iloc[0]
masks = ds.load_masks(busiest["ImageId"])
print(busiest["ImageId"], "classes:", busiest["classes"], "| mask shape:", masks.shape)
overlay_masks(ds.load_image(busiest["ImageId"]), masks,
              title=f"{busiest['ImageId']}: classes {busiest['classes']}")

# %% [markdown]
# ## 5. Generating the synthetic data
#
# The real data cannot ship with the course, so `steel_keras.synthetic` draws a look-alike:
# steel texture with streaks and a lighting gradient, defects of the four classes with the
# real class balance and mask sizes, masks drawn as coarse polygons the way annotators drew
# them, and the same files. Chapter 2 checks how close its statistics come to the real data.
#
# On the command line: `steel-keras make-dataset --out DIR --train N --test M --seed S`.
# From Python, a tiny one:

# %%
mini = generate_dataset(scratch / "mini", n_train=6, n_test=2, seed=1, progress=False)
print(sorted(p.name for p in mini.iterdir()))
print(SteelDataset(mini).describe())

# %% [markdown]
# The generator is deterministic: every image has its own random generator seeded from the
# seed and its index, so the same seed gives the same files, byte for byte, on any machine.

# %%
again = generate_dataset(scratch / "again", n_train=6, n_test=2, seed=1, progress=False)


def digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


print("same seed, same bytes:", digest(mini) == digest(again))

# %% [markdown]
# ## 6. Getting the real data
#
# The real data is Kaggle's: accept the competition's rules on
# <https://www.kaggle.com/c/severstal-steel-defect-detection>, put your API token in
# `~/.kaggle/kaggle.json`, then
#
# ```bash
# steel-keras download --out datasets/severstal   # or, with Kaggle's own tool:
# kaggle competitions download -c severstal-steel-defect-detection -p datasets/severstal
# ```
#
# and unzip it there. Everything in this course then runs on it with
# `STEEL_KERAS_DATA=datasets/severstal`, or `course_data("datasets/severstal")` in a chapter.
# The cell below describes it when it is there.

# %%
real = Path("..") / "datasets" / "severstal"
if (real / "train.csv").is_file():
    print(SteelDataset(real).describe())
else:
    print(f"no real data at {real.resolve()}: this course runs on the synthetic data")

# %% [markdown]
# ## Summary
#
# - One folder, Kaggle's layout, for real and synthetic data alike.
# - `train.csv` comes in two formats; both read into the long table, and the defect-free
#   images come from the folder (or the original format's empty rows), never from the masks.
# - RLE is 1-indexed and column-major; decode and encode are a few lines of numpy; the
#   library's versions are vectorised (compare the timings printed above) and refuse malformed
#   input.
#
# Next, chapter 2 looks at what the masks say about the data, and about the metric.
