"""How much synthetic steel looks like real steel: whole-image statistics and a side-by-side PNG.

Each statistic is measured per image; a set of images is summarised by its median and
interquartile range, and the synthetic set passes a statistic when its median lies inside the
real images' interquartile range. ``steel-keras make-dataset --compare-real DIR``, the
real-data test and ``benchmarks/bench_synthetic.py`` all use :func:`compare_folders`.

Example:
    >>> import numpy as np
    >>> stats = image_statistics(np.full((256, 1600), 100, dtype=np.uint8))
    >>> stats["pixel_std"], stats["mean"]
    (0.0, 100.0)
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from steel_keras.data.images import read_image
from steel_keras.errors import DataError

__all__ = [
    "STATISTICS",
    "Comparison",
    "Statistic",
    "compare_folders",
    "folder_statistics",
    "format_comparison",
    "image_files",
    "image_statistics",
    "jpeg_quality",
    "write_side_by_side",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Statistic:
    """One per-image statistic.

    Attributes:
        name: key in :func:`image_statistics`'s result.
        label: what it measures, for a table.
        fmt: format spec of its values.
    """

    name: str
    label: str
    fmt: str


STATISTICS: tuple[Statistic, ...] = (
    Statistic("pixel_std", "pixel standard deviation", ".1f"),
    Statistic("row_banding", "std of row means (banding along the sheet)", ".1f"),
    Statistic("column_banding", "std of column means (banding across the sheet)", ".1f"),
    Statistic("bright_share", "% of pixels brighter than 200", ".2f"),
    Statistic("dark_share", "% of pixels darker than 40", ".2f"),
    Statistic("high_frequency", "share of spectral energy above 1/4 cycle per px", ".3f"),
    Statistic("local_contrast", "median local std in 9 x 9 px (fine texture)", ".1f"),
    Statistic("mean", "mean grey level", ".1f"),
    Statistic("skewness", "skewness of grey levels (bright spots > 0)", ".2f"),
    Statistic("gradient_ratio", "mean abs d/dx over mean abs d/dy", ".2f"),
    Statistic("jpeg_quality", "JPEG quality (from the quantisation table)", ".0f"),
)


def _high_frequency_share(gray: np.ndarray) -> float:
    """Share of the spectrum's energy (mean removed) above 1/4 cycle per pixel, radially."""
    power = np.abs(np.fft.rfft2(gray - gray.mean())) ** 2
    fy = np.fft.fftfreq(gray.shape[0])[:, None]
    fx = np.fft.rfftfreq(gray.shape[1])[None, :]
    total = power.sum()
    return float(power[fy**2 + fx**2 > 0.25**2].sum() / total) if total > 0 else 0.0


def _local_contrast(gray: np.ndarray, size: int = 9) -> float:
    """Median over pixels of the standard deviation in a ``size`` x ``size`` window."""
    from scipy.ndimage import uniform_filter

    mean = uniform_filter(gray, size)
    variance = uniform_filter(gray * gray, size) - mean * mean
    return float(np.median(np.sqrt(np.maximum(variance, 0.0))))


def image_statistics(gray: np.ndarray) -> dict[str, float]:
    """Every statistic of :data:`STATISTICS` but the JPEG quality, for one grey image.

    Args:
        gray: 2-D array of grey levels 0-255 (any dtype).

    Returns:
        ``{name: value}``; shares are in percent.
    """
    image = np.asarray(gray, dtype=np.float64)
    std = float(image.std())
    centred = image - image.mean()
    skew = float((centred**3).mean() / std**3) if std > 0 else 0.0
    dy = np.abs(np.diff(image, axis=0)).mean()
    dx = np.abs(np.diff(image, axis=1)).mean()
    return {
        "pixel_std": std,
        "row_banding": float(image.mean(axis=1).std()),
        "column_banding": float(image.mean(axis=0).std()),
        "bright_share": float((image > 200).mean() * 100),
        "dark_share": float((image < 40).mean() * 100),
        "high_frequency": _high_frequency_share(image),
        "local_contrast": _local_contrast(image.astype(np.float32)),
        "mean": float(image.mean()),
        "skewness": skew,
        "gradient_ratio": float(dx / dy) if dy > 0 else 0.0,
    }


@functools.cache
def _luma_tables() -> dict[tuple[int, ...], int]:
    """libjpeg's luminance quantisation table for each quality 1-100, as Pillow writes it."""
    tables = {}
    for quality in range(1, 101):
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, "JPEG", quality=quality)
        with Image.open(buffer) as image:
            tables.setdefault(tuple(image.quantization[0]), quality)
    return tables


def jpeg_quality(path: str | Path) -> float:
    """The libjpeg quality a JPEG was saved with, from its luminance quantisation table.

    Returns:
        1-100, or NaN for a file that is not a JPEG or has a table of another encoder.
    """
    with Image.open(path) as image:
        tables = getattr(image, "quantization", None) or {}
    return float(_luma_tables().get(tuple(tables.get(0, ())), float("nan")))


def image_files(folder: str | Path) -> list[Path]:
    """The images to compare in ``folder``: its ``train_images/`` if it has one, sorted by name.

    Raises:
        DataError: the folder is missing or holds no JPEG or PNG image.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    source = folder / "train_images" if (folder / "train_images").is_dir() else folder
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{source} holds no .jpg or .png image to compare")
    return files


def folder_statistics(files: Sequence[Path]) -> dict[str, np.ndarray]:
    """Every statistic of :data:`STATISTICS` for each image: ``{name: array, one per file}``."""
    rows = []
    for path in files:
        # read_image checks the header's size before decoding: a real folder is anyone's files.
        gray = read_image(path, expected_shape=None)
        rows.append({**image_statistics(gray), "jpeg_quality": jpeg_quality(path)})
    return {s.name: np.array([row[s.name] for row in rows]) for s in STATISTICS}


@dataclass(frozen=True)
class Comparison:
    """Quartiles (25 %, median, 75 %) of every statistic, real against synthetic.

    Attributes:
        real: ``{name: (q25, median, q75)}`` over the real images.
        synthetic: the same over the synthetic images.
        n_real: number of real images measured.
        n_synthetic: number of synthetic images measured.
    """

    real: dict[str, tuple[float, float, float]]
    synthetic: dict[str, tuple[float, float, float]]
    n_real: int
    n_synthetic: int

    def inside(self, name: str) -> bool:
        """Whether the synthetic median of statistic ``name`` lies in the real IQR."""
        low, _, high = self.real[name]
        return bool(low <= self.synthetic[name][1] <= high)

    @property
    def outside(self) -> list[str]:
        """Names of the statistics whose synthetic median is outside the real IQR."""
        return [s.name for s in STATISTICS if not self.inside(s.name)]


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"),) * 3
    low, mid, high = np.percentile(values, [25, 50, 75])
    return float(low), float(mid), float(high)


def compare_folders(
    real: str | Path, synthetic: str | Path, *, max_synthetic: int | None = None
) -> Comparison:
    """Measure every statistic on a folder of real images and on a synthetic dataset.

    Args:
        real: a folder of real images, or a Kaggle-layout folder (its ``train_images/``).
        synthetic: the same for the synthetic images.
        max_synthetic: int, optional. Measure only the first this many synthetic images.

    Returns:
        The :class:`Comparison`.

    Raises:
        DataError: a folder is missing or holds no image.
    """
    real_files = image_files(real)
    synthetic_files = image_files(synthetic)[:max_synthetic]
    real_stats = folder_statistics(real_files)
    synthetic_stats = folder_statistics(synthetic_files)
    return Comparison(
        real={k: _quartiles(v) for k, v in real_stats.items()},
        synthetic={k: _quartiles(v) for k, v in synthetic_stats.items()},
        n_real=len(real_files),
        n_synthetic=len(synthetic_files),
    )


def format_comparison(comparison: Comparison) -> str:
    """A Markdown table: each statistic's real and synthetic median [IQR], and whether it passes."""

    def cell(quartiles: tuple[float, float, float], fmt: str) -> str:
        low, mid, high = (format(q, fmt) for q in quartiles)
        return f"{mid} [{low}, {high}]"

    lines = [
        f"| statistic | real median [IQR], {comparison.n_real} images "
        f"| synthetic median [IQR], {comparison.n_synthetic} images | inside |",
        "| --- | --- | --- | --- |",
    ]
    for stat in STATISTICS:
        real = cell(comparison.real[stat.name], stat.fmt)
        synthetic = cell(comparison.synthetic[stat.name], stat.fmt)
        verdict = "yes" if comparison.inside(stat.name) else "**no**"
        lines.append(f"| {stat.label} | {real} | {synthetic} | {verdict} |")
    return "\n".join(lines) + "\n"


def _spread(files: Sequence[Path], n: int) -> list[Path]:
    """``n`` files spread evenly over the sorted list (all of them if there are fewer)."""
    if len(files) <= n:
        return list(files)
    return [files[int(i)] for i in np.linspace(0, len(files) - 1, n).round()]


def write_side_by_side(
    real: str | Path, synthetic: str | Path, out: str | Path, *, rows: int = 4, width: int = 800,
    titles: tuple[str, str] = ("real", "synthetic"),
) -> Path:
    """A PNG of real images (left) beside synthetic ones (right), ``rows`` of each.

    Images are picked evenly over each folder's sorted list and shrunk to ``width`` px wide.

    Args:
        real: folder of real images (or a Kaggle-layout folder).
        synthetic: folder of synthetic images (or a Kaggle-layout folder).
        out: the PNG to write (atomically).
        rows: int. Image pairs to show.
        width: int. Width of each image in the PNG.
        titles: the two columns' headings.

    Returns:
        The PNG's path.
    """
    real_files, synthetic_files = image_files(real), image_files(synthetic)
    rows = min(rows, len(real_files), len(synthetic_files))
    pairs = list(zip(_spread(real_files, rows), _spread(synthetic_files, rows), strict=True))
    height, gap, header = round(width * 256 / 1600), 8, 22
    sheet = Image.new("L", (2 * width + gap, header + len(pairs) * (height + gap)), 255)
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(titles):
        draw.text((column * (width + gap) + 4, 4), title, fill=0)
    for row, pair in enumerate(pairs):
        for column, path in enumerate(pair):
            gray = Image.fromarray(read_image(path, expected_shape=None))
            thumb = gray.resize((width, height), Image.BILINEAR)
            sheet.paste(thumb, (column * (width + gap), header + row * (height + gap)))
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    sheet.save(tmp, "PNG")
    os.replace(tmp, out)
    return out
