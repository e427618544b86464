"""Read Severstal images and resize images and masks consistently.

The images are JPEGs of 1600 x 256 pixels, grayscale stored as three identical channels. They
are read as one ``uint8`` channel: the JPEG decoder is asked for its luminance plane directly
(``Image.draft("L")``), which skips the colour conversion (about 3 ms instead of 11 ms per image)
and equals the first channel exactly for gray images (checked on the real sample).

Downscaling is area interpolation (a box filter) for images and masks alike, so a mask pixel
covers the same patch of steel as the image pixel beside it. Masks become the fraction of each
output pixel that is foreground, thresholded at 0.5.

**One image path.** A model sees an image as :func:`resize_image` then :func:`scale_image`
make it, in training (the ``tf.data`` pipelines of :mod:`steel_keras.data.tfdata`), tuning,
evaluation and prediction (:class:`steel_keras.pipeline.TwoStagePredictor`) alike, so that a
model is served the very pixels it was trained on. ``tests/test_pipeline.py`` checks it.

Example:
    >>> import numpy as np
    >>> m = np.zeros((256, 1600), np.uint8); m[:2, :2] = 1; m[2:4, :1] = 1
    >>> downscale_mask(m, (128, 800))[:2, :1].ravel().tolist()
    [1, 1]
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from steel_keras.constants import IMAGE_SHAPE
from steel_keras.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "broken_link",
    "check_size",
    "downscale_mask",
    "model_input",
    "read_image",
    "resize_image",
    "resize_masks",
    "scale_image",
]

#: uint8 grey levels to [0, 1]: ``x * SCALE`` in float32, in numpy and TensorFlow alike.
SCALE = 1 / 255

#: File name endings counted as images in ``train_images/`` and ``test_images/``.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def check_size(size: tuple[int, int] | None, name: str = "size") -> tuple[int, int] | None:
    """Validate a ``(height, width)`` argument; None passes through."""
    if size is None:
        return None
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise DataError(f"{name} must be positive (height, width), got {size!r}")
    return height, width


def read_image(
    path: str | Path,
    size: tuple[int, int] | None = None,
    *,
    expected_shape: tuple[int, int] | None = IMAGE_SHAPE,
) -> np.ndarray:
    """Read one image as a grayscale ``uint8`` array ``(H, W)``.

    Args:
        path: the image file (JPEG as Kaggle ships it; PNG also works).
        size: (height, width), optional. Resize with area interpolation, e.g. (128, 800).
        expected_shape: (height, width) the file must have, (256, 1600) by default; None
            accepts any size.

    Returns:
        A C-contiguous ``uint8`` array of ``size`` (or of the file's own size).

    Raises:
        DataError: the file is missing, is not a readable image, or has the wrong size.
    """
    path = Path(path)
    size = check_size(size)
    try:
        # Image.open reads the header only: the size is checked before anything is decoded.
        with Image.open(path) as img:
            _check_image_size(path, img, expected_shape)
            gray = _to_gray(img)
            return resize_image(gray, size)
    except FileNotFoundError:
        raise DataError(broken_link(path) or f"{path}: image file not found") from None
    except Image.DecompressionBombError:
        raise DataError(
            f"{path}: the image header claims more than {_max_pixels():,} pixels "
            "(a corrupt file or a decompression bomb); remove or replace it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: Exception) -> str:
    """Why an image file cannot be read: a broken link, or a corrupt or truncated file."""
    link = broken_link(path)
    if link:
        return link
    return (
        f"{path}: not a readable image ({exc}); the file may be corrupt or truncated: "
        "download or generate it again"
    )


def broken_link(path: Path) -> str | None:
    """What is wrong with ``path`` if it is a symbolic link that leads nowhere, else None."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (
                f"{path}: a symbolic link that loops ({exc.strerror}); remove it or point "
                "it at an image"
            )
        if os.path.islink(path):
            return (
                f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; "
                "remove it or point it at an image"
            )
    return None


def _max_pixels() -> int:
    """The most pixels an image of unchecked size may have: Pillow's bomb limit (its default,
    about 89 million, where a caller switched the limit off)."""
    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def _check_image_size(path: Path, img: Image.Image, expected: tuple[int, int] | None) -> None:
    if expected is None and img.width * img.height > _max_pixels():
        raise DataError(
            f"{path}: image is {img.width}x{img.height} pixels, more than "
            f"{_max_pixels():,}; remove it or scale it down"
        )
    if expected is not None and img.size != (expected[1], expected[0]):
        raise DataError(
            f"{path}: image is {img.size[0]}x{img.size[1]} (width x height); "
            f"expected {expected[1]}x{expected[0]} as in the Severstal data"
        )


def _to_gray(img: Image.Image) -> Image.Image:
    """One gray channel: the JPEG luminance plane, or the first channel of other files."""
    if img.format == "JPEG" and img.mode != "L":
        # Decode straight to luminance; for gray-as-RGB JPEGs it equals every channel.
        img.draft("L", img.size)
    img.load()
    if img.mode == "L":
        return img
    if img.mode in ("RGB", "RGBA", "LA"):
        return img.getchannel(0)
    return img.convert("L")


def resize_image(image: np.ndarray | Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    """Downscale a grayscale image by area to ``size`` (height, width): ``uint8`` ``(h, w)``.

    The one resize of every image a model sees. Integer factors (256 x 1600 to 128 x 800) take
    exact block means; other factors OpenCV's area interpolation, the very one the masks get
    (PIL's BOX filter places partial pixels differently, up to 17 grey levels apart at an
    edge). None returns the image unchanged, as a ``uint8`` array.
    """
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if size is None or img.size == (size[1], size[0]):
        return np.array(img, dtype=np.uint8)
    height, width = check_size(size)
    fy, ry = divmod(img.height, height)
    fx, rx = divmod(img.width, width)
    if ry == rx == 0 and fx >= 1 and fy >= 1:
        return np.array(img.reduce((fx, fy)), dtype=np.uint8)  # exact block means, fast
    import cv2  # here, not at the top: 0.25 s that the CSV-only commands need not pay

    return cv2.resize(np.asarray(img), (width, height), interpolation=cv2.INTER_AREA)


def scale_image(image: np.ndarray) -> np.ndarray:
    """``uint8`` grey levels to float32 in [0, 1] (``x * (1 / 255)``), as every model takes them."""
    return image.astype(np.float32) * np.float32(SCALE)


def model_input(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What a model of input ``size`` takes for ``uint8`` images ``(B, H, W)`` or ``(H, W)``.

    Returns:
        float32 ``(B, height, width, 1)`` in [0, 1]: :func:`resize_image`, then
        :func:`scale_image`.
    """
    images = np.asarray(images)
    batch = images[None] if images.ndim == 2 else images
    resized = np.stack([resize_image(image, size) for image in batch])
    return scale_image(resized)[..., None]


def downscale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one ``(H, W)`` 0/1 mask to ``size`` by area, keeping pixels at least half covered."""
    height, width = size
    if mask.shape == (height, width):
        return np.ascontiguousarray(mask, dtype=np.uint8)
    import cv2  # here, not at the top: 0.25 s that the CSV-only commands need not pay

    ry, rx = mask.shape[0] % height, mask.shape[1] % width
    if ry == rx == 0 and mask.shape[0] >= height and mask.shape[1] >= width:
        # Integer factors: the mean of 0/254 values in uint8 is exact, and a half-covered
        # pixel lands on 127; three times faster than going through float32.
        scaled = np.multiply(mask, 254, dtype=np.uint8)
        return (cv2.resize(scaled, (width, height), interpolation=cv2.INTER_AREA) >= 127).view(
            np.uint8
        )
    share = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    # A small tolerance so that exactly half-covered pixels count whatever the rounding.
    return (share >= 0.5 - 1e-6).view(np.uint8)


def resize_masks(masks: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an ``(H, W, C)`` stack of 0/1 masks class by class; None returns it unchanged."""
    if size is None or masks.shape[:2] == tuple(size):
        return masks
    out = np.zeros((*size, masks.shape[-1]), dtype=np.uint8)
    for c in range(masks.shape[-1]):
        out[..., c] = downscale_mask(masks[..., c], size)
    return out
