"""Run-length encoding of masks, exactly as the Severstal competition defines it.

An RLE string is space-separated pairs ``start length``. Starts are 1-indexed and pixels are
numbered top to bottom, then left to right (column-major, Fortran order) over a 256 x 1600
mask: pixel 1 is (row 0, col 0), pixel 2 is (row 1, col 0), pixel 257 is (row 0, col 1).

Both directions are vectorised with numpy; there is no Python loop over pixels or runs.
``benchmarks/bench_rle.py`` compares them with the public notebooks' versions.

Example:
    >>> mask = decode_rle("1 3 257 2")
    >>> mask.shape, int(mask.sum()), mask[:3, 0].tolist(), mask[:2, 1].tolist()
    ((256, 1600), 5, [1, 1, 1], [1, 1])
    >>> encode_rle(mask)
    '1 3 257 2'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE, NUM_CLASSES
from steel_keras.errors import RLEError

__all__ = [
    "decode_rle",
    "encode_rle",
    "is_empty_rle",
    "masks_from_rles",
    "rles_from_masks",
    "stack_masks",
    "unstack_masks",
    "validate_rle",
]


def is_empty_rle(rle: object) -> bool:
    """True for a missing mask: ``None``, NaN (an empty CSV cell) or a blank string."""
    if rle is None:
        return True
    if isinstance(rle, float):
        return rle != rle  # NaN
    return isinstance(rle, str) and not rle.strip()


def _where(image_id: str | None, class_id: int | None) -> str:
    parts = []
    if image_id is not None:
        parts.append(f"image {image_id}")
    if class_id is not None:
        parts.append(f"class {class_id}")
    return f" ({', '.join(parts)})" if parts else ""


# Tokens of at most 18 ASCII digits, so that they fit in int64 (the largest image has 409,600
# pixels). re.ASCII: Python's \d also matches other scripts' digits ("１", "١"), and \s other
# spaces (a no-break space), which np.fromstring cannot read.
_INTEGER = r"[-+]?[0-9]{1,18}"
_INTEGER_TOKENS = re.compile(rf"\s*(?:{_INTEGER}(?:\s+|\Z))*", re.ASCII)
_SEPARATORS = re.compile(r"\s+", re.ASCII)


def _parse_integers(rle: str) -> np.ndarray | None:
    """All whitespace-separated integers of ``rle``, or None if a token is not an integer."""
    # A regular expression checks the tokens first, so np.fromstring's text mode (several times
    # faster than int() per token) never meets a token it cannot read. Catching its warning
    # instead would need warnings.catch_warnings(), which changes the filters of every thread
    # and turned unrelated warnings into errors in concurrently running Keras code.
    if _INTEGER_TOKENS.fullmatch(rle) is None:
        return None
    return np.fromstring(rle, dtype=np.int64, sep=" ")


def _parse_runs(rle: str, n_pixels: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Split an RLE string into validated 0-indexed starts and lengths."""
    values = _parse_integers(rle)
    if values is None:
        tokens = _SEPARATORS.split(rle.strip(" \t\n\r\f\v"))
        bad = next(t for t in tokens if re.fullmatch(_INTEGER, t) is None)
        if re.fullmatch(r"[-+]?[0-9]+", bad):
            raise RLEError(
                f"malformed RLE{where}: token {bad[:24]!r}... is far past the end of an image "
                f"of {n_pixels} pixels"
            )
        raise RLEError(f"malformed RLE{where}: token {bad!r} is not an integer in ASCII digits 0-9")
    if values.size % 2:
        raise RLEError(
            f"malformed RLE{where}: odd number of tokens ({values.size}); "
            "expected pairs 'start length'"
        )
    starts, lengths = values[0::2], values[1::2]
    if starts.size and starts.min() < 1:
        i = int(np.argmax(starts < 1))
        raise RLEError(
            f"malformed RLE{where}: run {i + 1} starts at {starts[i]}; "
            "starts are 1-indexed and must be >= 1"
        )
    if lengths.size and lengths.min() < 1:
        i = int(np.argmax(lengths < 1))
        raise RLEError(
            f"malformed RLE{where}: run {i + 1} has length {lengths[i]}; lengths must be >= 1"
        )
    ends = starts - 1 + lengths  # exclusive, 0-indexed
    if ends.size and ends.max() > n_pixels:
        i = int(np.argmax(ends > n_pixels))
        raise RLEError(
            f"malformed RLE{where}: run {i + 1} ({starts[i]} {lengths[i]}) ends at "
            f"pixel {ends[i]}, past the last pixel {n_pixels}"
        )
    if starts.size > 1:
        clash = starts[1:] - 1 < ends[:-1]
        if clash.any():
            i = int(np.argmax(clash))
            raise RLEError(
                f"malformed RLE{where}: run {i + 2} starts at {starts[i + 1]}, "
                f"before run {i + 1} ends at {ends[i]}; runs must be sorted and "
                "must not overlap"
            )
    return starts - 1, lengths


def decode_rle(
    rle: str | None,
    shape: tuple[int, int] = IMAGE_SHAPE,
    *,
    image_id: str | None = None,
    class_id: int | None = None,
) -> np.ndarray:
    """Decode a competition RLE string into a ``uint8`` 0/1 mask of ``shape``.

    Args:
        rle: str or None. The ``EncodedPixels`` value; ``None``, NaN or ``""`` give an empty mask.
        shape: (height, width). The mask's shape. Defaults to (256, 1600).
        image_id: str, optional. Named in the error message if the RLE is malformed.
        class_id: int, optional. Named in the error message if the RLE is malformed.

    Returns:
        A ``uint8`` array of ``shape`` holding 0 and 1. It is Fortran-ordered (the RLE's own
        pixel order, so no transpose copy is made); ``np.ascontiguousarray`` gives C order.

    Raises:
        RLEError (a ValueError): odd number of tokens, a non-integer token, a start below 1, a
            length below 1, a run past the end of the image, or unsorted/overlapping runs.
    """
    height, width = shape
    n_pixels = height * width
    if is_empty_rle(rle):
        return np.zeros(shape, dtype=np.uint8)
    if not isinstance(rle, str):
        raise RLEError(
            f"malformed RLE{_where(image_id, class_id)}: expected a string, "
            f"got {type(rle).__name__}"
        )
    starts, lengths = _parse_runs(rle, n_pixels, _where(image_id, class_id))
    if starts.size == 0:
        return np.zeros(shape, dtype=np.uint8)
    # The column-major pixel sequence is gap, run, gap, run, ..., gap: repeat 0 and 1 that often.
    ends = starts + lengths
    counts = np.empty(2 * starts.size + 1, dtype=np.int64)
    counts[0] = starts[0]
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[1::2] = lengths
    counts[-1] = n_pixels - ends[-1]
    values = np.zeros(counts.size, dtype=np.uint8)
    values[1::2] = 1
    # Viewed as (width, height) and transposed: a Fortran-ordered view, no copy.
    return np.repeat(values, counts).reshape(width, height).T


def validate_rle(
    rle: str | None,
    shape: tuple[int, int] = IMAGE_SHAPE,
    *,
    image_id: str | None = None,
    class_id: int | None = None,
) -> None:
    """Raise :class:`RLEError` if ``rle`` is malformed for ``shape``; cheaper than decoding."""
    if is_empty_rle(rle):
        return
    if not isinstance(rle, str):
        raise RLEError(
            f"malformed RLE{_where(image_id, class_id)}: expected a string, "
            f"got {type(rle).__name__}"
        )
    _parse_runs(rle, shape[0] * shape[1], _where(image_id, class_id))


def encode_rle(mask: np.ndarray) -> str:
    """Encode a 2-D mask (any dtype; non-zero is foreground) as a competition RLE string.

    Returns ``""`` for an empty mask. ``decode_rle(encode_rle(m), m.shape)`` equals ``m != 0``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects a 2-D mask, got shape {mask.shape}")
    # One strided pass: compare against 0 while writing in column-major order.
    flat = np.not_equal(mask.T, 0, order="C").ravel()
    if flat.size == 0:
        return ""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        change = np.concatenate(([0], change))
    if flat[-1]:
        change = np.concatenate((change, [flat.size]))
    if change.size == 0:
        return ""
    runs = change.reshape(-1, 2)
    runs[:, 1] -= runs[:, 0]
    runs[:, 0] += 1
    return " ".join(map(str, runs.ravel().tolist()))


def stack_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Stack four per-class ``(H, W)`` masks into one ``(H, W, 4)`` uint8 array."""
    if len(masks) != NUM_CLASSES:
        raise ValueError(f"stack_masks expects {NUM_CLASSES} masks, got {len(masks)}")
    return np.stack([np.asarray(m, dtype=np.uint8) for m in masks], axis=-1)


def unstack_masks(masks: np.ndarray) -> list[np.ndarray]:
    """Split an ``(H, W, 4)`` array into four ``(H, W)`` masks, class 1 first."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[-1] != NUM_CLASSES:
        raise ValueError(f"unstack_masks expects (H, W, {NUM_CLASSES}), got {masks.shape}")
    return [masks[..., i] for i in range(NUM_CLASSES)]


def masks_from_rles(
    rles: Mapping[int, str | None] | Sequence[str | None],
    shape: tuple[int, int] = IMAGE_SHAPE,
    *,
    image_id: str | None = None,
) -> np.ndarray:
    """Decode the four classes' RLEs into one ``(H, W, 4)`` uint8 array.

    ``rles`` is either a mapping ``{class_id: rle}`` (missing classes are empty) or a sequence
    of four RLEs, class 1 first.
    """
    if isinstance(rles, Mapping):
        unknown = set(rles) - set(CLASS_IDS)
        if unknown:
            raise RLEError(f"class ids must be 1-4, got {sorted(unknown)}{_where(image_id, None)}")
        rles = [rles.get(c) for c in CLASS_IDS]
    if len(rles) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} RLEs, got {len(rles)}")
    out = np.zeros((*shape, NUM_CLASSES), dtype=np.uint8)
    for i, rle in enumerate(rles):
        if not is_empty_rle(rle):
            out[..., i] = decode_rle(rle, shape, image_id=image_id, class_id=i + 1)
    return out


def rles_from_masks(masks: np.ndarray) -> list[str]:
    """Encode an ``(H, W, 4)`` array as four RLE strings, class 1 first ("" when empty)."""
    return [encode_rle(m) for m in unstack_masks(masks)]
