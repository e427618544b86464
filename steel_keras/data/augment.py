"""Augmentation that moves an image and its masks together (albumentations 2.x).

The transforms are those the 1st-place solution used: horizontal and vertical flips, random
brightness and contrast, and optionally random crops (it trained on 256 x 512 crops). Geometric
transforms apply to the image and the ``(H, W, C)`` mask alike; brightness and contrast to the
image only.

Example:
    >>> import numpy as np
    >>> aug = make_augmentation(crop=(128, 256), seed=0)
    >>> out = aug(image=np.zeros((256, 1600), np.uint8), mask=np.zeros((256, 1600, 4), np.uint8))
    >>> out["image"].shape, out["mask"].shape
    ((128, 256), (128, 256, 4))
"""

from __future__ import annotations

import albumentations as A

__all__ = ["make_augmentation"]


def make_augmentation(
    crop: tuple[int, int] | None = None,
    hflip: bool = True,
    vflip: bool = True,
    brightness_contrast: bool = True,
    p: float = 0.5,
    *,
    brightness_limit: float = 0.2,
    contrast_limit: float = 0.2,
    seed: int | None = None,
) -> A.Compose:
    """Build the training augmentation.

    Args:
        crop: (height, width), optional. A random crop of that size, taken first (cheaper:
            later transforms then work on the crop). Must fit in the image it is given.
        hflip: flip left-right with probability ``p``.
        vflip: flip top-bottom with probability ``p``.
        brightness_contrast: change brightness and contrast with probability ``p``.
        p: float in [0, 1]. The probability of each transform.
        brightness_limit: the largest brightness change, as a fraction of 255.
        contrast_limit: the largest contrast change, as a factor around 1.
        seed: int, optional. Seeds the transforms' random generator (albumentations' own).

    Returns:
        An ``albumentations.Compose``; call it as ``aug(image=image, mask=masks)`` with a
        ``uint8`` ``(H, W)`` image and an ``(H, W, C)`` mask, and read ``["image"]`` and
        ``["mask"]``.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    transforms: list[A.BasicTransform] = []
    if crop is not None:
        height, width = (int(v) for v in crop)
        transforms.append(A.RandomCrop(height=height, width=width, p=1.0))
    if hflip:
        transforms.append(A.HorizontalFlip(p=p))
    if vflip:
        transforms.append(A.VerticalFlip(p=p))
    if brightness_contrast:
        transforms.append(
            A.RandomBrightnessContrast(
                brightness_limit=brightness_limit, contrast_limit=contrast_limit, p=p
            )
        )
    return A.Compose(transforms, seed=seed)
