"""Defect-free steel as the line camera sees it.

An image is ``light * reflectance``: the light is the camera's illumination (brighter towards
the bottom of the frame and in a broad band across it, sometimes a glare spot, near black
beyond the sheet's edge); the reflectance is 1 for plain steel plus the rolled texture
(horizontal micro-striations, grain, vertical rolling streaks, mottling, bright glints, drip
stains, diagonal rolling marks, thin lines) and, added later, the defects and the marks that
look like defects but are not (:func:`add_decoys`). Both are drawn to match the real images'
whole-image statistics (``steel_keras.synthetic.realism``), not any single real image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from steel_keras.constants import IMAGE_HEIGHT, IMAGE_WIDTH
from steel_keras.synthetic.noise import smooth_1d, soft_ellipse, upsample

H, W = IMAGE_HEIGHT, IMAGE_WIDTH

# Share of images (defect-free or not) with at least one unlabelled defect-like mark. In the
# real sample all 7 images whose labels are known show such marks outside their masks (the
# defect-free one a vertical chain of bright specks); with 7 of 7, shares below 0.65 are
# unlikely (one-sided 95 % bound), and marks on every image would leave none plain.
DECOY_SHARE = 0.75


@dataclass
class Surface:
    """A steel image before it is rounded to grey levels.

    Attributes:
        light: float32 (256, 1600). Illumination in grey levels.
        reflect: float32 (256, 1600). Reflectance, 1 for plain steel; defects add to it.
        noise: float. Standard deviation of the fine texture in ``reflect``: the unit that
            defect contrast is drawn in.
    """

    light: np.ndarray
    reflect: np.ndarray
    noise: float

    def to_uint8(self) -> np.ndarray:
        """The grey image: light times reflectance, clipped to 0-255."""
        image = self.light * np.maximum(self.reflect, 0.02)
        return np.clip(image, 0, 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- texture bank


def _striations(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Rolled micro texture: short horizontal striations, unit variance."""
    from scipy.ndimage import uniform_filter1d

    field = uniform_filter1d(rng.standard_normal(size, dtype=np.float32), 9, axis=1)
    return field / field.std()


def _specks(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Sparse glints: 3 % of pixels get a value in (0, 1], the rest 0."""
    u = rng.random(size, dtype=np.float32)
    return np.where(u > 0.97, (u - 0.97) / 0.03, 0.0).astype(np.float32)


def _dashes(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    """Short vertical dashes and dots (1-2 px wide, 2-60 px long), strengths in (0, 1]."""
    from scipy.ndimage import gaussian_filter

    h, w = size
    field = np.zeros(size, dtype=np.float32)
    lengths = np.exp(rng.uniform(math.log(2), math.log(60), count)).astype(int)
    for length, y, x, width, strength in zip(
        lengths,
        rng.integers(0, h, count),
        rng.integers(0, w - 2, count),
        rng.integers(1, 3, count),
        rng.random(count, dtype=np.float32),
        strict=True,
    ):
        field[y : y + length, x : x + width] = np.maximum(
            field[y : y + length, x : x + width], strength
        )
    return gaussian_filter(field, (0.8, 0.5))


def _diagonal_lines(rng: np.random.Generator, size: tuple[int, int], angle: float) -> np.ndarray:
    """Parallel thin lines at ``angle`` degrees from the horizontal, of random strength."""
    h, w = size
    length = w + h + 8
    profile = np.zeros(length, dtype=np.float32)
    for centre in np.cumsum(rng.exponential(7.0, length // 4)):
        if centre >= length - 4:
            break
        width = rng.uniform(0.5, 1.6)
        span = np.arange(int(centre) - 4, int(centre) + 5)
        profile[span] += rng.uniform(0.2, 1.0) * np.exp(-(((span - centre) / width) ** 2))
    theta = math.radians(angle)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    s = xx * math.sin(theta) + (h - 1 - yy) * math.cos(theta)
    return profile[s.astype(np.int32)]


def _patchy(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Mill scale: vertically drawn-out irregular patches from three octaves, unit variance."""
    field = upsample(rng, (6, 150), size)
    field += 0.6 * upsample(rng, (14, 400), size)
    field += 0.4 * upsample(rng, (40, 900), size)
    return field / field.std()


@functools.cache
def texture_bank() -> dict[str, np.ndarray]:
    """Noise fields bigger than an image, made once per process from a fixed seed.

    Drawing smooth noise at 256 x 1600 is the slowest step of a background; each image instead
    takes a random window of these fields, flipped at random, which is as varied and about ten
    times cheaper.
    """
    rng = np.random.default_rng(0x57EE2)
    size, big = (H, 2 * W), (2 * H, 2 * W)
    return {
        "streaky": upsample(rng, (12, 1000), size),  # tall, thin blobs: rolled texture
        "mottle": upsample(rng, (20, 260), size),  # rounder stains of 10-15 px
        "patchy": _patchy(rng, size),  # scale: tall irregular patches at three scales
        "fade": np.clip(0.7 + 0.5 * upsample(rng, (4, 160), size), 0.0, None),
        "fine": _striations(rng, big),
        "grain": rng.standard_normal(big, dtype=np.float32),
        "specks": _specks(rng, big),
        "dashes": _dashes(rng, big, 12000),
        "rolling_30": _diagonal_lines(rng, (H, W), 30.0),
        "rolling_60": _diagonal_lines(rng, (H, W), 60.0),
    }


def window(rng: np.random.Generator, name: str, h: int = H, w: int = W) -> np.ndarray:
    """A random ``h`` x ``w`` view of a bank field, flipped at random."""
    field = texture_bank()[name]
    top = int(rng.integers(0, field.shape[0] - h + 1))
    left = int(rng.integers(0, field.shape[1] - w + 1))
    view = field[top : top + h, left : left + w]
    flip_y, flip_x = rng.random(2) < 0.5
    return view[:: -1 if flip_y else 1, :: -1 if flip_x else 1]


# ----------------------------------------------------------------------------- light


def _along(rng: np.random.Generator) -> np.ndarray:
    """Brightness down the frame: mostly rising towards the bottom, by +-28 % around the mean."""
    y = np.linspace(0.0, 1.0, H, dtype=np.float32) ** rng.uniform(1.0, 2.2)
    slope = rng.lognormal(math.log(0.25), 0.4)
    if rng.random() < 0.15:  # flat, or darker towards the bottom
        slope *= rng.uniform(-0.8, 0.3)
    return 1.0 + 2.0 * slope * (y - y.mean())


def _across(rng: np.random.Generator) -> np.ndarray:
    """Brightness across the frame: a broad lit band, darker towards the edges, slow waves."""
    x = np.linspace(0.0, 1.0, W, dtype=np.float32)
    hump = np.exp(-0.5 * ((x - rng.uniform(0.25, 0.75)) / rng.uniform(0.18, 0.45)) ** 2)
    across = 1.0 + rng.uniform(0.25, 0.95) * (hump - hump.mean())
    for _ in range(2):
        across += rng.uniform(0, 0.06) * np.cos(
            2 * np.pi * rng.uniform(0.5, 3) * x + rng.uniform(0, 6.3)
        )
    return across


def _light(rng: np.random.Generator, level: float) -> np.ndarray:
    """Illumination: the two profiles above times ``level``, in 60 % of images with a glare spot."""
    along, across = _along(rng), _across(rng)
    light = level * np.outer(along, across).astype(np.float32)
    if rng.random() < 0.6:
        y = np.arange(H, dtype=np.float32)[:, None]
        x = np.arange(W, dtype=np.float32)[None, :]
        gy = np.exp(-0.5 * ((y - rng.uniform(0.5, 1.3) * H) / rng.uniform(40, 140)) ** 2)
        gx = np.exp(-0.5 * ((x - rng.uniform(0.1, 0.9) * W) / rng.uniform(80, 400)) ** 2)
        light *= 1.0 + rng.uniform(0.15, 0.6) * gy * gx
    return light


def _sheet_end(rng: np.random.Generator, light: np.ndarray) -> None:
    """Near-black floor beyond the sheet's (slightly slanted) left or right edge."""
    width = int(rng.uniform(10, 260))
    ramp = rng.uniform(1.5, 8.0)
    floor = rng.uniform(0.04, 0.2)
    band = width + 40
    x = np.arange(band, dtype=np.float32)[None, :]
    edge = width + rng.uniform(-0.08, 0.08) * (np.arange(H, dtype=np.float32)[:, None] - H / 2)
    factor = floor + (1.0 - floor) * np.clip((x - edge) / ramp + 0.5, 0.0, 1.0)
    if rng.random() < 0.5:
        light[:, :band] *= factor
    else:
        light[:, W - band :] *= factor[:, ::-1]


# ----------------------------------------------------------------------------- reflectance


def _rolling_streaks(rng: np.random.Generator, amp: float) -> np.ndarray:
    """Vertical streaks of 1-20 px whose strength fades in and out down the frame."""
    fine = smooth_1d(rng.standard_normal(W, dtype=np.float32), 2)
    wide = smooth_1d(rng.standard_normal(W, dtype=np.float32), 15) * 2.5
    bands = smooth_1d(rng.standard_normal(W, dtype=np.float32), 45) * 4.0
    return ((fine + wide + bands) * amp)[None, :] * window(rng, "fade")


def _thin_lines(rng: np.random.Generator, reflect: np.ndarray, noise: float) -> None:
    """Thin vertical lines that are NOT defects, mostly dark, so a line alone is no scratch.

    One in ten is a deep groove, as dark as many real scratches: real clean steel has them.
    """
    for _ in range(rng.poisson(3.0)):
        col = int(rng.integers(0, W - 3))
        width = int(rng.integers(1, 4))
        top, bottom = sorted(rng.integers(0, H, 2)) if rng.random() < 0.5 else (0, None)
        if rng.random() < 0.1:
            depth = -rng.uniform(0.3, 0.6)
        else:
            depth = (-1.0 if rng.random() < 0.75 else 1.0) * rng.uniform(0.5, 5.0) * noise
        reflect[top:bottom, col : col + width] += depth


def _drip_stains(rng: np.random.Generator, reflect: np.ndarray) -> None:
    """Irregular tall stains where the scale field peaks: mostly darker, as dried drops are."""
    peaks = np.clip((window(rng, "patchy") - rng.uniform(1.6, 2.4)) * 4.0, 0.0, 1.0)
    sign = -1.0 if rng.random() < 0.75 else 1.0
    reflect += sign * rng.uniform(0.1, 0.3) * peaks


def _rolling_marks(rng: np.random.Generator, reflect: np.ndarray) -> None:
    """A wide patch of faint parallel diagonal lines, as a roll leaves on the sheet."""
    h = int(min(H, rng.uniform(0.5, 1.5) * H))
    w = int(rng.uniform(150, 700))
    top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w))
    lines = window(rng, "rolling_30" if rng.random() < 0.5 else "rolling_60", h, w)
    reflect[top : top + h, left : left + w] += rng.uniform(0.05, 0.15) * lines * soft_ellipse(h, w)


def _reflectance(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Plain steel's reflectance around 1 and the std of its fine texture."""
    grain, fine = rng.uniform(0.025, 0.05), rng.uniform(0.02, 0.05)
    streaky, mottle = rng.uniform(0.015, 0.045), rng.uniform(0.01, 0.04)
    reflect = 1.0 + _rolling_streaks(rng, rng.uniform(0.01, 0.035))
    # Scale and pits: each image has its own amount, in patches, as in the real images.
    scale = np.clip(1.5 * (window(rng, "patchy") - rng.uniform(-0.5, 0.5)), -1.0, 1.0)
    where = np.clip((window(rng, "fade") - rng.uniform(0.5, 1.0)) * 3.0, 0.0, 1.0)
    reflect += rng.uniform(0.03, 0.12) * scale * where
    threshold = rng.uniform(0.6, 0.97)  # how many pits and dashes
    pits = np.maximum(window(rng, "dashes") - threshold, 0.0) / (1.0 - threshold)
    reflect -= rng.uniform(0.15, 0.5) * pits
    reflect += streaky * window(rng, "streaky")
    reflect += mottle * window(rng, "mottle")
    reflect += fine * window(rng, "fine")
    reflect += grain * window(rng, "grain")
    threshold = rng.uniform(0.4, 0.97)  # how many glints: from 1.8 % of pixels to 0.1 %
    glints = np.maximum(window(rng, "specks") - threshold, 0.0) / (1.0 - threshold)
    reflect += rng.uniform(0.4, 1.6) * glints
    noise = math.sqrt(grain**2 + fine**2 + streaky**2 + mottle**2)
    return reflect, noise


def draw_steel(rng: np.random.Generator) -> Surface:
    """A defect-free steel surface: light, reflectance and the texture's noise level."""
    level = float(np.clip(rng.normal(105, 20), 50, 165))
    if rng.random() < 0.05:  # a few very dark frames, as in the real set
        level = rng.uniform(18, 45)
    light = _light(rng, level)
    if rng.random() < 0.12:
        _sheet_end(rng, light)
    reflect, noise = _reflectance(rng)
    _thin_lines(rng, reflect, noise)
    if rng.random() < 0.4:
        _drip_stains(rng, reflect)
    if rng.random() < 0.25:
        _rolling_marks(rng, reflect)
    return Surface(light, reflect, noise)


# ----------------------------------------------------------------------------- decoys


def _stain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Oil or water: a smooth blob, sometimes only its drying rim, darker or brighter."""
    blob = soft_ellipse(h, w, rng.uniform(0.3, 0.9))
    if rng.random() < 0.3:
        blob = 4.0 * blob * (1.0 - blob)
    sign = -1.0 if rng.random() < 0.7 else 1.0
    return sign * rng.uniform(0.08, 0.3) * blob


def _glare(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A small bright reflection that saturates in its middle."""
    return rng.uniform(0.4, 1.5) * soft_ellipse(h, w, rng.uniform(0.4, 0.9))


def _speck_trail(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A loose trail of one-pixel bright specks."""
    out = np.zeros((h, w), dtype=np.float32)
    n = int(rng.integers(4, 20))
    out[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.uniform(0.5, 1.5, n)
    return out


def _scale(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Faint flaky mottling over a large area, with no rim or relief (those mark class 4)."""
    field = upsample(rng, (max(2, h // 12), max(2, w // 12)), (h, w))
    patch = np.clip(field - 0.3, 0.0, 1.0) * soft_ellipse(h, w, 0.5)
    return (1.0 if rng.random() < 0.6 else -1.0) * rng.uniform(0.06, 0.18) * patch


_DECOYS = (  # look, probability, (height range), (width range)
    (_stain, 0.35, (20, 160), (15, 120)),
    (_glare, 0.2, (6, 40), (6, 40)),
    (_speck_trail, 0.2, (30, 200), (10, 60)),
    (_scale, 0.25, (60, 256), (60, 300)),
)


def add_decoys(rng: np.random.Generator, surface: Surface, taken: np.ndarray) -> None:
    """Add unlabelled defect-like marks to :data:`DECOY_SHARE` of images, away from the masks."""
    if rng.random() >= DECOY_SHARE:
        return
    p = np.array([d[1] for d in _DECOYS])
    for _ in range(1 + rng.poisson(0.8)):
        look, _, (h0, h1), (w0, w1) = _DECOYS[int(rng.choice(len(_DECOYS), p=p))]
        h, w = int(rng.integers(h0, min(h1, H) + 1)), int(rng.integers(w0, w1 + 1))
        for _ in range(5):
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            if not taken[max(top - 8, 0) : top + h + 8, max(left - 8, 0) : left + w + 8].any():
                surface.reflect[top : top + h, left : left + w] += look(rng, h, w)
                break
