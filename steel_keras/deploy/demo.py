"""A run directory without training, for benchmarks and tests of the deployment code.

Freshly initialised networks are a poor stand-in for trained ones: with batch-norm statistics
still at their initial values (mean 0, variance 1) activations grow layer after layer, and the
probabilities of an untrained sm U-Net are all 0 or 1. Then any runtime "agrees" with Keras to
the bit on most pixels and differs wildly on the few near 0.5, which says nothing about a real
model. :func:`calibrate_batchnorm` sets every batch-norm layer's moving statistics from real
images (one forward pass in training mode with momentum 0), so that inference sees normalised
activations and spread-out probabilities, as a trained model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.deploy.inputs import run_images
from steel_keras.rundir import CONFIG_FILE, model_file, write_json


def calibrate_batchnorm(model: Any, images: np.ndarray) -> Any:
    """Set the moving mean and variance of every BatchNormalization layer from `images`.

    Args:
        model: a Keras model.
        images: float32 `(N, H, W, C)`, a batch of real inputs.

    Returns:
        The same model, whose inference-mode outputs are no longer saturated.
    """
    import keras

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, value in zip(layers, momentum, strict=True):
        layer.momentum = value
    return model


def _save(model: Any, path: Path, images: np.ndarray) -> Path:
    calibrate_batchnorm(model, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def make_demo_run(run_dir: str | Path, data: str | Path, *, arch: str = "unet_separable",
                  backbone: str | None = None, seg_size: tuple[int, int] = (64, 128),
                  classifier: str | None = "small_cnn", cls_size: tuple[int, int] | None = None,
                  multilabel: bool = False, calibration_images: int = 8, seed: int = 0) -> Path:
    """Write an untrained (batch-norm calibrated) run in the layout `steel_keras.train` writes.

    Args:
        run_dir: the folder to create.
        data: a Kaggle-layout dataset folder (images for the batch-norm statistics).
        arch, backbone: the segmenter (`build_segmenter`); `encoder_weights=None`.
        seg_size: `(height, width)` the segmenter takes.
        classifier: a `build_classifier` backbone, or None for no classifier.
        cls_size: the classifier's image size. Defaults to `seg_size`.
        multilabel: give the classifier its second output, `classes` (4 sigmoids).
        calibration_images: images for the batch-norm statistics.
        seed: weights seed.

    Returns:
        `run_dir`, with `config.json`, `segmenter/model.keras` and `classifier/model.keras`.
    """
    import keras

    from steel_keras.models import build_classifier, build_segmenter

    run_dir = Path(run_dir)
    cls_size = tuple(cls_size or seg_size)
    config = {"recipe": "demo (untrained, batch-norm calibrated)",
              "data": str(Path(data).resolve()), "seed": seed, "val_fraction": 0.2,
              "segmenter": {"arch": arch, "backbone": backbone, "image_size": list(seg_size),
                            "mode": "multilabel"},
              "classifier": {"backbone": classifier, "image_size": list(cls_size)}}
    write_json(run_dir / CONFIG_FILE, config)
    keras.utils.set_random_seed(seed)
    segmenter = build_segmenter(arch, backbone, input_shape=(*seg_size, 1), classes=4)
    _save(segmenter, run_dir / "segmenter" / model_file(),
          run_images(run_dir, seg_size, calibration_images))
    if classifier:
        model = build_classifier(classifier, input_shape=(*cls_size, 1), multilabel=multilabel)
        _save(model, run_dir / "classifier" / model_file(),
              run_images(run_dir, cls_size, calibration_images))
    return run_dir
