"""Training: the defect classifier and the segmenter(s) of a run, from a recipe.

A run directory holds everything one training run made, in the layout of
:mod:`steel_keras.rundir`: ``config.json`` (the recipe as run, the data folder, the seed), the
classifier's best checkpoint by validation AUC and the segmenters' by validation Dice, each
stage's ``history.csv``, curves, TensorBoard logs and ``summary.json`` (validation accuracy
and AUC; validation Dice on the masks of defective images).

Training keeps the best checkpoint, stops early, follows the recipe's learning-rate schedule,
resumes an interrupted run from ``backup/`` (``keras.callbacks.BackupAndRestore``), is
deterministic for a seed on the CPU, uses mixed precision on a GPU and
``tf.distribute.MirroredStrategy`` across several GPUs. A stage's ``mixed_precision`` and
``devices`` keys choose otherwise (:func:`_setup_keras`); its ``summary.json`` records the
dtype policy and the number of replicas.

Example:
    >>> from steel_keras.train import train_classifier  # doctest: +SKIP
    >>> result = train_classifier(run_dir="runs/demo", overrides={"epochs": 1})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steel_keras.data.augment import make_augmentation
from steel_keras.data.dataset import SteelDataset, open_dataset
from steel_keras.data.tfdata import (
    classification_dataset,
    per_class_ids,
    segmentation_dataset,
)
from steel_keras.errors import ConfigError
from steel_keras.recipes import DEFAULT_RECIPE, load_recipe
from steel_keras.rundir import (
    CONFIG_FILE,
    SUMMARY_FILE,
    backup_path,
    history_file,
    logs_dir,
    model_file,
    parse_model_file,
    write_json,
)

# Keys of a stage that may change between a run and its resumption.
# The devices and the dtype policy may change too: a run started on one machine can resume
# on another.
RESUMABLE_KEYS = {"epochs", "early_stopping_patience", "devices", "mixed_precision"}


@dataclass
class TrainResult:
    """What a training stage produced: the model files and the validation summary."""

    run_dir: Path
    stage: str
    model_paths: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)


#: The recipe's ``mixed_precision`` values and the Keras dtype policy each picks.
MIXED_PRECISION = {"auto": None, "off": "float32", "float16": "mixed_float16",
                   "bfloat16": "mixed_bfloat16"}


def _check_stage(cfg: dict[str, Any]) -> None:
    """Reject a stage's bad values before anything is written to the run directory."""
    _image_size(cfg)
    _cache(cfg)
    if cfg.get("mixed_precision", "auto") not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got "
                          f"{cfg['mixed_precision']!r}")
    devices = cfg.get("devices")
    if devices is not None and not (isinstance(devices, list) and devices and all(
            isinstance(d, str) for d in devices)):
        raise ConfigError(f"devices must be null (every GPU) or a list of device names such as "
                          f'["/gpu:0", "/gpu:1"], got {devices!r}')
    _check_pool(cfg.get("train_on", "defective"), cfg.get("clean_fraction", 0.0))


def _setup_keras(seed: int, cfg: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Seed everything; pick the dtype policy and the distribution strategy of a stage.

    ``mixed_precision``: ``"auto"`` (the default) is ``mixed_float16`` on a GPU and float32
    elsewhere; ``"off"``, ``"float16"`` or ``"bfloat16"`` force a policy. ``devices``: None
    (the default) mirrors over every GPU where there are several; a list of device names
    (``tf.config.list_logical_devices``) mirrors over those, one name runs on that device.
    """
    import keras
    import tensorflow as tf

    cfg = cfg or {}
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    policy = MIXED_PRECISION[cfg.get("mixed_precision", "auto")]
    keras.mixed_precision.set_global_policy(policy or ("mixed_float16" if gpus else "float32"))
    if not gpus:
        # Same seed, same weights and same results on the CPU.
        tf.config.experimental.enable_op_determinism()
    devices = cfg.get("devices")
    if devices is None:
        return keras, (tf.distribute.MirroredStrategy() if len(gpus) > 1 else None)
    known = {d.name for d in tf.config.list_logical_devices()}
    names = []
    for device in devices:
        try:
            name = tf.DeviceSpec.from_string(device).to_string()
        except ValueError:
            name = device
        if name not in known:
            raise ConfigError(f"devices: no device {device!r} here; this machine has "
                              f"{', '.join(sorted(known))}")
        names.append(name)
    if len(names) == 1:
        return keras, tf.distribute.OneDeviceStrategy(names[0])
    return keras, tf.distribute.MirroredStrategy(names)


def _stage_record(keras: Any, strategy: Any) -> dict[str, Any]:
    """What a stage trained with: dtype policy and replicas (for its summary.json)."""
    return {"dtype_policy": keras.mixed_precision.global_policy().name,
            "replicas": strategy.num_replicas_in_sync if strategy else 1}


def _prepare_run_dir(run_dir: Path, config: dict[str, Any], stage: str) -> None:
    """Create ``run_dir`` or check that it holds the same run (which is then resumed)."""
    path = run_dir / CONFIG_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        mine = {k: v for k, v in config[stage].items() if k not in RESUMABLE_KEYS}
        theirs = {k: v for k, v in previous.get(stage, {}).items() if k not in RESUMABLE_KEYS}
        same_data = previous.get("data") == config["data"]
        if stage in previous and (mine != theirs or not same_data):
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(
                f"run directory {run_dir} already holds a different {stage} run "
                f"(differs in: {', '.join(changed) or 'data'}); choose another --out or "
                "delete it")
        previous.update({k: v for k, v in config.items() if k not in previous or k == stage})
        config = previous
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} is not empty and holds no {CONFIG_FILE}; "
                          "choose another --out or delete it")
    write_json(path, config)


def _optimizer(keras: Any, cfg: dict[str, Any], steps_per_epoch: int) -> Any:
    lr: Any = cfg.get("learning_rate", 1e-3)
    if cfg.get("schedule") == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, cfg["epochs"] * steps_per_epoch), alpha=0.05)
    name = cfg.get("optimizer", "adam")
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "adamw": keras.optimizers.AdamW}
    if name not in optimizers:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers)}")
    return optimizers[name](learning_rate=lr)


def _callbacks(keras: Any, stage_dir: Path, monitor: str, cfg: dict[str, Any],
               file_name: str) -> list[Any]:
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_path(stage_dir, file_name))),
        keras.callbacks.ModelCheckpoint(str(stage_dir / file_name), monitor=monitor,
                                        mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", restore_best_weights=True,
                                      patience=cfg.get("early_stopping_patience", 5)),
        keras.callbacks.CSVLogger(str(stage_dir / history_file(file_name)), append=True),
        keras.callbacks.TensorBoard(str(logs_dir(stage_dir, file_name))),
    ]
    if cfg.get("schedule") == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max",
                                                           factor=0.5, patience=2))
    return callbacks


def _augmentation(cfg: dict[str, Any]) -> Any:
    spec = cfg.get("augment") or {}
    if not any(spec.values()):
        return None
    return make_augmentation(hflip=spec.get("hflip", False), vflip=spec.get("vflip", False),
                             brightness_contrast=spec.get("brightness_contrast", False))


def _cache(cfg: dict[str, Any]) -> bool:
    """The recipe's ``cache``: keep decoded, resized images (and masks) in memory after the
    first epoch, so that later epochs only augment. Worth it where they fit: at 128 x 800 the
    1,000 synthetic images take 100 MB; the 12,568 real ones at 256 x 1600 take 5 GB, and
    their masks four times that."""
    value = cfg.get("cache", False)
    if not isinstance(value, bool):
        raise ConfigError(f"cache must be true or false, got {value!r}")
    return value


def _image_size(cfg: dict[str, Any]) -> tuple[int, int]:
    size = cfg.get("image_size")
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(
            isinstance(v, int) and v > 0 for v in size)):
        raise ConfigError(f"image_size must be [height, width] of positive integers, got {size}")
    return int(size[0]), int(size[1])


def _run_config(ds: SteelDataset, recipe: dict[str, Any], recipe_name: str) -> dict[str, Any]:
    return {"recipe": recipe_name, "data": str(Path(ds.root).resolve()),
            "seed": recipe.get("seed", 0), "val_fraction": recipe.get("val_fraction", 0.2),
            **{k: recipe[k] for k in ("classifier", "segmenter")}}


def _fit(keras: Any, model: Any, train: Any, val: Any, cfg: dict[str, Any], stage_dir: Path,
         monitor: str, file_name: str) -> Any:
    # shuffle=False: the tf.data pipeline already shuffles, reproducibly from the seed.
    return model.fit(train, validation_data=val, epochs=cfg["epochs"], shuffle=False,
                     callbacks=_callbacks(keras, stage_dir, monitor, cfg, file_name),
                     verbose=cfg.get("verbose", "auto"))


def _plot_curves(stage_dir: Path, file_name: str) -> None:
    from steel_keras.viz import plot_training_curves

    history = stage_dir / history_file(file_name)
    if history.is_file() and history.stat().st_size:
        plot_training_curves(history, stage_dir / history_file(file_name, "curves", ".png"))


def train_classifier(
    data: str | Path | SteelDataset | None = None,
    run_dir: str | Path = "runs/classifier",
    recipe: str = DEFAULT_RECIPE,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the binary defect classifier of a recipe and save it in ``run_dir/classifier``.

    Args:
        data: a Kaggle-layout folder or SteelDataset; None uses the synthetic dataset.
        run_dir: the run directory (created; an existing run of the same config resumes).
        recipe: a recipe name (see ``steel_keras.recipes.list_recipes``) or a JSON path.
        overrides: values replacing the recipe's classifier section, e.g. ``{"epochs": 2}``.

    Returns:
        A TrainResult with the model path and a summary: validation accuracy, the accuracy of
        always predicting the majority class, and ROC AUC.
    """
    ds = open_dataset(data)
    recipe_cfg = load_recipe(recipe, classifier=overrides or {})
    cfg = recipe_cfg["classifier"]
    run_dir = Path(run_dir)
    config = _run_config(ds, recipe_cfg, recipe)
    _check_stage(cfg)
    keras, strategy = _setup_keras(config["seed"], cfg)
    _prepare_run_dir(run_dir, config, "classifier")
    train_ids, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    size = _image_size(cfg)
    batch = int(cfg["batch_size"])
    cache = _cache(cfg)
    train = classification_dataset(ds, train_ids, image_size=size, batch_size=batch,
                                   augment=_augmentation(cfg), shuffle=True, seed=config["seed"],
                                   cache=cache)
    val = classification_dataset(ds, val_ids, image_size=size, batch_size=batch, cache=cache)
    steps = math.ceil(len(train_ids) / batch)
    stage_dir = run_dir / "classifier"
    stage_dir.mkdir(parents=True, exist_ok=True)
    with strategy.scope() if strategy else contextlib.nullcontext():
        from steel_keras.models import build_classifier

        model = build_classifier(cfg["backbone"], input_shape=(*size, 1),
                                 encoder_weights=cfg.get("encoder_weights"))
        model.compile(optimizer=_optimizer(keras, cfg, steps), loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryAccuracy(name="accuracy"),
                               keras.metrics.AUC(name="auc")])
    _fit(keras, model, train, val, cfg, stage_dir, "val_auc", model_file())
    _plot_curves(stage_dir, model_file())
    summary = _classifier_summary(model, val, ds.class_labels(val_ids))
    summary.update(_stage_record(keras, strategy))
    write_json(stage_dir / SUMMARY_FILE, summary)
    return TrainResult(run_dir, "classifier", [stage_dir / model_file()], summary)


def _classifier_summary(model: Any, val: Any, labels: np.ndarray) -> dict[str, Any]:
    from steel_keras.metrics.classification import majority_accuracy, roc_auc

    truth = labels.any(axis=1).astype(int)
    prob = np.asarray(model.predict(val, verbose=0)).reshape(-1)
    accuracy = float(((prob >= 0.5).astype(int) == truth).mean())
    majority = majority_accuracy(truth)
    return {"val_images": int(truth.size), "val_accuracy": accuracy,
            "majority_accuracy": majority, "accuracy_over_majority": accuracy - majority,
            "val_auc": roc_auc(truth, prob)}


def _check_pool(train_on: Any, clean_fraction: Any) -> None:
    if train_on not in ("defective", "all"):
        raise ConfigError(f"train_on must be 'defective' or 'all', got {train_on!r}")
    if not (isinstance(clean_fraction, int | float) and 0 <= clean_fraction <= 1):
        raise ConfigError(f"clean_fraction must be a number in [0, 1], got {clean_fraction!r}")


def multilabel_pool(ds: SteelDataset, train_ids: list[str], train_on: str,
                    clean_fraction: float = 0.0, seed: int = 0) -> list[str]:
    """The training images of a multi-label segmenter.

    ``train_on="all"`` takes every image; ``"defective"`` takes the images with a defect plus
    ``clean_fraction`` (0 to 1) of the defect-free ones, drawn from ``seed``: a segmenter that
    never sees clean steel learns to find a defect in every image.
    """
    _check_pool(train_on, clean_fraction)
    if train_on == "all":
        return list(train_ids)
    has = ds.class_labels(train_ids).any(axis=1)
    clean = [i for i, h in zip(train_ids, has, strict=True) if not h]
    n_clean = int(round(clean_fraction * len(clean)))
    picked = set(np.random.default_rng(seed).choice(len(clean), size=n_clean, replace=False))
    return [i for i, h in zip(train_ids, has, strict=True) if h] + [
        c for j, c in enumerate(clean) if j in picked]


def _segmenter_jobs(ds: SteelDataset, train_ids: list[str], cfg: dict[str, Any],
                    seed: int) -> list[tuple[str, int | None, list[str], str]]:
    """(model file, class or None, training ids, architecture) for each model to train."""
    archs = cfg["arch"] if isinstance(cfg["arch"], list) else [cfg["arch"]]
    pool = multilabel_pool(ds, train_ids, cfg.get("train_on", "defective"),
                           cfg.get("clean_fraction", 0.0), seed)
    jobs = []
    for arch in archs:
        prefix = arch if len(archs) > 1 else None
        if cfg.get("mode", "multilabel") == "per_class":
            for class_id in (1, 2, 3, 4):
                ids = per_class_ids(ds, train_ids, class_id,
                                    other_fraction=cfg.get("other_fraction", 0.3), seed=seed)
                jobs.append((model_file(prefix, class_id), class_id, ids, arch))
        else:
            jobs.append((model_file(prefix), None, pool, arch))
    return jobs


def train_segmenter(
    data: str | Path | SteelDataset | None = None,
    run_dir: str | Path = "runs/segmenter",
    recipe: str = DEFAULT_RECIPE,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the segmenter(s) of a recipe and save them in ``run_dir/segmenter``.

    In ``multilabel`` mode one model predicts four sigmoid channels; in ``per_class`` mode one
    single-channel model per class trains on that class's images plus a share of the others.
    A recipe whose ``arch`` is a list (e.g. ``["unet", "fpn"]``) trains one model per
    architecture; the pipeline averages them.
    The recipe's ``train_on`` (``"all"`` or ``"defective"``) and ``clean_fraction`` choose a
    multi-label model's training images (:func:`multilabel_pool`).

    Args: as :func:`train_classifier`, for the recipe's segmenter section.

    Returns:
        A TrainResult with the model paths and a summary: the validation Dice over the masks of
        defective validation images (pairs whose true mask is not empty), per class and overall.
    """
    ds = open_dataset(data)
    recipe_cfg = load_recipe(recipe, segmenter=overrides or {})
    cfg = recipe_cfg["segmenter"]
    run_dir = Path(run_dir)
    config = _run_config(ds, recipe_cfg, recipe)
    _check_stage(cfg)
    keras, strategy = _setup_keras(config["seed"], cfg)
    _prepare_run_dir(run_dir, config, "segmenter")
    train_ids, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    stage_dir = run_dir / "segmenter"
    stage_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, class_id, ids, arch in _segmenter_jobs(ds, train_ids, cfg, config["seed"]):
        model = _train_one_segmenter(keras, strategy, ds, ids, val_ids, cfg, arch, class_id,
                                     stage_dir, file_name, config["seed"])
        paths.append(stage_dir / file_name)
        del model
    summary = segmenter_summary(ds, val_ids, paths, cfg) | _stage_record(keras, strategy)
    write_json(stage_dir / SUMMARY_FILE, summary)
    return TrainResult(run_dir, "segmenter", paths, summary)


def _train_one_segmenter(keras: Any, strategy: Any, ds: SteelDataset, ids: list[str],
                         val_ids: list[str], cfg: dict[str, Any], arch: str,
                         class_id: int | None, stage_dir: Path, file_name: str,
                         seed: int) -> Any:
    from steel_keras.losses import get_loss
    from steel_keras.metrics.keras_metrics import DicePerClass
    from steel_keras.models import build_segmenter

    size = _image_size(cfg)
    batch = int(cfg["batch_size"])
    crop = tuple(cfg["crop"]) if cfg.get("crop") else None
    cache = _cache(cfg)
    train = segmentation_dataset(ds, ids, image_size=size, batch_size=batch, class_id=class_id,
                                 augment=_augmentation(cfg), shuffle=True, seed=seed, crop=crop,
                                 cache=cache)
    val = segmentation_dataset(ds, val_ids, image_size=size, batch_size=batch,
                               class_id=class_id, cache=cache)
    steps = math.ceil(len(ids) / batch)
    channels = 1 if class_id else 4
    phases = [(cfg, cfg["loss"], cfg.get("loss_kwargs", {}))]
    if cfg.get("finetune"):
        tune = {**cfg, **cfg["finetune"]}
        phases.append((tune, tune["loss"], tune.get("loss_kwargs", {})))
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_segmenter(arch, backbone=cfg.get("backbone"),
                                input_shape=(None, None, 1) if crop else (*size, 1),
                                classes=channels, encoder_weights=cfg.get("encoder_weights"),
                                **({"width": cfg["width"]} if "width" in cfg else {}))
    for phase_cfg, loss_name, loss_kwargs in phases:
        with strategy.scope() if strategy else contextlib.nullcontext():
            model.compile(optimizer=_optimizer(keras, phase_cfg, steps),
                          loss=get_loss(loss_name, **loss_kwargs),
                          metrics=[DicePerClass(name="dice")])
        _fit(keras, model, train, val, phase_cfg, stage_dir, "val_dice", file_name)
    _plot_curves(stage_dir, file_name)
    return model


def segmenter_summary(ds: SteelDataset, val_ids: list[str], paths: list[Path],
                      cfg: dict[str, Any]) -> dict[str, Any]:
    """Dice of the saved segmenter(s) on the true masks of the validation images.

    For every (image, class) pair whose true mask is not empty, the Dice of the prediction
    above 0.5 (at the model's resolution); averaged per class and over all pairs.
    """
    from steel_keras.metrics.masks import dice_per_class_on_defects
    from steel_keras.models import load_model

    size = _image_size(cfg)
    labels = ds.class_labels(val_ids)
    defective = [i for i, row in zip(val_ids, labels, strict=True) if row.any()]
    if not defective:
        return {"val_defective_images": 0, "dice_defective": None, "per_class": {}}
    batches = segmentation_dataset(ds, defective, image_size=size, batch_size=8)
    truth = np.concatenate([m.numpy() for _, m in batches])
    prob = _predict_all(paths, [load_model(p) for p in paths], batches)
    per_class = dice_per_class_on_defects(prob, truth)
    masks = (truth > 0.5).any(axis=(1, 2)).sum(axis=0)  # pairs scored per class
    return {"val_defective_images": len(defective), "image_size": list(size),
            "dice_defective": float(np.nansum(per_class * masks) / masks.sum()),
            "per_class": {str(c + 1): (None if np.isnan(d) else float(d))
                          for c, d in enumerate(per_class)},
            "masks_per_class": {str(c + 1): int(n) for c, n in enumerate(masks)}}


def _predict_all(paths: list[Path], models: list[Any], batches: Any) -> np.ndarray:
    """Four-channel probabilities from one multi-label model, per-class models, or several."""
    outputs: dict[str, list[np.ndarray]] = {}
    for path, model in zip(paths, models, strict=True):
        prob = np.asarray(model.predict(batches, verbose=0), dtype=np.float32)
        _, class_id = parse_model_file(path.name)
        outputs.setdefault("all" if class_id is None else str(class_id), []).append(prob)
    if "all" in outputs:
        return np.mean(outputs["all"], axis=0)
    return np.concatenate([np.mean(outputs[str(c)], axis=0) for c in (1, 2, 3, 4)], axis=-1)
