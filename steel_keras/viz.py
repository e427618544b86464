"""Plots for the EDA and the chapters: mask overlays, class balance, areas, training curves.

Every function builds a :class:`matplotlib.figure.Figure` directly, without ``pyplot``, so no
window ever opens and nothing depends on the interactive backend: figures are drawn by Agg when
saved (``out=`` or :func:`save_figure`) and Jupyter shows a returned Figure inline. Classes keep
one colour everywhere (:data:`CLASS_COLORS`, Okabe-Ito colours that colour-blind readers can
tell apart).

Example:
    >>> import numpy as np
    >>> image = np.full((256, 1600), 128, np.uint8)
    >>> masks = np.zeros((256, 1600, 4), np.uint8); masks[50:90, 100:400, 2] = 1
    >>> fig = overlay_masks(image, masks, title="class 3 example")
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['class 3']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from steel_keras.constants import CLASS_IDS
from steel_keras.errors import DataError
from steel_keras.paths import atomic_output

__all__ = [
    "CLASS_COLORS",
    "overlay_masks",
    "plot_area_histograms",
    "plot_class_balance",
    "plot_classes_per_image",
    "plot_overlays",
    "plot_prediction_overlays",
    "plot_stage_scores",
    "plot_threshold_curves",
    "plot_training_curves",
    "save_figure",
]

#: One colour per defect class, used by every plot (Okabe-Ito palette).
CLASS_COLORS = {1: "#E69F00", 2: "#56B4E9", 3: "#D55E00", 4: "#009E73"}
NO_DEFECT_COLOR = "#999999"


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` (PNG, PDF or SVG by the suffix) with Agg, creating folders; return the path."""
    path = Path(path)
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def _finish(fig: Figure, out: str | Path | None) -> Figure:
    if out is not None:
        save_figure(fig, out)
    return fig


def _edges(mask: np.ndarray, width: int) -> np.ndarray:
    """The inner band of ``width`` pixels along a boolean mask's border."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (inner & padded[:-2, 1:-1] & padded[2:, 1:-1]
                 & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def overlay_masks(
    image: np.ndarray,
    masks: np.ndarray,
    ax: Axes | None = None,
    *,
    alpha: float = 0.35,
    outline: int = 2,
    title: str | None = None,
    legend: bool = True,
) -> Figure:
    """Draw a grayscale image with each class's mask filled and outlined in its colour.

    Args:
        image: ``(H, W)`` grayscale or ``(H, W, 3)`` uint8 image.
        masks: ``(H, W, 4)`` 0/1 masks, class 1 first, the image's height and width.
        ax: Axes to draw on; a new wide Figure when None.
        alpha: opacity of the mask fill, 0-1. Defaults to 0.35.
        outline: width in pixels of the opaque border drawn around each mask; 0 for none.
        title: optional Axes title.
        legend: list the classes present in a legend.

    Returns:
        The Figure holding the Axes.
    """
    image, masks = np.asarray(image), np.asarray(masks)
    if masks.ndim != 3 or masks.shape[-1] != len(CLASS_IDS):
        raise ValueError(f"masks must be (H, W, {len(CLASS_IDS)}), got shape {masks.shape}")
    if image.shape[:2] != masks.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and masks {masks.shape[:2]} differ in size; "
                         "resize one to the other first")
    if ax is None:
        ax = Figure(figsize=(12, 12 * image.shape[0] / image.shape[1] + 0.6),
                    layout="constrained").add_subplot()
    rgba = np.zeros((*masks.shape[:2], 4), dtype=np.float32)
    present = []
    for index, class_id in enumerate(CLASS_IDS):
        mask = masks[..., index] != 0
        if not mask.any():
            continue
        present.append(class_id)
        rgba[mask] = (*to_rgb(CLASS_COLORS[class_id]), alpha)
        if outline:
            rgba[_edges(mask, outline)] = (*to_rgb(CLASS_COLORS[class_id]), 1.0)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    if legend and present:
        ax.legend(handles=[Patch(color=CLASS_COLORS[c], label=f"class {c}") for c in present],
                  loc="upper right", fontsize=8, framealpha=0.8)
    return ax.figure


def plot_overlays(
    examples: Sequence[tuple[np.ndarray, np.ndarray, str]],
    *,
    alpha: float = 0.35,
    out: str | Path | None = None,
) -> Figure:
    """Stack several ``(image, masks, title)`` overlays in one column, one Figure."""
    if not examples:
        raise ValueError("plot_overlays needs at least one (image, masks, title) example")
    height, width = np.asarray(examples[0][0]).shape[:2]
    row_height = 12 * height / width + 0.35
    fig = Figure(figsize=(12, row_height * len(examples)), layout="constrained")
    for ax, (image, masks, title) in zip(fig.subplots(len(examples), 1, squeeze=False)[:, 0],
                                         examples, strict=True):
        overlay_masks(image, masks, ax=ax, alpha=alpha, title=title)
    return _finish(fig, out)


def _by_class(values: Mapping) -> dict[int, object]:
    """Accept ``{1: v}`` or ``{"1": v}``; absent classes are left out."""
    return {int(k): v for k, v in values.items() if int(k) in CLASS_IDS}


def _label_bars(ax: Axes, bars, total: int) -> None:
    for bar in bars:
        count = int(bar.get_height())
        share = f" ({100 * count / total:.1f}%)" if total else ""
        ax.annotate(f"{count:,}{share}", (bar.get_x() + bar.get_width() / 2, count),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")


def plot_class_balance(
    images_per_class: Mapping,
    *,
    images_without_defects: int | None = None,
    total_images: int | None = None,
    out: str | Path | None = None,
) -> Figure:
    """Bar chart of images per defect class, and of defect-free images when given.

    Args:
        images_per_class: ``{class_id: number of images}`` (int or str keys, 1-4).
        images_without_defects: adds a "none" bar.
        total_images: base of the percentages on the bars; the bars' sum when None.
        out: save the Figure there too.
    """
    counts = _by_class(images_per_class)
    labels = [f"class {c}" for c in CLASS_IDS]
    values = [int(counts.get(c, 0)) for c in CLASS_IDS]
    colors = [CLASS_COLORS[c] for c in CLASS_IDS]
    if images_without_defects is not None:
        labels.append("no defect")
        values.append(int(images_without_defects))
        colors.append(NO_DEFECT_COLOR)
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(labels, values, color=colors)
    _label_bars(ax, bars, total_images if total_images is not None else sum(values))
    ax.set_ylabel("images")
    ax.set_title("Images per defect class")
    ax.margins(y=0.15)
    return _finish(fig, out)


def plot_classes_per_image(histogram: Mapping, *, out: str | Path | None = None) -> Figure:
    """Bar chart of how many images carry 0, 1, 2, ... defect classes."""
    counts = {int(k): int(v) for k, v in histogram.items()}
    keys = list(range(0, max([*counts, 2]) + 1))
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar([str(k) for k in keys], [counts.get(k, 0) for k in keys],
                  color=[NO_DEFECT_COLOR] + ["#0072B2"] * (len(keys) - 1))
    _label_bars(ax, bars, sum(counts.values()))
    ax.set_xlabel("defect classes in the image")
    ax.set_ylabel("images")
    ax.set_title("Classes per image")
    ax.margins(y=0.15)
    return _finish(fig, out)


def plot_area_histograms(
    areas: Mapping, *, bins: int = 30, out: str | Path | None = None
) -> Figure:
    """One histogram per class of mask areas in pixels, on a shared logarithmic x axis.

    Args:
        areas: ``{class_id: sequence of mask areas}`` (int or str keys); zeros are ignored and
            a class without masks gets an empty panel saying so.
        bins: number of logarithmic bins.
        out: save the Figure there too.
    """
    by_class = {c: np.asarray(v, dtype=float) for c, v in _by_class(areas).items()}
    by_class = {c: v[v > 0] for c, v in by_class.items()}
    every = np.concatenate([v for v in by_class.values()] + [np.empty(0)])
    low, high = (every.min(), every.max()) if every.size else (1.0, 10.0)
    edges = np.logspace(np.log10(low), np.log10(max(high, low * 10)), bins + 1)
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, class_id in zip(axes, CLASS_IDS, strict=True):
        values = by_class.get(class_id, np.empty(0))
        ax.set_xscale("log")
        ax.set_title(f"class {class_id}: {values.size:,} masks", fontsize=10)
        if values.size:
            ax.hist(values, bins=edges, color=CLASS_COLORS[class_id])
            ax.axvline(np.median(values), color="black", lw=1, ls="--", label="median")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no class {class_id} masks", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
    for ax in axes[2:]:
        ax.set_xlabel("mask area (pixels, log scale)")
    for ax in axes[::2]:
        ax.set_ylabel("masks")
    fig.suptitle("Mask area per class")
    return _finish(fig, out)


def _read_history(history: pd.DataFrame | Mapping | str | Path) -> pd.DataFrame:
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise DataError(f"{path}: training history CSV not found")
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the history CSV is empty") from None
    else:
        frame = pd.DataFrame(history)
    if frame.empty:
        raise DataError("the training history has no epochs to plot")
    return frame


def plot_training_curves(
    history: pd.DataFrame | Mapping | str | Path, out: str | Path | None = None
) -> Figure:
    """Training and validation curves, one panel per metric.

    Args:
        history: a DataFrame or ``History.history`` dict (one column per metric, ``val_``
            prefixed for validation) or the path of a Keras ``CSVLogger`` file.
        out: save the Figure there too.
    """
    frame = _read_history(history)
    epochs = frame["epoch"] + 1 if "epoch" in frame else pd.Series(range(1, len(frame) + 1))
    names = [c for c in frame.columns if c != "epoch" and not c.startswith("val_")]
    names += [c[4:] for c in frame.columns if c.startswith("val_") and c[4:] not in frame]
    fig = Figure(figsize=(4.2 * min(len(names), 3), 3.4 * -(-len(names) // 3)),
                 layout="constrained")
    axes = fig.subplots(-(-len(names) // 3), min(len(names), 3), squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        for column, label in ((name, "train"), (f"val_{name}", "validation")):
            if column in frame:
                ax.plot(epochs, frame[column], marker="o", ms=3, label=label)
        if name in ("lr", "learning_rate"):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    return _finish(fig, out)


def plot_stage_scores(
    metrics: Mapping, stages: Sequence[str], *, out: str | Path | None = None
) -> Figure:
    """Grouped bars: the competition metric and per-class Dice of each pipeline stage.

    Args:
        metrics: an evaluation's ``metrics.json``: ``{stage: {"competition_dice": float,
            "per_class": {"1": float, ...}}}``.
        stages: the stages to draw, in order.
    """
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.add_subplot()
    groups = ["mean", *[f"class {c}" for c in CLASS_IDS]]
    width = 0.8 / len(stages)
    for k, stage in enumerate(stages):
        values = [metrics[stage]["competition_dice"],
                  *[metrics[stage]["per_class"][str(c)] for c in CLASS_IDS]]
        xs = np.arange(len(groups)) + (k - (len(stages) - 1) / 2) * width
        ax.bar(xs, values, width, label=stage.replace("_", " "))
    ax.set_xticks(np.arange(len(groups)), groups)
    low = min(metrics[s]["competition_dice"] for s in stages)
    ax.set_ylim(max(0.0, min(low, *(metrics[s]["per_class"][str(c)] for s in stages
                                    for c in CLASS_IDS)) - 0.05), 1.0)
    ax.set_ylabel("Dice (1 where both masks are empty)")
    ax.set_title("Competition metric by pipeline stage", loc="left", fontsize=10)
    ax.legend(fontsize=8, ncols=len(stages), loc="lower center", bbox_to_anchor=(0.5, -0.32))
    return _finish(fig, out)


def plot_threshold_curves(search: Mapping, *, out: str | Path | None = None) -> Figure:
    """Validation Dice per class against the pixel threshold (best area and label for each).

    Args:
        search: the record of ``steel_keras.pipeline.search_thresholds``.
    """
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for class_id in CLASS_IDS:
        record = search["per_class"][str(class_id)]
        curve = record["dice_by_pixel_threshold"]
        xs = [float(t) for t in curve]
        ax.plot(xs, list(curve.values()), marker="o", ms=3, color=CLASS_COLORS[class_id],
                label=f"class {class_id} (best {record['dice']:.3f} at {record['pixel']})")
    ax.set_xlabel("pixel threshold")
    ax.set_ylabel("validation Dice")
    ax.set_title("Threshold search", loc="left", fontsize=10)
    ax.legend(fontsize=8)
    return _finish(fig, out)


def plot_prediction_overlays(
    ds,
    image_ids: Sequence[str],
    predictions,
    *,
    split: str = "test",
    out: str | Path | None = None,
) -> Figure:
    """For each image, the true masks above the predicted ones.

    Args:
        ds: a :class:`~steel_keras.data.SteelDataset`.
        image_ids: the images to show.
        predictions: the predicted masks, an :class:`~steel_keras.data.annotations.Annotations`.
        split: where the images and true masks come from (``"test"`` reads test_truth.csv).
    """
    from steel_keras.rle import masks_from_rles

    examples = []
    for image_id in image_ids:
        image = ds.load_image(image_id, split=split)
        truth = ds.load_masks(image_id, split=split)
        predicted = masks_from_rles(predictions.masks_of(image_id), image_id=image_id)
        examples += [(image, truth, f"{image_id}: truth"),
                     (image, predicted, f"{image_id}: prediction")]
    if not examples:
        raise ValueError("plot_prediction_overlays needs at least one image id")
    return plot_overlays(examples, out=out)
