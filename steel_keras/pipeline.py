"""Two-stage prediction: a classifier gates, a segmenter draws masks, post-processing cleans up.

This is the shape of the winning Severstal solutions. The metric gives 1 to every (image, class)
pair left empty where the truth is empty, and about 86 % of pairs are, so a false positive on a
clean image costs as much as a perfect mask earns. The knobs, per class:

- ``label``: the classifier's probability an image needs before any mask of that class is kept;
- ``pixel``: the probability a pixel needs to be foreground;
- ``min_area``: a mask with fewer pixels (at 256 x 1600) is dropped whole;
- ``min_component``: connected components smaller than this are removed first.

:func:`search_thresholds` picks ``pixel``, ``min_area`` and ``label`` per class on validation
images to maximise the competition metric; :class:`TwoStagePredictor` applies them, with
optional test-time augmentation (horizontal and/or vertical flips, averaged), and resizes every
mask back to 256 x 1600 before encoding it.

The predictor takes models (Keras models or any runner with ``predict``) and knows neither
files nor runtimes: :func:`steel_keras.runs.load_run` builds one from a run directory for a
runtime. It reads images through the one image path of training
(:func:`steel_keras.data.images.model_input`), and its masks travel to the scorer and to
``write_submission`` as one :class:`~steel_keras.data.annotations.Annotations`.

Example:
    >>> from steel_keras.runs import load_run  # doctest: +SKIP
    >>> predictor = load_run("runs/baseline")  # doctest: +SKIP
    >>> masks = predictor.predict(ds, ds.test_image_ids, split="test")  # doctest: +SKIP
    >>> masks.table.head(1)  # doctest: +SKIP
         ImageId  ClassId              EncodedPixels
    0  0a1b2c.jpg        3  29102 12 29346 24 ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from steel_keras.constants import CLASS_IDS, IMAGE_SHAPE, NUM_CLASSES
from steel_keras.data.annotations import TRAIN_COLUMNS, Annotations
from steel_keras.data.images import model_input
from steel_keras.errors import DataError
from steel_keras.rle import encode_rle

TTA_MODES = ("none", "hflip", "vflip", "flips")
FULL_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]


@dataclass
class Thresholds:
    """Post-processing settings, one value per class (class 1 first)."""

    pixel: list[float] = field(default_factory=lambda: [0.5] * NUM_CLASSES)
    min_area: list[int] = field(default_factory=lambda: [0] * NUM_CLASSES)
    label: list[float] = field(default_factory=lambda: [0.0] * NUM_CLASSES)
    min_component: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain lists, as ``pipeline.json`` keeps them."""
        return asdict(self)


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Zero the 8-connected components of a 2-D mask with fewer than ``min_size`` pixels."""
    if min_size <= 1 or not mask.any():
        return mask
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def apply_min_area(masks: np.ndarray, min_area: Sequence[float]) -> np.ndarray:
    """Empty channel ``c`` of ``(H, W, C)`` masks where it has fewer than ``min_area[c]`` pixels.

    Small masks are mostly false positives on empty pairs, each costing a whole pair's Dice.
    Returns a new ``uint8`` array; the input is not modified.
    """
    out = (np.asarray(masks) != 0).astype(np.uint8)
    areas = out.sum(axis=(0, 1))
    out[..., areas < np.asarray(min_area)] = 0
    return out


def gate_masks(
    masks: np.ndarray, gate_prob: np.ndarray, label_thresholds: Sequence[float]
) -> np.ndarray:
    """Empty channel ``c`` where the classifier's probability is below ``label_thresholds[c]``.

    ``gate_prob`` is ``(C,)`` (one per class) or ``(1,)`` (any defect, for every class).
    Returns a new ``uint8`` array; the input is not modified.
    """
    out = (np.asarray(masks) != 0).astype(np.uint8)
    prob = np.broadcast_to(np.asarray(gate_prob, dtype=np.float64).ravel(), (out.shape[-1],))
    out[..., prob < np.asarray(label_thresholds)] = 0
    return out


def postprocess(prob: np.ndarray, gate: np.ndarray | None, th: Thresholds) -> np.ndarray:
    """Turn ``(H, W, 4)`` probabilities into ``(H, W, 4)`` uint8 masks.

    Args:
        prob: per-pixel probabilities of one image; any size (areas scale to 256 x 1600).
        gate: the classifier's probabilities, shape (4,) or (1,) (any defect); None: no gate.
        th: the thresholds.
    """
    scale = prob.shape[0] * prob.shape[1] / FULL_PIXELS
    masks = prob >= np.asarray(th.pixel)
    if gate is not None:  # first: a gated class needs no component labelling
        masks = gate_masks(masks, gate, th.label)
    smallest = int(round(th.min_component * scale))
    for c in range(NUM_CLASSES):
        masks[..., c] = remove_small_components(masks[..., c], smallest)
    return apply_min_area(masks, [area * scale for area in th.min_area])


def resize_probabilities(prob: np.ndarray, size: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Bilinear resize of ``(h, w, C)`` probabilities to ``size``, channel by channel."""
    if prob.shape[:2] == tuple(size):
        return prob
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(prob[..., c], dtype=np.float32), "F")
                   .resize((size[1], size[0]), Image.BILINEAR))
        for c in range(prob.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def _run(model: Any, batch: np.ndarray) -> np.ndarray:
    """Probabilities from a Keras model, a runner with ``predict(batch)``, or a function."""
    if hasattr(model, "predict_on_batch"):
        out = model.predict_on_batch(batch)
    elif hasattr(model, "predict"):
        out = model.predict(batch)
    else:
        out = model(batch)
    if isinstance(out, dict):  # a classifier with several heads: the any-defect one
        out = out.get("has_defect", next(iter(out.values())))
    return np.asarray(out, dtype=np.float32)


TTA_AXES = {"none": (), "hflip": (2,), "vflip": (1,), "flips": (2, 1)}


def flip_tta(
    predict: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    axes: Sequence[int] = (2,),
    spatial: bool = True,
) -> np.ndarray:
    """Average ``predict`` over the batch as it is and flipped along each of ``axes``.

    Args:
        predict: images ``(B, H, W, 1)`` -> probabilities, e.g. ``model.predict_on_batch``.
        batch: the images.
        axes: one flipped copy per axis: 2 flips left-right (the default, horizontal flip
            TTA), 1 top-bottom.
        spatial: the predictions are masks ``(B, H, W, C)``, flipped back before averaging;
            False for a classifier's ``(B, K)`` probabilities.

    Returns:
        The mean of the ``1 + len(axes)`` predictions, as a float array.
    """
    batch = np.asarray(batch)
    outputs = [np.asarray(predict(batch))]
    for axis in axes:
        out = np.asarray(predict(np.flip(batch, axis=axis)))
        outputs.append(np.flip(out, axis=axis) if spatial else out)
    return np.mean(outputs, axis=0)


def _with_tta(model: Any, batch: np.ndarray, tta: str, spatial: bool) -> np.ndarray:
    """Average the model over flipped copies of the batch (flipping masks back)."""
    if tta not in TTA_MODES:
        raise DataError(f"unknown TTA mode {tta!r}; choose one of {TTA_MODES}")
    return flip_tta(lambda images: _run(model, images), batch, TTA_AXES[tta], spatial)


@dataclass
class Probabilities:
    """What the models said about a set of images, before any threshold."""

    image_ids: list[str]
    gate: np.ndarray | None  # (N, 1) or (N, 4) classifier probabilities, None without one
    masks: np.ndarray  # (N, h, w, 4) at the segmenter's resolution


class TwoStagePredictor:
    """A classifier gate, one or more segmenters, and post-processing.

    Args:
        segmenters: ``{"all": model}`` for a 4-channel model, or ``{1: m1, ..., 4: m4}`` for
            per-class models; a list of such dicts is averaged (e.g. Unet + FPN). A model is a
            Keras model, any runner with ``predict(batch) -> probabilities``, or a function
            ``batch -> probabilities``.
        seg_size: (h, w) the segmenters take.
        classifier: a model giving (B, 1) or (B, 4) probabilities, or None for no gate.
        cls_size: (h, w) the classifier takes.
        thresholds: post-processing; defaults to pixel 0.5 and no other filtering.
        tta: ``"none"``, ``"hflip"``, ``"vflip"`` or ``"flips"`` (both, averaged).
        batch_size: images per forward pass.
    """

    def __init__(self, segmenters: dict | list[dict], seg_size: tuple[int, int],
                 classifier: Any = None, cls_size: tuple[int, int] | None = None,
                 thresholds: Thresholds | None = None, tta: str = "none",
                 batch_size: int = 8) -> None:
        self.segmenters = segmenters if isinstance(segmenters, list) else [segmenters]
        self.seg_size = tuple(seg_size)
        self.classifier = classifier
        self.cls_size = tuple(cls_size or seg_size)
        self.thresholds = thresholds or Thresholds()
        if tta not in TTA_MODES:
            raise DataError(f"unknown TTA mode {tta!r}; choose one of {TTA_MODES}")
        self.tta = tta
        self.batch_size = batch_size

    def _batches(self, ds: Any, image_ids: Sequence[str], split: str) -> Iterator[np.ndarray]:
        for start in range(0, len(image_ids), self.batch_size):
            chunk = image_ids[start:start + self.batch_size]
            yield np.stack([ds.load_image(i, split=split) for i in chunk])

    def _segment(self, batch: np.ndarray, tta: str) -> np.ndarray:
        per_model = []
        for group in self.segmenters:
            if "all" in group:
                per_model.append(_with_tta(group["all"], batch, tta, spatial=True))
            else:
                per_model.append(np.concatenate(
                    [_with_tta(group[c], batch, tta, spatial=True) for c in CLASS_IDS], -1))
        return np.mean(per_model, axis=0)

    def probabilities(self, ds: Any, image_ids: Sequence[str], split: str = "test",
                      tta: str | None = None, progress: bool = False) -> Probabilities:
        """Run the classifier and segmenters over ``image_ids`` (no thresholds applied)."""
        tta = self.tta if tta is None else tta
        image_ids = list(image_ids)
        gates, masks = [], []
        batches = self._batches(ds, image_ids, split)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=-(-len(image_ids) // self.batch_size),
                           desc=f"predicting ({tta} TTA)", unit="batch")
        for images in batches:
            if self.classifier is not None:
                gates.append(_with_tta(self.classifier, model_input(images, self.cls_size),
                                       tta, spatial=False))
            masks.append(self._segment(model_input(images, self.seg_size), tta))
        empty = np.zeros((0, *self.seg_size, NUM_CLASSES), np.float32)
        return Probabilities(image_ids, np.concatenate(gates) if gates else None,
                             np.concatenate(masks) if masks else empty)

    def annotations(self, probs: Probabilities, thresholds: Thresholds | None = None,
                    gate: bool = True) -> Annotations:
        """Threshold, clean up, resize to 256 x 1600 and encode every image's masks.

        Args:
            probs: what :meth:`probabilities` returned.
            thresholds: the post-processing; defaults to the predictor's.
            gate: apply the classifier's gate (where there is a classifier).

        Returns:
            The masks as one long table (non-empty masks only) with every image id.
        """
        th = thresholds or self.thresholds
        rows = []
        for n, image_id in enumerate(probs.image_ids):
            g = probs.gate[n] if (gate and probs.gate is not None) else None
            masks = postprocess(resize_probabilities(probs.masks[n]), g, th)
            rows += [(image_id, c, encode_rle(masks[..., c - 1])) for c in CLASS_IDS
                     if masks[..., c - 1].any()]
        table = (pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)).astype({"ClassId": "int64"})
                 .sort_values(["ImageId", "ClassId"], ignore_index=True))
        return Annotations(table, sorted(set(probs.image_ids)), "train")

    def predict(self, ds: Any, image_ids: Sequence[str], split: str = "test",
                progress: bool = False) -> Annotations:
        """The full pipeline on ``image_ids``: the masks of every image, as :meth:`annotations`."""
        return self.annotations(self.probabilities(ds, image_ids, split, progress=progress))


def _dice_table(pred: np.ndarray, truth_area: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """Per-image Dice from predicted areas, true areas and intersections (1 if both empty)."""
    total = pred + truth_area
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


def search_thresholds(
    probs: Probabilities,
    truth: np.ndarray,
    *,
    pixel_grid: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    area_grid: Sequence[int] = (0, 300, 600, 1000, 2000, 3000, 5000),
    label_grid: Sequence[float] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    min_component: int = 0,
) -> tuple[Thresholds, dict[str, Any]]:
    """Choose pixel, minimum-area and label thresholds per class that maximise mean Dice.

    The competition metric is the mean over classes of the per-class mean Dice, so each class
    is tuned on its own. Dice is computed at the segmenter's resolution (areas scaled to
    256 x 1600), which is fast and close to the full-size figure.

    Args:
        probs: validation probabilities (see :meth:`TwoStagePredictor.probabilities`).
        truth: ``(N, h, w, 4)`` true masks at the same resolution.
        pixel_grid, area_grid, label_grid: the values tried.
        min_component: kept fixed during the search.

    Returns:
        The best Thresholds, and a record of the search: per class, the best Dice and the
        curve of Dice against the pixel threshold (best area and label for each).
    """
    n, h, w, _ = probs.masks.shape
    if truth.shape != probs.masks.shape:
        raise DataError(f"truth masks {truth.shape} do not match probabilities "
                        f"{probs.masks.shape}")
    scale = h * w / FULL_PIXELS
    gate = (np.ones((n, NUM_CLASSES)) if probs.gate is None
            else np.broadcast_to(probs.gate, (n, NUM_CLASSES)))
    labels = label_grid if probs.gate is not None else (0.0,)
    best = Thresholds(min_component=min_component)
    record: dict[str, Any] = {"per_class": {}}
    for c in range(NUM_CLASSES):
        true = truth[..., c] > 0
        true_area = true.sum(axis=(1, 2))
        top, curve = (-1.0, None), {}
        for p in pixel_grid:
            pred = probs.masks[..., c] >= p
            area = pred.sum(axis=(1, 2))
            inter = (pred & true).sum(axis=(1, 2))
            best_here = -1.0
            for a in area_grid:
                for lab in labels:
                    keep = (area >= a * scale) & (gate[:, c] >= lab)
                    score = float(_dice_table(area * keep, true_area, inter * keep).mean())
                    best_here = max(best_here, score)
                    if score > top[0]:
                        top = (score, (p, a, lab))
            curve[str(p)] = best_here
        p, a, lab = top[1]
        best.pixel[c], best.min_area[c], best.label[c] = float(p), int(a), float(lab)
        record["per_class"][str(c + 1)] = {"dice": top[0], "pixel": p, "min_area": a,
                                           "label": lab, "dice_by_pixel_threshold": curve}
    record["mean_dice"] = float(np.mean([v["dice"] for v in record["per_class"].values()]))
    return best, record
