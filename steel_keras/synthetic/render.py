"""One synthetic image: steel, the defects of its classes, decoys, then JPEG like the real files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from steel_keras.constants import IMAGE_SHAPE
from steel_keras.rle import encode_rle
from steel_keras.synthetic.defects import draw_class
from steel_keras.synthetic.labels import SPLITS, classes_of
from steel_keras.synthetic.steel import add_decoys, draw_steel

JPEG_QUALITY = 90  # the real images' quantisation tables are libjpeg's quality 90


def render_image(seed: int, split: str, index: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Draw one synthetic image and its masks, exactly as the dataset generator does.

    Args:
        seed: int. The dataset's seed.
        split: ``"train"`` or ``"test"``.
        index: int. The image's position in its split (0-based).

    Returns:
        ``(image, masks)``: a ``uint8`` (256, 1600) grey image before JPEG compression, and
        ``{class_id: uint8 (256, 1600) 0/1 mask}`` for the classes present (none when the
        image is defect-free).
    """
    rng = np.random.default_rng([seed, SPLITS[split], index])
    surface = draw_steel(rng)
    taken = np.zeros(IMAGE_SHAPE, dtype=bool)
    masks = {}
    for class_id in classes_of(seed, split, index):
        mask = draw_class(rng, class_id, surface, taken)
        if mask.any():
            masks[class_id] = mask.astype(np.uint8)
            taken |= mask
    add_decoys(rng, surface, taken)
    return surface.to_uint8(), masks


def write_jpeg(gray: np.ndarray, path: Path) -> None:
    """Save as an RGB JPEG of three equal channels (4:2:0, like the real files), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(gray, mode="L").convert("RGB").save(tmp, "JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def make_one(task: tuple[str, int, str], seed: int, out: str) -> tuple[str, str, dict[int, str]]:
    """Worker: render, save and RLE-encode one image; returns (split, image id, {class: rle})."""
    split, index, image_id = task
    image, masks = render_image(seed, split, index)
    write_jpeg(image, Path(out) / f"{split}_images" / image_id)
    return split, image_id, {c: encode_rle(m) for c, m in masks.items()}
