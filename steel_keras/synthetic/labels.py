"""Which images exist and which classes each holds: unique ids and the real class combinations."""

from __future__ import annotations

import math

import numpy as np

SPLITS = {"train": 0, "test": 1}

# Which classes an image holds, with the real train set's image counts (12,568 images): the
# 427 multi-class images split by class pair as in the public labels, the rest single-class.
COMBOS: tuple[tuple[tuple[int, ...], int], ...] = (
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
_COMBO_CDF = np.cumsum([n for _, n in COMBOS]) / sum(n for _, n in COMBOS)
_GOLDEN = (math.sqrt(5) - 1) / 2


def image_ids(seed: int, n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    """Unique 9-hex-digit ids (``0123abcde.jpg``) for the train and the test split.

    Each split draws from its own stream, so the first ids of a split do not depend on how many
    images either split has.
    """
    taken: set[str] = set()
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        rng = np.random.default_rng([seed, SPLITS[split], 0x1D5])
        ids: list[str] = []
        while len(ids) < n:
            for value in rng.integers(0, 16**9, size=n - len(ids) + 8):
                name = f"{int(value):09x}.jpg"
                if name not in taken and len(ids) < n:
                    taken.add(name)
                    ids.append(name)
        out.append(ids)
    return out[0], out[1]


def classes_of(seed: int, split: str, index: int) -> tuple[int, ...]:
    """The classes present in one image.

    A golden-ratio (Weyl) sequence instead of independent draws: any run of consecutive images
    holds each class combination in almost exactly its real proportion, so even a few dozen
    images have the real balance.
    """
    offset = np.random.default_rng([seed, SPLITS[split], 0xC1A55]).random()
    u = (offset + index * _GOLDEN) % 1.0
    return COMBOS[int(np.searchsorted(_COMBO_CDF, u, side="right"))][0]
