"""Exploratory data analysis of a Severstal folder: the numbers (``eda.json``) and the plots.

The numbers come from ``train.csv`` alone (areas are summed from RLE run lengths; masks are
decoded once to count connected objects), so the EDA of the real 12,568-image download reads
no image except the few shown as examples, and works with either ``train.csv`` format and
without ``train_images/``. Classes missing from the data (a subset without class 2, say) get
zero counts and empty statistics, never an error.

Example:
    >>> stats = run_eda("datasets/synthetic", "runs/eda")  # doctest: +SKIP
    >>> print(format_eda_summary(stats))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from steel_keras.constants import CLASS_IDS
from steel_keras.data.dataset import (
    SteelDataset,
    defect_free_ids,
    open_dataset,
    per_image_table,
)
from steel_keras.paths import check_output
from steel_keras.rle import decode_rle
from steel_keras.rundir import write_json

__all__ = [
    "QUANTILES",
    "class_balance",
    "classes_per_image",
    "compute_eda",
    "empty_pair_share",
    "format_eda_summary",
    "run_eda",
    "summarize_masks",
]

#: Area statistics reported per class: name -> quantile (None for the mean).
QUANTILES = {"p05": 0.05, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95, "mean": None}


def _area_stats(areas: pd.Series) -> dict:
    """Count and quantiles of the non-zero areas; None statistics for a class without masks."""
    values = areas[areas > 0].to_numpy(dtype=float)
    stats: dict = {"count": int(values.size)}
    for name, q in QUANTILES.items():
        if not values.size:
            stats[name] = None
        else:
            stats[name] = float(values.mean() if q is None else np.quantile(values, q))
    return stats


def class_balance(long_table: pd.DataFrame) -> pd.Series:
    """Images with a mask of each class: a Series indexed 1-4 (zeros included), named "images".

    Example:
        >>> table = pd.DataFrame({"ImageId": ["a.jpg", "a.jpg", "b.jpg"], "ClassId": [1, 3, 3],
        ...                       "EncodedPixels": ["1 2", "5 2", "9 2"]})
        >>> class_balance(table).tolist()
        [1, 0, 2, 0]
    """
    counts = long_table.groupby("ClassId")["ImageId"].nunique()
    return counts.reindex(list(CLASS_IDS), fill_value=0).astype(np.int64).rename("images")


def classes_per_image(long_table: pd.DataFrame, all_ids: Sequence[str]) -> pd.Series:
    """Images with 0, 1, 2, 3 and 4 defect classes: a Series indexed 0-4, named "images".

    Defect-free images, which only ``all_ids`` lists, count in row 0; the sum is the number of
    distinct images.
    """
    per_image = long_table.groupby("ImageId")["ClassId"].nunique()
    n_classes = per_image.reindex(sorted(set(all_ids)), fill_value=0)
    counts = n_classes.value_counts().reindex(range(len(CLASS_IDS) + 1), fill_value=0)
    return counts.astype(np.int64).rename("images")


def empty_pair_share(long_table: pd.DataFrame, n_images: int) -> float:
    """Share of the ``4 * n_images`` (image, class) pairs without a mask.

    That is the competition score of an all-empty submission: Dice is 1 on an empty pair
    predicted empty and 0 on a non-empty pair predicted empty.

    Raises:
        ValueError: ``n_images`` is 0 or less, or too few to hold the table's masks.
    """
    n_pairs, n_masks = len(CLASS_IDS) * n_images, len(long_table)
    if n_images <= 0 or n_masks > n_pairs:
        raise ValueError(
            f"n_images={n_images} cannot hold {n_masks} masks; give the number of "
            "images, defect-free ones included"
        )
    return (n_pairs - n_masks) / n_pairs


def summarize_masks(long_table: pd.DataFrame, all_ids: Sequence[str]) -> dict:
    """The EDA counts of a long table (non-empty masks) and the list of every image id.

    Returns:
        images, images_with_defects, images_without_defects, defect_free_share, masks,
        images_per_class, masks_per_class, multi_class_images, classes_per_image (0-4),
        class_combinations, area_quantiles and empty_pair_share; class keys are "1"-"4".
    """
    table = per_image_table(long_table, all_ids)
    n_images = len(table)
    if n_images == 0:
        raise ValueError("no train images to describe")
    per_class = {str(c): int(n) for c, n in class_balance(long_table).items()}
    n_free = len(defect_free_ids(long_table, all_ids))
    histogram = classes_per_image(long_table, all_ids)
    combos = table["classes"].replace("", "none").value_counts()
    return {
        "images": n_images,
        "images_with_defects": n_images - n_free,
        "images_without_defects": n_free,
        "defect_free_share": n_free / n_images,
        "masks": len(long_table),
        "images_per_class": per_class,
        # One RLE per (image, class), so masks and images per class are the same count.
        "masks_per_class": dict(per_class),
        "multi_class_images": int((table["n_classes"] > 1).sum()),
        "classes_per_image": {str(k): int(v) for k, v in histogram.items()},
        "class_combinations": {str(k): int(v) for k, v in combos.sort_index().items()},
        "area_quantiles": {str(c): _area_stats(table[f"area_{c}"]) for c in CLASS_IDS},
        "empty_pair_share": empty_pair_share(long_table, n_images),
    }


def _count_objects(mask: np.ndarray, rle: str) -> int:
    """8-connected objects of a decoded mask, labelled inside the columns its runs span."""
    values = np.array(rle.split(), dtype=np.int64)
    height = mask.shape[0]
    # Runs are column-major: a run's first and last pixel give the columns it touches.
    first = int(values[0] - 1) // height
    last = int(values[-2] + values[-1] - 2) // height
    return cv2.connectedComponents(mask[:, first : last + 1], connectivity=8)[0] - 1


def _mask_shapes(masks: pd.DataFrame) -> dict:
    """Objects (8-connected components) per class, and pixels claimed by two classes at once."""
    objects = dict.fromkeys(CLASS_IDS, 0)
    overlapping = 0
    for image_id, rows in masks.groupby("ImageId", sort=False):
        union = None
        for class_id, rle in zip(rows["ClassId"], rows["EncodedPixels"], strict=True):
            mask = decode_rle(rle, image_id=image_id, class_id=int(class_id))
            objects[int(class_id)] += _count_objects(mask, rle)
            if len(rows) > 1:
                union = mask.copy() if union is None else union + mask
        if union is not None:
            overlapping += int(np.count_nonzero(union > 1))
    return {
        "objects_per_class": {str(c): n for c, n in objects.items()},
        "overlapping_pixels": overlapping,
    }


def compute_eda(ds: SteelDataset | str | Path | None, *, count_objects: bool = True) -> dict:
    """The numbers of the EDA: counts, class balance, areas, objects, the empty-pair share.

    Args:
        ds: a :class:`SteelDataset` or its folder (None: the embedded synthetic data).
        count_objects: decode every mask once to count connected objects and pixels in two
            classes (a few ms a mask); False skips both.

    Returns:
        A JSON-ready dict: :func:`summarize_masks`'s keys, plus data_dir, train_csv_format,
        test_images and, with ``count_objects``, objects_per_class and overlapping_pixels.
    """
    ds = open_dataset(ds)
    stats = {
        "data_dir": str(ds.root),
        "train_csv_format": ds.annotations.format,
        "test_images": len(ds.test_image_ids),
    }
    stats.update(summarize_masks(ds.masks_table, ds.train_image_ids))
    if count_objects:
        stats.update(_mask_shapes(ds.masks_table))
    return stats


def _example_ids(
    ds: SteelDataset, table: pd.DataFrame, class_id: int, n: int, seed: int
) -> list[str]:
    """Up to ``n`` images with ``class_id`` whose files exist, a seeded random choice."""
    candidates = table.loc[table[f"area_{class_id}"] > 0, "ImageId"].to_numpy()
    chosen: list[str] = []
    for image_id in np.random.default_rng(seed).permutation(candidates):
        if ds.image_path(image_id).is_file():
            chosen.append(str(image_id))
            if len(chosen) == n:
                break
    return sorted(chosen)


def _why_no_examples(ds: SteelDataset, table: pd.DataFrame, class_id: int) -> str:
    if not (table[f"area_{class_id}"] > 0).any():
        return "no masks of this class in train.csv"
    folder = ds.root / "train_images"
    if not folder.is_dir():
        return f"{folder} does not exist (the EDA numbers come from train.csv alone)"
    return f"none of this class's images is in {folder}"


def _example_figures(ds: SteelDataset, out_dir: Path, n: int, seed: int) -> tuple[dict, dict]:
    """One overlay figure per class; returns ``(figures, skipped)`` keyed by class."""
    from steel_keras.viz import plot_overlays

    table = ds.per_image_table().set_index("ImageId", drop=False)
    figures, skipped = {}, {}
    for class_id in CLASS_IDS:
        ids = _example_ids(ds, table, class_id, n, seed)
        if not ids:
            skipped[str(class_id)] = _why_no_examples(ds, table, class_id)
            continue
        examples = [
            (
                ds.load_image(i),
                ds.load_masks(i),
                f"{i}: class {table.at[i, 'classes'].replace(' ', ' + ')}",
            )
            for i in ids
        ]
        name = f"examples_class_{class_id}.png"
        plot_overlays(examples, out=out_dir / name)
        figures[f"examples_class_{class_id}"] = name
    return figures, skipped


def run_eda(
    data_dir: str | Path | None,
    out_dir: str | Path,
    *,
    examples_per_class: int = 3,
    seed: int = 0,
) -> dict:
    """Compute the EDA of a folder and write ``eda.json`` and the figures to ``out_dir``.

    Figures: ``class_balance.png``, ``classes_per_image.png``, ``area_histograms.png`` and
    ``examples_class_K.png`` (a few images of class K with all their masks drawn) for each
    class that has masks and image files.

    Args:
        data_dir: a Kaggle-layout folder, real or synthetic; None for the embedded data.
        out_dir: where to write; created if needed.
        examples_per_class: images per example figure.
        seed: which examples are drawn.

    Returns:
        The dict written to ``eda.json``: :func:`compute_eda`'s numbers plus ``figures``
        (name -> file name in ``out_dir``) and ``figures_skipped`` (class -> reason).
    """
    from steel_keras import viz

    ds = open_dataset(data_dir)
    out = check_output(out_dir, kind="dir", inputs=[ds.root])
    stats = compute_eda(ds)
    table = ds.per_image_table()
    viz.plot_class_balance(
        stats["images_per_class"],
        total_images=stats["images"],
        images_without_defects=stats["images_without_defects"],
        out=out / "class_balance.png",
    )
    viz.plot_classes_per_image(stats["classes_per_image"], out=out / "classes_per_image.png")
    viz.plot_area_histograms(
        {c: table[f"area_{c}"] for c in CLASS_IDS}, out=out / "area_histograms.png"
    )
    figures = {
        name: f"{name}.png" for name in ("class_balance", "classes_per_image", "area_histograms")
    }
    examples, skipped = _example_figures(ds, out, examples_per_class, seed)
    stats["figures"] = {**figures, **examples}
    stats["figures_skipped"] = skipped
    write_json(out / "eda.json", stats)
    return stats


def _cells(values: dict, fmt) -> str:
    return "".join(f"{fmt(values.get(str(c))):>10}" for c in CLASS_IDS)


def format_eda_summary(stats: dict) -> str:
    """A short text table of :func:`compute_eda`'s numbers."""
    n = stats["images"]
    lines = [
        f"EDA of {stats.get('data_dir', 'the data')} "
        f"(train.csv in the {stats.get('train_csv_format', '?')} format)",
        f"  train images      {n:>8,}   defect-free {stats['images_without_defects']:,} "
        f"({stats['images_without_defects'] / n:.1%}), multi-class "
        f"{stats['multi_class_images']:,}",
        f"  test images       {stats.get('test_images', 0):>8,}",
        f"  class             {_cells({str(c): c for c in CLASS_IDS}, str)}",
        f"  images            {_cells(stats['images_per_class'], lambda v: f'{v:,}')}",
    ]
    if "objects_per_class" in stats:
        objects = _cells(stats["objects_per_class"], lambda v: f"{v:,}")
        lines.append(f"  objects           {objects}")
    medians = {c: q["p50"] for c, q in stats["area_quantiles"].items()}
    lines.append(
        "  median area (px)  " + _cells(medians, lambda v: "-" if v is None else f"{v:,.0f}")
    )
    lines.append(
        f"  empty (image, class) pairs: {stats['empty_pair_share']:.4f} "
        "= the score of an all-empty submission"
    )
    return "\n".join(lines)
