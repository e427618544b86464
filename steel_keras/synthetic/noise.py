"""Cheap smooth noise shared by the steel texture and the defects."""

from __future__ import annotations

import numpy as np
from PIL import Image


def upsample(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise: a coarse ``grid`` of normals resized bicubically to ``size`` (h, w)."""
    coarse = rng.standard_normal(grid, dtype=np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size[1], size[0]), Image.BICUBIC)
    return np.array(image)  # a writable copy


def smooth_1d(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average with a box of ``width`` samples, same length (edges wrap)."""
    if width <= 1:
        return values
    kernel = np.ones(width, dtype=np.float32) / width
    padded = np.concatenate([values[-width:], values, values[:width]])
    return np.convolve(padded, kernel, mode="same")[width:-width]


def soft_ellipse(h: int, w: int, edge: float = 0.3) -> np.ndarray:
    """An ellipse filling an ``h`` x ``w`` box: 1 inside, down to 0 over ``edge`` of its radius."""
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    radius = np.sqrt(yy * yy + xx * xx)
    return np.clip((1.0 - radius) / edge, 0.0, 1.0)
