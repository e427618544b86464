"""RLE decode and encode throughput on realistic masks, against the public-notebook versions.

Compares, in one run on the same masks:

- decode: ``steel_keras.rle.decode_rle`` vs the per-run Python loop most public notebooks use
  (``for lo, hi in zip(starts, ends): img[lo:hi] = 1``);
- encode: ``steel_keras.rle.encode_rle`` vs the numpy ``diff`` encoder of the public notebooks
  (``pixels = img.T.flatten(); concatenate([[0], pixels, [0]]); where(...)``).

It also times a plain contiguous copy of a 256 x 1600 uint8 mask (``np.copyto``), the
memory-bandwidth floor: a decoder must write and an encoder must read at least those 409,600
bytes, so "time vs copy floor" says how far each is from that limit. Masks given to the encoders
are C-ordered, as a model's thresholded predictions are.

The masks are the real Severstal masks of ``$STEEL_KERAS_REAL_SAMPLE`` (by default
``../shared/real_sample``, not in the repository) when present (``--source
real``), else those of the synthetic dataset (``--source synthetic``, made on first use).

    python benchmarks/bench_rle.py [--source real|synthetic] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, median_time, write_results  # noqa: E402

from steel_keras.rle import decode_rle, encode_rle  # noqa: E402

SHAPE = (256, 1600)
REAL_CSV = (
    Path(os.environ.get("STEEL_KERAS_REAL_SAMPLE",
                        Path(__file__).resolve().parents[2] / "shared" / "real_sample"))
    / "derived"
    / "train_subset1000_new_format.csv"
)


def decode_loop(mask_rle: str, shape=SHAPE) -> np.ndarray:
    """The public notebooks' decoder: one Python slice assignment per run."""
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape, order="F")


def encode_numpy_diff(img: np.ndarray) -> str:
    """The public notebooks' encoder: flatten in column order, pad, diff, join."""
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def load_rles(source: str) -> tuple[list[str], str]:
    if source == "real":
        if not REAL_CSV.is_file():
            raise SystemExit(f"real sample not found at {REAL_CSV}; use --source synthetic")
        return pd.read_csv(REAL_CSV)["EncodedPixels"].tolist(), str(REAL_CSV)
    from steel_keras.synthetic import resolve_data_dir

    path = resolve_data_dir(None) / "train.csv"
    return pd.read_csv(path)["EncodedPixels"].tolist(), str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        choices=["real", "synthetic"],
        default="real" if REAL_CSV.is_file() else "synthetic",
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rles, origin = load_rles(args.source)
    # C-ordered, as a model's thresholded predictions are (decode_rle itself returns F order).
    masks = [np.ascontiguousarray(decode_rle(r)) for r in rles]
    for rle, mask in zip(rles, masks, strict=True):  # all four agree before we time them
        assert encode_rle(mask) == encode_numpy_diff(mask) == rle
        assert np.array_equal(decode_loop(rle), mask)
    n = len(rles)
    runs = np.array([len(r.split()) // 2 for r in rles])
    areas = np.array([int(m.sum()) for m in masks])

    t = {
        "decode_steel_keras": median_time(lambda: [decode_rle(r) for r in rles], args.repeats),
        "decode_loop": median_time(lambda: [decode_loop(r) for r in rles], args.repeats),
        "encode_steel_keras": median_time(lambda: [encode_rle(m) for m in masks], args.repeats),
        "encode_numpy_diff": median_time(
            lambda: [encode_numpy_diff(m) for m in masks], args.repeats
        ),
    }
    dst = np.empty(SHAPE, np.uint8)
    t["copy_one_mask_floor"] = median_time(lambda: [np.copyto(dst, m) for m in masks], args.repeats)
    per_mask_us = {k: v / n * 1e6 for k, v in t.items()}
    floor = per_mask_us["copy_one_mask_floor"]
    rows = [
        [
            "decode",
            "steel_keras.decode_rle",
            f"{per_mask_us['decode_steel_keras']:.1f}",
            f"{n / t['decode_steel_keras']:.0f}",
            f"{t['decode_loop'] / t['decode_steel_keras']:.2f}x",
            f"{per_mask_us['decode_steel_keras'] / floor:.1f}x",
        ],
        [
            "decode",
            "per-run Python loop (notebooks)",
            f"{per_mask_us['decode_loop']:.1f}",
            f"{n / t['decode_loop']:.0f}",
            "1.00x",
            f"{per_mask_us['decode_loop'] / floor:.1f}x",
        ],
        [
            "encode",
            "steel_keras.encode_rle",
            f"{per_mask_us['encode_steel_keras']:.1f}",
            f"{n / t['encode_steel_keras']:.0f}",
            f"{t['encode_numpy_diff'] / t['encode_steel_keras']:.2f}x",
            f"{per_mask_us['encode_steel_keras'] / floor:.1f}x",
        ],
        [
            "encode",
            "numpy diff encoder (notebooks)",
            f"{per_mask_us['encode_numpy_diff']:.1f}",
            f"{n / t['encode_numpy_diff']:.0f}",
            "1.00x",
            f"{per_mask_us['encode_numpy_diff'] / floor:.1f}x",
        ],
        [
            "floor",
            "np.copyto of one 256x1600 uint8 mask",
            f"{floor:.1f}",
            f"{n / t['copy_one_mask_floor']:.0f}",
            "",
            "1.0x",
        ],
    ]
    table = (
        f"RLE on {n} {args.source} masks (median {int(np.median(runs))} runs, median area "
        f"{int(np.median(areas))} px), median of {args.repeats} passes:\n\n"
        + markdown_table(
            [
                "op",
                "implementation",
                "µs / mask",
                "masks / s",
                "speed-up vs notebook",
                "time vs copy floor",
            ],
            rows,
        )
    )
    write_results(
        "rle",
        {
            "source": args.source,
            "origin": origin,
            "n_masks": n,
            "median_runs": int(np.median(runs)),
            "median_area": int(np.median(areas)),
            "seconds_total": t,
            "us_per_mask": per_mask_us,
            "decode_speedup": t["decode_loop"] / t["decode_steel_keras"],
            "encode_speedup": t["encode_numpy_diff"] / t["encode_steel_keras"],
        },
        table,
    )


if __name__ == "__main__":
    main()
