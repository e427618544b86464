"""A Severstal-like synthetic dataset: same layout, CSV formats and statistics as Kaggle's.

The generator writes a folder that every part of steel-keras reads exactly like the real
download (``train.csv``, ``train_images/``, ``test_images/``, ``sample_submission.csv``) plus
``test_truth.csv`` (the test set's masks, so the competition metric can be computed) and
``dataset_info.json``.

What it copies from the real data (see ``shared/reference/severstal_facts.md``):

- the share of defect-free images (47 %), of each class and of multi-class images, taken from
  the real counts (``_COMBOS``); classes never overlap;
- per-class mask areas, log-normal around the real medians (about 3,200 / 2,900 / 10,500 /
  25,000 px for classes 1-4), split into several connected parts like the real masks;
- masks drawn like an annotator would: coarse convex-ish polygons or rotated boxes with
  straight edges that include a margin of clean steel around the defect;
- grey steel texture (lighting gradient, vertical streaks, mottling, grain, dark bands at some
  edges), defects of widely varying contrast (a few at the noise level), JPEG quality 90.

Every image has its own random generator seeded from ``(seed, split, index)``, so the output is
the same byte for byte whatever the number of worker processes, and ``--train 100`` gives the
first 100 images of ``--train 1000``.

Example:
    >>> from steel_keras.synthetic import generate_dataset
    >>> path = generate_dataset("/tmp/steel-demo", n_train=8, n_test=2, seed=1, progress=False)
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['dataset_info.json', 'sample_submission.csv', 'test_images']
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from steel_keras.constants import CLASS_IDS, IMAGE_HEIGHT, IMAGE_SHAPE, IMAGE_WIDTH
from steel_keras.errors import DataError
from steel_keras.paths import default_data_dir
from steel_keras.rle import encode_rle

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_TEST",
    "DEFAULT_TRAIN",
    "GENERATOR",
    "GENERATOR_VERSION",
    "JPEG_QUALITY",
    "ensure_default_dataset",
    "generate_dataset",
    "is_synthetic_dataset",
    "render_image",
    "resolve_data_dir",
]

DEFAULT_TRAIN = 1000
DEFAULT_TEST = 200
DEFAULT_SEED = 2019
GENERATOR = "steel_keras.synthetic"
GENERATOR_VERSION = "2"
JPEG_QUALITY = 90  # the real images' quantisation tables are libjpeg's quality 90

INFO_FILE = "dataset_info.json"
# Present while a generation runs: a folder holding it is an unfinished synthetic dataset.
IN_PROGRESS_FILE = ".synthetic-in-progress"
_SPLITS = {"train": 0, "test": 1}
_OUTPUT_FILES = ("train.csv", "test_truth.csv", "sample_submission.csv", INFO_FILE)

# Which classes an image holds, with the real train set's image counts (12,568 images): the
# 427 multi-class images split by class pair as in the public labels, the rest single-class.
_COMBOS: tuple[tuple[tuple[int, ...], int], ...] = (
    ((), 5902),
    ((3,), 4759),
    ((1,), 769),
    ((4,), 516),
    ((2,), 195),
    ((3, 4), 284),
    ((1, 3), 91),
    ((1, 2), 35),
    ((2, 3), 14),
    ((1, 2, 3), 2),
    ((2, 4), 1),
)
_COMBO_CDF = np.cumsum([n for _, n in _COMBOS]) / sum(n for _, n in _COMBOS)
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class _ClassShape:
    """How one class's masks are drawn.

    Attributes:
        median_area: median of a mask's total area in pixels (real train set).
        sigma_area: spread of log(area).
        parts_scale: mean of the exponential that gives the number of extra polygons.
        aspect: median height / width of one polygon.
        spread: polygons of one mask lie within this many pixels of its centre, horizontally.
        tilt_deg: largest rotation of a polygon away from the image axes.
    """

    median_area: float
    sigma_area: float
    parts_scale: float
    aspect: float
    spread: float
    tilt_deg: float


# Medians and spreads measured on 1,429 real masks; aspects from the real polygons' boxes.
_SHAPES = {
    1: _ClassShape(3200, 0.85, 2.6, 2.0, 220, 25),
    2: _ClassShape(2900, 0.65, 0.8, 7.0, 60, 6),
    3: _ClassShape(10500, 1.2, 2.2, 3.6, 700, 10),
    4: _ClassShape(25000, 0.9, 1.3, 0.8, 350, 30),
}


# ----------------------------------------------------------------------------- ids and labels


def _image_ids(seed: int, n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    """Unique 9-hex-digit ids, each split from its own stream so that prefixes are stable."""
    taken: set[str] = set()
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        rng = np.random.default_rng([seed, _SPLITS[split], 0x1D5])
        ids: list[str] = []
        while len(ids) < n:
            for value in rng.integers(0, 16**9, size=n - len(ids) + 8):
                name = f"{int(value):09x}.jpg"
                if name not in taken and len(ids) < n:
                    taken.add(name)
                    ids.append(name)
        out.append(ids)
    return out[0], out[1]


def _classes_of(seed: int, split: str, index: int) -> tuple[int, ...]:
    """The classes present in one image.

    A golden-ratio (Weyl) sequence instead of independent draws: any run of consecutive images
    holds each class combination in almost exactly its real proportion, so even a few dozen
    images have the real balance.
    """
    offset = np.random.default_rng([seed, _SPLITS[split], 0xC1A55]).random()
    u = (offset + index * _GOLDEN) % 1.0
    return _COMBOS[int(np.searchsorted(_COMBO_CDF, u, side="right"))][0]


# ----------------------------------------------------------------------------- steel texture


def _upsample(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise: a coarse ``grid`` of normals resized bicubically to ``size`` (h, w)."""
    coarse = rng.standard_normal(grid, dtype=np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size[1], size[0]), Image.BICUBIC)
    return np.array(image)  # a writable copy


def _smooth_1d(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average with a box of ``width`` samples, same length (edges wrap)."""
    if width <= 1:
        return values
    kernel = np.ones(width, dtype=np.float32) / width
    padded = np.concatenate([values[-width:], values, values[:width]])
    return np.convolve(padded, kernel, mode="same")[width:-width]


def _lighting(rng: np.random.Generator, level: float) -> np.ndarray:
    """Brightness: a horizontal gradient of a few slow waves times a gentler vertical one."""
    x = np.linspace(0.0, 1.0, IMAGE_WIDTH, dtype=np.float32)
    y = np.linspace(0.0, 1.0, IMAGE_HEIGHT, dtype=np.float32)
    across = np.ones_like(x)
    for _ in range(3):
        freq, phase, amp = rng.uniform(0.2, 2.0), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.2)
        across += amp * np.cos(2 * np.pi * freq * x + phase)
    down = 1 + rng.uniform(0, 0.25) * np.cos(
        2 * np.pi * rng.uniform(0.2, 1.0) * y + rng.uniform(0, 2 * np.pi)
    )
    return level * np.outer(down, across).astype(np.float32)


def _fine_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Rolled-steel micro texture: short horizontal striations plus sparse bright glints."""
    from scipy.ndimage import gaussian_filter, uniform_filter1d

    striations = uniform_filter1d(rng.standard_normal(size, dtype=np.float32), 9, axis=1)
    glints = (rng.random(size, dtype=np.float32) > 0.985) * rng.uniform(1, 4, size)
    texture = 2.0 * striations + gaussian_filter(glints.astype(np.float32), 0.6) * 3.0
    return (texture - texture.mean()) / texture.std()


@functools.cache
def _texture_bank() -> dict[str, np.ndarray]:
    """Noise fields bigger than an image, made once per process from a fixed seed.

    Resizing coarse noise up to 256 x 1600 is the slowest step of drawing a background; each
    image instead takes a random window of these fields, flipped at random, which is as varied
    and about ten times cheaper.
    """
    rng = np.random.default_rng(0x57EE1)
    size = (IMAGE_HEIGHT, 2 * IMAGE_WIDTH)
    return {
        "streaky": _upsample(rng, (12, 1000), size),  # tall, thin blobs: rolled texture
        "mottle": _upsample(rng, (20, 260), size),  # rounder stains of 10-15 px
        "fade": np.clip(0.7 + 0.5 * _upsample(rng, (4, 160), size), 0.0, None),
        "fine": _fine_texture(rng, (2 * IMAGE_HEIGHT, 2 * IMAGE_WIDTH)),
        # Drawing 400k normals per image costs more than everything else together.
        "grain": rng.standard_normal((2 * IMAGE_HEIGHT, 2 * IMAGE_WIDTH), dtype=np.float32),
    }


def _window(rng: np.random.Generator, name: str) -> np.ndarray:
    """A random 256 x 1600 view of a bank field, flipped at random."""
    field = _texture_bank()[name]
    top = int(rng.integers(0, field.shape[0] - IMAGE_HEIGHT + 1))
    left = int(rng.integers(0, field.shape[1] - IMAGE_WIDTH + 1))
    view = field[top : top + IMAGE_HEIGHT, left : left + IMAGE_WIDTH]
    flip_y, flip_x = rng.random(2) < 0.5
    return view[:: -1 if flip_y else 1, :: -1 if flip_x else 1]


def _streaks(rng: np.random.Generator, amp: float) -> np.ndarray:
    """Rolling marks: vertical streaks of 1-20 px whose strength fades in and out downwards."""
    fine = _smooth_1d(rng.standard_normal(IMAGE_WIDTH, dtype=np.float32), 2)
    wide = _smooth_1d(rng.standard_normal(IMAGE_WIDTH, dtype=np.float32), 15) * 2.5
    return ((fine + wide) * amp)[None, :] * _window(rng, "fade")


def _benign_lines(rng: np.random.Generator, image: np.ndarray, noise: float) -> None:
    """Thin vertical lines that are NOT defects, so a line alone does not mean class 2 or 3."""
    for _ in range(rng.poisson(3.0)):
        col = int(rng.integers(0, IMAGE_WIDTH - 3))
        width = int(rng.integers(1, 4))
        top, bottom = sorted(rng.integers(0, IMAGE_HEIGHT, 2)) if rng.random() < 0.5 else (0, None)
        image[top:bottom, col : col + width] += rng.choice([-1, 1]) * rng.uniform(0.5, 2.5) * noise


def _dark_edges(rng: np.random.Generator, image: np.ndarray) -> None:
    """Darken a band at the left and/or right edge, like the strip's border in some images."""
    sides = rng.choice(["left", "right", "both"], p=[0.45, 0.45, 0.10])
    for side in ("left", "right"):
        if sides not in (side, "both"):
            continue
        width = int(rng.uniform(8, 220))
        ramp = int(rng.uniform(2, 25))
        factor = np.ones(width + ramp, dtype=np.float32)
        factor[:width] = rng.uniform(0.1, 0.55)
        factor[width:] = np.linspace(factor[0], 1.0, ramp, dtype=np.float32)
        if side == "left":
            image[:, : width + ramp] *= factor
        else:
            image[:, IMAGE_WIDTH - width - ramp :] *= factor[::-1]


def _steel(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A defect-free steel surface (float32, 0-255 scale) and the std of its fine texture."""
    level = float(np.clip(rng.normal(100, 20), 45, 160))
    if rng.random() < 0.05:  # a few very dark frames, as in the real set
        level = rng.uniform(20, 45)
    grain, fine = level * rng.uniform(0.03, 0.06), level * rng.uniform(0.03, 0.08)
    streaky, mottle = level * rng.uniform(0.01, 0.04), level * rng.uniform(0.01, 0.05)
    image = _lighting(rng, level)
    image += _streaks(rng, level * rng.uniform(0.015, 0.04))
    image += streaky * _window(rng, "streaky")
    image += mottle * _window(rng, "mottle")
    image += fine * _window(rng, "fine")
    image += grain * _window(rng, "grain")
    noise = float(math.sqrt(grain**2 + fine**2 + streaky**2 + mottle**2))
    _benign_lines(rng, image, noise)
    if rng.random() < 0.3:
        _dark_edges(rng, image)
    return image, noise


# ----------------------------------------------------------------------------- mask polygons


def _polygon(rng: np.random.Generator, area: float, shape: _ClassShape) -> np.ndarray:
    """A convex-ish polygon or rotated box of about ``area`` px, centred on (0, 0), as (n, 2) xy."""
    aspect = shape.aspect * float(np.exp(rng.normal(0, 0.35)))
    if rng.random() < 0.4:  # an annotator's rotated box
        xy = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / 2
    else:  # a hand-drawn outline: 5-9 clicks around the defect
        n = int(rng.integers(5, 10))
        angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n + rng.uniform(0, 6.3)
        radius = rng.uniform(0.85, 1.1, n) / 2
        xy = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    tilt = np.deg2rad(rng.uniform(-shape.tilt_deg, shape.tilt_deg))
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    xy = (xy * [1.0, aspect]) @ rot.T
    xs, ys = xy[:, 0], xy[:, 1]
    scale = math.sqrt(area / (0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))))
    xy *= scale
    tallest = IMAGE_HEIGHT * rng.uniform(0.85, 1.05)
    height = xy[:, 1].max() - xy[:, 1].min()
    if height > tallest:  # taller than the strip: keep the area by widening instead
        xy *= [height / tallest, tallest / height]
    return xy


def _raster(xy: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Fill polygon ``xy`` (image coordinates) inside ``box`` = (x0, y0, x1, y1): bool (h, w)."""
    x0, y0, x1, y1 = box
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon([(x - x0, y - y0) for x, y in xy], fill=1)
    return np.asarray(canvas, dtype=bool)


def _box_of(xy: np.ndarray, pad: int = 2) -> tuple[int, int, int, int] | None:
    """The polygon's bounding box clipped to the image, or None if it lies outside."""
    x0 = max(int(np.floor(xy[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(xy[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(xy[:, 0].max())) + pad + 1, IMAGE_WIDTH)
    y1 = min(int(np.ceil(xy[:, 1].max())) + pad + 1, IMAGE_HEIGHT)
    return (x0, y0, x1, y1) if x1 - x0 > 2 and y1 - y0 > 2 else None


def _place(rng: np.random.Generator, xy: np.ndarray, centre_x: float, spread: float) -> np.ndarray:
    """Move a polygon near ``centre_x``, at a random height that keeps most of it inside."""
    half_h = (xy[:, 1].max() - xy[:, 1].min()) / 2
    x = np.clip(centre_x + rng.uniform(-spread, spread), 0, IMAGE_WIDTH - 1)
    low, high = 0.8 * half_h, IMAGE_HEIGHT - 0.8 * half_h
    y = rng.uniform(low, high) if high > low else IMAGE_HEIGHT / 2 + rng.uniform(-10, 10)
    return xy + [x, y]


# ----------------------------------------------------------------------------- defect looks


def _soft_region(xy: np.ndarray, box: tuple[int, int, int, int], shrink: float) -> np.ndarray:
    """The defect's own area: the polygon shrunk towards its centre, edges blurred (0-1)."""
    centre = xy.mean(axis=0)
    inner = centre + (xy - centre) * shrink
    x0, y0, x1, y1 = box
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon([(x - x0, y - y0) for x, y in inner], fill=255)
    canvas = canvas.filter(ImageFilter.GaussianBlur(2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _pits(rng: np.random.Generator, region: np.ndarray, amp: float) -> np.ndarray:
    """Class 1: a cluster of small round or slightly tall pits, mostly of one sign."""
    from scipy.ndimage import gaussian_filter

    h, w = region.shape
    count = max(3, int(region.sum() / rng.uniform(30, 120)))
    ys, xs = rng.integers(0, h, 4 * count), rng.integers(0, w, 4 * count)
    keep = region[ys, xs] > rng.random(4 * count)
    ys, xs = ys[keep][:count], xs[keep][:count]
    sign = np.where(rng.random(ys.size) < 0.85, 1.0, -1.0) * rng.choice([-1.0, 1.0])
    out = np.zeros((h, w), dtype=np.float32)
    np.add.at(out, (ys, xs), sign * rng.uniform(0.5, 1.5, ys.size))
    sigma = (rng.uniform(0.8, 2.0) * rng.uniform(1.0, 1.8), rng.uniform(0.8, 2.0))
    # A blurred impulse peaks at 1 / (2 pi sy sx): scale back so a pit's peak is about ``amp``.
    return amp * 2 * np.pi * sigma[0] * sigma[1] * gaussian_filter(out, sigma, truncate=3.0)


def _marks(rng: np.random.Generator, region: np.ndarray, amp: float) -> np.ndarray:
    """Class 2: one or two short vertical marks, a few pixels wide, slightly wavy."""
    h, w = region.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), dtype=np.float32)
    for _ in range(1 + int(rng.random() < 0.3)):
        centre = rng.uniform(0.3, 0.7) * w + rng.uniform(-1, 1) * 0.15 * (yy - h / 2)
        centre += 1.5 * np.sin(yy / rng.uniform(8, 30) + rng.uniform(0, 6))
        half = rng.uniform(1.0, 4.0)
        strength = 0.6 + 0.4 * np.sin(yy / rng.uniform(10, 40) + rng.uniform(0, 6))
        out += rng.choice([-1.0, 1.0]) * strength * np.exp(-(((xx - centre) / half) ** 2))
    return amp * 1.3 * out * region


def _scratches(rng: np.random.Generator, region: np.ndarray, amp: float) -> np.ndarray:
    """Class 3: a streaky area of many vertical lines of varying width plus sharp scratches."""
    h, w = region.shape
    n = int(rng.integers(4, 8 + w // 4))
    xs = rng.uniform(0, w, n)
    widths = rng.uniform(0.7, 5.0, n)
    weights = rng.uniform(0.3, 1.0, n) * np.where(rng.random(n) < 0.8, 1, -1)
    cols = np.arange(w, dtype=np.float32)
    profile = (weights[:, None] * np.exp(-(((cols - xs[:, None]) / widths[:, None]) ** 2))).sum(0)
    # Streaks break up along their length: a tall-celled noise switches them on and off.
    fade = np.clip(0.4 + 0.8 * _upsample(rng, (max(2, h // 14), max(2, w // 3)), (h, w)), 0, 1)
    out = profile[None, :].astype(np.float32) * fade
    if rng.random() < 0.4:  # a long, thin scratch across the streaks
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        line = rng.uniform(0.2, 0.8) * w + np.tan(np.deg2rad(rng.uniform(-25, 25))) * (yy - h / 2)
        out += 1.2 * np.exp(-(((xx - line) / rng.uniform(0.6, 1.5)) ** 2))
    return amp * rng.choice([-1.0, 1.0], p=[0.3, 0.7]) * out * region


def _flakes(rng: np.random.Generator, region: np.ndarray, amp: float) -> np.ndarray:
    """Class 4: a large flaky patch with a rough inside and a rim of the opposite brightness."""
    h, w = region.shape
    field = _upsample(rng, (max(2, h // 25), max(2, w // 25)), (h, w))
    field += 0.5 * _upsample(rng, (max(2, h // 8), max(2, w // 8)), (h, w))
    # Ragged edges from the noise, but never outside the annotated region.
    patch = np.clip((region - 0.45 + 0.6 * field) * 2.5, 0.0, 1.0) * np.minimum(region * 4, 1)
    rough = 0.6 * _upsample(rng, (max(2, h // 3), max(2, w // 3)), (h, w))
    rim = 4.0 * patch * (1.0 - patch)
    sign = rng.choice([-1.0, 1.0], p=[0.6, 0.4])
    return amp * sign * (patch * (1.0 + 0.4 * rough) - 0.5 * rim)


_LOOKS = {1: _pits, 2: _marks, 3: _scratches, 4: _flakes}


# ----------------------------------------------------------------------------- one image


def _contrast(rng: np.random.Generator, noise: float) -> float:
    """Defect strength: log-normal around 7 x the texture noise; about 1 in 7 below 3 x.

    Version 1 drew it around 3.5 x: most defects were then invisible at the 2-4 x downscaled
    sizes models train on (a small CNN reached validation AUC 0.8, a U-Net at 64 x 400 found
    next to nothing), unlike the real images, where most defects are plain to see.
    """
    return noise * float(np.exp(rng.normal(math.log(7.0), 0.8)))


def _draw_class(
    rng: np.random.Generator, class_id: int, image: np.ndarray, taken: np.ndarray, noise: float
) -> np.ndarray:
    """Add one class's defect to ``image`` in place and return its mask; avoids ``taken``."""
    shape = _SHAPES[class_id]
    total = float(np.exp(rng.normal(math.log(shape.median_area), shape.sigma_area)))
    parts = 1 + min(int(rng.exponential(shape.parts_scale)), 11)
    areas = total * rng.dirichlet(np.full(parts, 1.5))
    mask = np.zeros(IMAGE_SHAPE, dtype=bool)
    centre = rng.uniform(0, IMAGE_WIDTH)
    amp = _contrast(rng, noise)
    for area in areas:
        base = _polygon(rng, max(area, 60.0), shape)
        for _ in range(10):  # re-place a polygon that would cover another class
            xy = _place(rng, base, centre, shape.spread)
            box = _box_of(xy)
            if box is None:
                continue
            inside = _raster(xy, box) & ~taken[box[1] : box[3], box[0] : box[2]]
            if inside.sum() >= 0.8 * area:
                break
        if box is None or not inside.any():
            continue
        region = _soft_region(xy, box, rng.uniform(0.6, 0.85)) * inside
        look = _LOOKS[class_id](rng, region, amp * rng.uniform(0.7, 1.3))
        image[box[1] : box[3], box[0] : box[2]] += look
        mask[box[1] : box[3], box[0] : box[2]] |= inside
    return mask


def render_image(seed: int, split: str, index: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Draw one synthetic image and its masks, exactly as :func:`generate_dataset` does.

    Args:
        seed: int. The dataset's seed.
        split: ``"train"`` or ``"test"``.
        index: int. The image's position in its split (0-based).

    Returns:
        ``(image, masks)``: a ``uint8`` (256, 1600) grey image before JPEG compression, and
        ``{class_id: uint8 (256, 1600) 0/1 mask}`` for the classes present (none when the
        image is defect-free).
    """
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    image, noise = _steel(rng)
    taken = np.zeros(IMAGE_SHAPE, dtype=bool)
    masks = {}
    for class_id in _classes_of(seed, split, index):
        mask = _draw_class(rng, class_id, image, taken, noise)
        if mask.any():
            masks[class_id] = mask.astype(np.uint8)
            taken |= mask
    return np.clip(image, 0, 255).round().astype(np.uint8), masks


def _write_jpeg(gray: np.ndarray, path: Path) -> None:
    """Save as an RGB JPEG of three equal channels, through a temporary name."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(gray, mode="L").convert("RGB").save(tmp, "JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def _make_one(task: tuple[str, int, str], seed: int, out: str) -> tuple[str, str, dict[int, str]]:
    """Worker: render, save and RLE-encode one image; returns (split, image id, {class: rle})."""
    split, index, image_id = task
    image, masks = render_image(seed, split, index)
    _write_jpeg(image, Path(out) / f"{split}_images" / image_id)
    return split, image_id, {c: encode_rle(m) for c, m in masks.items()}


# ----------------------------------------------------------------------------- the dataset


def is_synthetic_dataset(path: str | Path) -> bool:
    """True if ``path`` holds a dataset made by this generator, finished or interrupted."""
    path = Path(path)
    if (path / IN_PROGRESS_FILE).is_file():
        return True
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR


def _is_complete(path: Path) -> bool:
    return (path / "train.csv").is_file() and not (path / IN_PROGRESS_FILE).exists()


def _prepare_folder(out: Path, overwrite: bool) -> None:
    """Empty the generator's own files from ``out``; refuse a foreign non-empty folder."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; give a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or is_synthetic_dataset(out)):
        raise DataError(
            f"{out} is not empty and is not a synthetic dataset; choose another "
            "folder or pass --overwrite to replace its images and CSV files"
        )
    out.mkdir(parents=True, exist_ok=True)
    # Mark the folder unfinished before touching anything, so an interrupted run is never
    # mistaken for a complete dataset.
    (out / IN_PROGRESS_FILE).write_text(json.dumps({"generator": GENERATOR}) + "\n")
    for name in _OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    for split in _SPLITS:
        folder = out / f"{split}_images"
        folder.mkdir(exist_ok=True)
        for old in [*folder.glob("*.jpg"), *folder.glob("*.jpg.tmp")]:
            old.unlink()


def _fork_is_safe() -> bool:
    """Whether worker processes can be forked from this one.

    Forking is quick and needs nothing from the caller's script (spawned workers re-import the
    main module, which fails from stdin and re-runs unguarded scripts), but a fork copies
    other threads' locks: so only where fork exists and no other thread (TensorFlow's) runs.
    """
    import threading

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and "tensorflow" not in sys.modules
        and threading.active_count() == 1
    )


def _run_tasks(
    tasks: list[tuple[str, int, str]], seed: int, out: Path, workers: int, progress: bool
) -> Iterator[tuple[str, str, dict[int, str]]]:
    """Render every task, in order, in ``workers`` processes (or this one), with a progress bar."""
    from tqdm.auto import tqdm

    work = functools.partial(_make_one, seed=seed, out=str(out))
    bar = tqdm(total=len(tasks), desc="make-dataset", unit="img", disable=not progress)
    with contextlib.ExitStack() as stack:
        stack.enter_context(bar)
        if workers > 1 and _fork_is_safe():
            _texture_bank()  # built once here, shared with the forked workers
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap(work, tasks, chunksize=4)
        else:
            results = map(work, tasks)
        for result in results:
            bar.update(1)
            yield result


def _default_workers(n_images: int) -> int:
    # A worker costs a fork and a copy of the texture bank: worth it beyond a few dozen images.
    return 1 if n_images < 48 else max(1, min(2, os.cpu_count() or 1))


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_sample_submission(path: Path, test_ids: list[str]) -> None:
    """Kaggle's current format: one placeholder row ``ID.jpg,1 409600,0`` per test image."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ImageId", "EncodedPixels", "ClassId"])
        writer.writerows([image_id, f"1 {IMAGE_HEIGHT * IMAGE_WIDTH}", 0] for image_id in test_ids)


def _write_masks(path: Path, rows: list[tuple[str, int, str]]) -> None:
    """Write ``(image, class, rle)`` rows as ``ImageId,ClassId,EncodedPixels``."""
    # Imported here: worker processes import this module and never need pandas.
    import pandas as pd

    from steel_keras.data.annotations import write_annotations

    write_annotations(path, pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]))


def _dataset_info(seed: int, train: list[tuple], test: list[tuple], n: tuple[int, int]) -> dict:
    def per_class(rows: list[tuple]) -> dict[str, int]:
        return {str(c): sum(1 for _, k, _ in rows if k == c) for c in CLASS_IDS}

    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n[0],
        "n_test": n[1],
        "image_shape": list(IMAGE_SHAPE),
        "jpeg_quality": JPEG_QUALITY,
        "train_masks_per_class": per_class(train),
        "test_masks_per_class": per_class(test),
    }


def generate_dataset(
    out: str | Path,
    n_train: int = DEFAULT_TRAIN,
    n_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    *,
    overwrite: bool = False,
    workers: int | None = None,
) -> Path:
    """Write a synthetic Severstal dataset in Kaggle's layout.

    Files: ``train_images/*.jpg``, ``test_images/*.jpg`` (1600 x 256, RGB with three equal
    channels), ``train.csv`` and ``test_truth.csv`` (``ImageId,ClassId,EncodedPixels``,
    non-empty masks only), ``sample_submission.csv`` (``ImageId,EncodedPixels,ClassId`` with
    one ``1 409600,0`` placeholder row per test image) and ``dataset_info.json``. ``train.csv``
    and ``dataset_info.json`` are written last, so an interrupted run never looks complete.

    Args:
        out: str or Path. The folder; created if missing. A previous synthetic dataset there is
            replaced.
        n_train: int. Number of train images (0 or more).
        n_test: int. Number of test images (0 or more); at least one of the two must be > 0.
        seed: int (>= 0). The same seed gives the same files, byte for byte.
        progress: bool. Show a progress bar.
        overwrite: bool. Also replace the images and CSV files of a folder that is not a
            synthetic dataset (other files there are kept).
        workers: int, optional. Processes to draw images in; the default is 2 for more than a
            few dozen images, else 1. Where forking is unsafe (no ``fork``, or TensorFlow
            already imported) images are drawn in this process. The output never depends on it.

    Returns:
        The dataset folder.

    Raises:
        DataError: bad counts or seed, or ``out`` is a file or a foreign non-empty folder.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise DataError(
            f"need 0 or more train and test images and at least one in all; got "
            f"{n_train} train and {n_test} test"
        )
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}")
    out = Path(out).expanduser()
    _prepare_folder(out, overwrite)
    train_ids, test_ids = _image_ids(seed, n_train, n_test)
    tasks = [("train", i, name) for i, name in enumerate(train_ids)]
    tasks += [("test", i, name) for i, name in enumerate(test_ids)]
    rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}
    n_workers = workers if workers is not None else _default_workers(len(tasks))
    for split, image_id, rles in _run_tasks(tasks, seed, out, n_workers, progress):
        rows[split] += [(image_id, c, rle) for c, rle in sorted(rles.items())]
    _write_masks(out / "test_truth.csv", rows["test"])
    _write_sample_submission(out / "sample_submission.csv", test_ids)
    _write_masks(out / "train.csv.tmp", rows["train"])
    os.replace(out / "train.csv.tmp", out / "train.csv")
    info = _dataset_info(seed, rows["train"], rows["test"], (n_train, n_test))
    _write_atomic_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    (out / IN_PROGRESS_FILE).unlink()
    return out


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so two processes never generate into it at once."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; generation is rare enough to go without
        yield
        return
    # The lock file lives in the temp folder: inside the dataset it would look like foreign
    # content, beside it it would show up in the user's checkout.
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"steel-keras-data-{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _needs_generation(path: Path) -> str | None:
    """Why the default dataset at ``path`` must be (re)made, or None if it is ready."""
    if not _is_complete(path):
        return "not found" if not (path / IN_PROGRESS_FILE).exists() else "unfinished"
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None  # a complete dataset from elsewhere (e.g. a real download): use it as is
    if info.get("generator") == GENERATOR and info.get("generator_version") != GENERATOR_VERSION:
        return f"made by generator version {info.get('generator_version')}"
    return None


def ensure_default_dataset(
    progress: bool = True,
    *,
    n_train: int = DEFAULT_TRAIN,
    n_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
) -> Path:
    """The embedded dataset at :func:`~steel_keras.paths.default_data_dir`, made on first use.

    Generates ``DEFAULT_TRAIN`` train and ``DEFAULT_TEST`` test images with ``DEFAULT_SEED``
    (about half a minute) when the folder has no finished dataset, printing one line first.
    A finished dataset there is used as it is, whatever its size or origin.

    Args:
        progress: bool. Show a progress bar while generating.
        n_train: int. Train images to generate if needed.
        n_test: int. Test images to generate if needed.
        seed: int. Seed to generate with if needed.

    Returns:
        The dataset folder.
    """
    path = default_data_dir()
    if _needs_generation(path) is None:
        return path
    with _folder_lock(path):
        reason = _needs_generation(path)  # another process may have made it meanwhile
        if reason is not None:
            print(
                f"steel-keras: synthetic dataset {reason}; generating {n_train} train and "
                f"{n_test} test images in {path} (seed {seed}, once)",
                file=sys.stderr,
            )
            generate_dataset(path, n_train, n_test, seed, progress=progress)
    return path


def resolve_data_dir(path: str | Path | None) -> Path:
    """The dataset folder to use: ``path`` checked, or the embedded synthetic one for None.

    Args:
        path: str, Path or None. A Kaggle-layout folder (real or synthetic), or None for
            :func:`ensure_default_dataset`.

    Returns:
        The folder.

    Raises:
        DataError: the folder is missing, is a file, or has neither ``train.csv`` nor
            ``test_images/``.
    """
    if path is None:
        return ensure_default_dataset()
    folder = Path(path).expanduser()
    hint = (
        f"make one with `steel-keras make-dataset --out {folder}` or get the real data with "
        f"`steel-keras download --out {folder}`"
    )
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; {hint}")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a data folder; {hint}")
    if not (folder / "train.csv").is_file() and not (folder / "test_images").is_dir():
        raise DataError(
            f"{folder} has neither train.csv nor test_images/, so it is not a "
            f"Severstal dataset; {hint}"
        )
    return folder
