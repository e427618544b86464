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
import math
import os
import shutil
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
from steel_keras.errors import ConfigError, DataError, TrainingError
from steel_keras.paths import check_output
from steel_keras.recipes import (
    DEFAULT_RECIPE,
    SCHEMA,
    check_key,
    load_recipe,
    recipe_file,
)
from steel_keras.rundir import (
    CONFIG_FILE,
    STAGES,
    SUMMARY_FILE,
    backup_path,
    history_file,
    logs_dir,
    model_file,
    parse_model_file,
    read_json,
    write_json,
)

# Keys of a stage that may change between a run and its resumption.
# The devices and the dtype policy may change too: a run started on one machine can resume
# on another.
RESUMABLE_KEYS = {"epochs", "early_stopping_patience", "devices", "mixed_precision", "verbose"}
# Keys of the whole run, shared by its stages.
RUN_KEYS = ("data", "seed", "val_fraction")


@dataclass
class TrainResult:
    """What a training stage produced: the model files and the validation summary."""

    run_dir: Path
    stage: str
    model_paths: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)
    #: True where the stage had finished before and nothing was trained or written.
    already_trained: bool = False


#: The recipe's ``mixed_precision`` values and the Keras dtype policy each picks.
MIXED_PRECISION = {
    "auto": None,
    "off": "float32",
    "float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
}


def _check_classifier(cfg: dict[str, Any], source: str) -> None:
    """Names only the model layer knows, checked before anything is written."""
    from steel_keras.models import list_classifiers

    if cfg["backbone"] not in list_classifiers():
        raise ConfigError(
            f"{source}: classifier.backbone {cfg['backbone']!r} is not a classifier "
            f"backbone; choose one of {', '.join(list_classifiers())}"
        )


def _check_segmenter(cfg: dict[str, Any], source: str) -> None:
    """Names, sizes and key combinations of every model the stage will build, before any
    is trained (a bad second architecture must not wait for the first to finish)."""
    from steel_keras.losses import list_losses
    from steel_keras.models import list_backbones, list_segmenters
    from steel_keras.models.segmenter import check_segmenter

    for loss in {cfg["loss"], (cfg["finetune"] or cfg)["loss"]}:
        if loss not in list_losses():
            raise ConfigError(
                f"{source}: segmenter.loss {loss!r} is not a loss; choose one of "
                f"{', '.join(list_losses())}"
            )
    for arch in _archs(cfg):
        if arch not in list_segmenters():
            raise ConfigError(
                f"{source}: segmenter.arch {arch!r} is not an architecture; "
                f"choose one of {', '.join(list_segmenters())}"
            )
        backbone = cfg["backbone"]
        if backbone is not None and backbone not in list_backbones(arch):
            raise ConfigError(
                f"{source}: segmenter.backbone {backbone!r} is not a backbone of "
                f"{arch}; choose one of {', '.join(list_backbones(arch)) or 'none'}"
                f" (null: {arch}'s default)"
            )
        for key in ("image_size", "crop"):
            if cfg[key] is None:
                continue
            try:
                check_segmenter(
                    arch, backbone, (*cfg[key], 1), cfg["encoder_weights"], cfg["width"]
                )
            except ConfigError as exc:
                raise ConfigError(f"{source}: segmenter.{key} {cfg[key]}: {exc}") from None


def _check_optimizer(cfg: dict[str, Any], stage: str, source: str) -> None:
    for phase in (cfg, cfg.get("finetune") or cfg):
        if phase["optimizer"] not in _OPTIMIZERS:
            raise ConfigError(
                f"{source}: {stage}.optimizer {phase['optimizer']!r} is not an "
                f"optimizer; choose one of {', '.join(_OPTIMIZERS)}"
            )


def _archs(cfg: dict[str, Any]) -> list[str]:
    return cfg["arch"] if isinstance(cfg["arch"], list) else [cfg["arch"]]


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
            raise ConfigError(
                f"devices: no device {device!r} here; this machine has {', '.join(sorted(known))}"
            )
        names.append(name)
    if len(names) == 1:
        return keras, tf.distribute.OneDeviceStrategy(names[0])
    return keras, tf.distribute.MirroredStrategy(names)


def _stage_record(keras: Any, strategy: Any) -> dict[str, Any]:
    """What a stage trained with: dtype policy and replicas (for its summary.json)."""
    return {
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "replicas": strategy.num_replicas_in_sync if strategy else 1,
    }


def _read_run_config(path: Path, what: str = "run's configuration") -> dict[str, Any]:
    """A run's JSON record (``config.json``, ``summary.json``); DataError where damaged."""
    config = read_json(path, what)
    if not isinstance(config, dict):
        raise DataError(
            f"{path}: expected a JSON object; the {what} is damaged: restore it, "
            "or train in another --out"
        )
    return config


def _run_state(run_dir: Path, config: dict[str, Any], stage: str, restart: bool) -> str:
    """What to do with ``run_dir`` for ``stage``: ``"new"``, ``"resume"``, ``"restart"`` or
    ``"finished"``; ConfigError where it holds another run. Reads only, writes nothing."""
    check_output(run_dir, kind="dir", what="run directory")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run directory {run_dir} is not empty and holds no {CONFIG_FILE}; "
                "choose another --out or delete it"
            )
        return "new"
    previous = _read_run_config(path)
    other = next(s for s in STAGES if s != stage)
    run_changed = [k for k in RUN_KEYS if previous.get(k) != config[k]]
    if run_changed and (run_dir / other).is_dir():
        raise ConfigError(
            f"run directory {run_dir} holds a {other} trained with another "
            f"{', '.join(run_changed)}; choose another --out"
        )
    if not (run_dir / stage).is_dir():
        return "new"
    if restart:
        return "restart"
    changed = run_changed + _changed_keys(stage, config[stage], previous.get(stage) or {})
    if changed:
        raise ConfigError(
            f"run directory {run_dir} already holds a different {stage} run "
            f"(differs in: {', '.join(changed)}); use --restart to train it again "
            "with these settings, or choose another --out"
        )
    return "finished" if (run_dir / stage / SUMMARY_FILE).is_file() else "resume"


def _changed_keys(stage: str, mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The keys, not resumable, where two configs of a stage differ (defaults filled in)."""
    return [
        k.name
        for k in SCHEMA[stage]
        if k.name not in RESUMABLE_KEYS and mine[k.name] != theirs.get(k.name, k.default)
    ]


def _start_run(run_dir: Path, config: dict[str, Any], stage: str, state: str) -> Path:
    """Write the run's record once training really starts; return the stage's folder.

    ``restart`` removes the stage's own folder first; the other stage's files stay."""
    stage_dir = run_dir / stage
    if state == "restart":
        shutil.rmtree(stage_dir)
    path = run_dir / CONFIG_FILE
    if path.is_file():
        previous = _read_run_config(path)
        other = next(s for s in STAGES if s != stage)
        if (run_dir / other).is_dir():
            config = {**previous, stage: config[stage]}
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, config)
    return stage_dir


def _finished(run_dir: Path, stage: str, paths: list[Path]) -> TrainResult:
    """The result of a stage that had finished: its models and summary, as they are."""
    for model_path in paths:
        if not model_path.is_file() or not model_path.stat().st_size:
            raise DataError(
                f"{model_path} is missing or empty although {stage} is marked "
                f"finished ({SUMMARY_FILE}); train it again with --restart"
            )
    summary = _read_run_config(run_dir / stage / SUMMARY_FILE, f"{stage}'s summary")
    return TrainResult(run_dir, stage, paths, summary, already_trained=True)


#: The recipe's ``optimizer`` values and the Keras class each picks.
_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "adamw": "AdamW"}


def _optimizer(keras: Any, cfg: dict[str, Any], steps_per_epoch: int) -> Any:
    lr: Any = cfg["learning_rate"]
    if cfg["schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, cfg["epochs"] * steps_per_epoch), alpha=0.05
        )
    return getattr(keras.optimizers, _OPTIMIZERS[cfg["optimizer"]])(learning_rate=lr)


def _callbacks(
    keras: Any, stage_dir: Path, monitor: str, cfg: dict[str, Any], file_name: str
) -> list[Any]:
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(str(backup_path(stage_dir, file_name))),
        keras.callbacks.ModelCheckpoint(
            str(stage_dir / file_name), monitor=monitor, mode="max", save_best_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode="max",
            restore_best_weights=True,
            patience=cfg["early_stopping_patience"],
        ),
        keras.callbacks.CSVLogger(str(stage_dir / history_file(file_name)), append=True),
        keras.callbacks.TensorBoard(str(logs_dir(stage_dir, file_name))),
    ]
    if cfg["schedule"] == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5, patience=2)
        )
    return callbacks


def _full_size_validation(keras: Any, full: Any, val: Any) -> Any:
    """Validate a model trained at the crop size through its full-size twin.

    It runs first at the end of each epoch: it copies the weights over, evaluates on the
    full-size validation images and adds ``val_*`` to the logs that the checkpoint, early
    stopping and history callbacks after it read."""

    def on_epoch_end(epoch: int, logs: dict[str, Any]) -> None:
        full.set_weights(full_size_validation.model.get_weights())
        results = full.evaluate(val, verbose=0, return_dict=True)
        logs.update({f"val_{k}": float(v) for k, v in results.items()})

    full_size_validation = keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
    return full_size_validation


def _augmentation(cfg: dict[str, Any]) -> Any:
    spec = cfg["augment"]
    if not any(spec.values()):
        return None
    return make_augmentation(
        hflip=spec["hflip"], vflip=spec["vflip"], brightness_contrast=spec["brightness_contrast"]
    )


def _image_size(cfg: dict[str, Any]) -> tuple[int, int]:
    return int(cfg["image_size"][0]), int(cfg["image_size"][1])


def _run_config(ds: SteelDataset, recipe: dict[str, Any], recipe_name: str) -> dict[str, Any]:
    return {
        "recipe": str(recipe_name),
        "data": str(Path(ds.root).resolve()),
        "seed": recipe["seed"],
        "val_fraction": recipe["val_fraction"],
        **{k: recipe[k] for k in ("classifier", "segmenter")},
    }


def _fit(
    keras: Any,
    model: Any,
    train: Any,
    val: Any,
    cfg: dict[str, Any],
    stage_dir: Path,
    monitor: str,
    file_name: str,
    full: Any = None,
) -> Any:
    """``model.fit`` with the stage's callbacks; TrainingError where the loss is not finite.

    ``full``: a full-size twin of a model built at the crop size, which then validates it."""
    callbacks = _callbacks(keras, stage_dir, monitor, cfg, file_name)
    if full is not None:
        callbacks.insert(0, _full_size_validation(keras, full, val))
    # shuffle=False: the tf.data pipeline already shuffles, reproducibly from the seed.
    history = model.fit(
        train,
        validation_data=None if full is not None else val,
        epochs=cfg["epochs"],
        shuffle=False,
        callbacks=callbacks,
        verbose=cfg["verbose"],
    )
    for epoch, loss in zip(history.epoch, history.history.get("loss", []), strict=False):
        if not math.isfinite(loss):
            raise TrainingError(
                f"{stage_dir / file_name}: the training loss became {loss} in epoch "
                f"{epoch + 1}, so training stopped and the stage is not marked finished; "
                f"lower learning_rate (now {cfg['learning_rate']}) or check the data, then "
                "train again with --restart"
            )
    return history


def _save_model(model: Any, path: Path) -> None:
    """Save a ``.keras`` file atomically (the temporary name ends in .keras, as Keras wants)."""
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
    try:
        model.save(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _plot_curves(stage_dir: Path, file_name: str) -> None:
    from steel_keras.viz import plot_training_curves

    history = stage_dir / history_file(file_name)
    if history.is_file() and history.stat().st_size:
        plot_training_curves(history, stage_dir / history_file(file_name, "curves", ".png"))


@dataclass
class _Plan:
    """A stage's checked settings and what to do with its run directory."""

    ds: SteelDataset
    cfg: dict[str, Any]
    config: dict[str, Any]
    run_dir: Path
    state: str


def _plan(
    data: Any,
    run_dir: str | Path,
    recipe: str | Path,
    stage: str,
    overrides: dict[str, Any] | None,
    restart: bool,
) -> _Plan:
    """Everything checked before anything is written: the recipe and its overrides, the names
    only the models know, the output folder, the data, and what the run directory holds."""
    recipe_cfg = load_recipe(recipe, **{stage: overrides or {}})
    source = str(recipe_file(recipe))
    cfg = recipe_cfg[stage]
    _check_optimizer(cfg, stage, source)
    (_check_classifier if stage == "classifier" else _check_segmenter)(cfg, source)
    run_dir = Path(run_dir)
    check_output(run_dir, kind="dir", what="run directory")
    ds = open_dataset(data)
    config = _run_config(ds, recipe_cfg, recipe)
    state = _run_state(run_dir, config, stage, restart)
    if state == "resume":
        _check_backup(run_dir / stage)
    return _Plan(ds, cfg, config, run_dir, state)


def _check_backup(stage_dir: Path) -> None:
    """A damaged backup of an interrupted run: one line, not a traceback from h5py."""
    for path in (stage_dir / "backup").rglob("*"):
        if path.name.endswith(".h5") and path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
            raise DataError(
                f"{path} is damaged (not an HDF5 file), so the interrupted run "
                "cannot resume; train it again with --restart"
            )


def train_classifier(
    data: str | Path | SteelDataset | None = None,
    run_dir: str | Path = "runs/classifier",
    recipe: str | Path = DEFAULT_RECIPE,
    overrides: dict[str, Any] | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train the binary defect classifier of a recipe and save it in ``run_dir/classifier``.

    Args:
        data: a Kaggle-layout folder or SteelDataset; None uses the synthetic dataset.
        run_dir: the run directory (created; an interrupted run of the same settings resumes;
            a finished one is returned as it is, with ``already_trained``).
        recipe: a recipe name (see ``steel_keras.recipes.list_recipes``) or a JSON path.
        overrides: values replacing the recipe's classifier section, e.g. ``{"epochs": 2}``.
        restart: remove this stage's files in ``run_dir`` and train it again.

    Returns:
        A TrainResult with the model path and a summary: validation accuracy, the accuracy of
        always predicting the majority class, and ROC AUC.

    Raises:
        ConfigError: a bad recipe, override or run directory, before anything is written.
        TrainingError: the training loss became NaN or infinite.
    """
    plan = _plan(data, run_dir, recipe, "classifier", overrides, restart)
    ds, cfg, config, run_dir = plan.ds, plan.cfg, plan.config, plan.run_dir
    model_path = run_dir / "classifier" / model_file()
    if plan.state == "finished":
        return _finished(run_dir, "classifier", [model_path])
    keras, strategy = _setup_keras(config["seed"], cfg)
    train_ids, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    size, batch = _image_size(cfg), cfg["batch_size"]
    train = classification_dataset(
        ds,
        train_ids,
        image_size=size,
        batch_size=batch,
        augment=_augmentation(cfg),
        shuffle=True,
        seed=config["seed"],
        cache=cfg["cache"],
    )
    val = classification_dataset(ds, val_ids, image_size=size, batch_size=batch, cache=cfg["cache"])
    with strategy.scope() if strategy else contextlib.nullcontext():
        from steel_keras.models import build_classifier

        model = build_classifier(
            cfg["backbone"], input_shape=(*size, 1), encoder_weights=cfg["encoder_weights"]
        )
        model.compile(
            optimizer=_optimizer(keras, cfg, math.ceil(len(train_ids) / batch)),
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
    stage_dir = _start_run(run_dir, config, "classifier", plan.state)
    _fit(keras, model, train, val, cfg, stage_dir, "val_auc", model_path.name)
    if not model_path.is_file():  # the monitored metric never improved (e.g. NaN)
        _save_model(model, model_path)
    _plot_curves(stage_dir, model_path.name)
    summary = _classifier_summary(model, val, ds.class_labels(val_ids))
    summary.update(_stage_record(keras, strategy))
    write_json(stage_dir / SUMMARY_FILE, summary)
    return TrainResult(run_dir, "classifier", [model_path], summary)


def _classifier_summary(model: Any, val: Any, labels: np.ndarray) -> dict[str, Any]:
    from steel_keras.metrics.classification import majority_accuracy, roc_auc

    truth = labels.any(axis=1).astype(int)
    prob = np.asarray(model.predict(val, verbose=0)).reshape(-1)
    accuracy = float(((prob >= 0.5).astype(int) == truth).mean())
    majority = majority_accuracy(truth)
    return {
        "val_images": int(truth.size),
        "val_accuracy": accuracy,
        "majority_accuracy": majority,
        "accuracy_over_majority": accuracy - majority,
        "val_auc": roc_auc(truth, prob),
    }


def multilabel_pool(
    ds: SteelDataset,
    train_ids: list[str],
    train_on: str,
    clean_fraction: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """The training images of a multi-label segmenter.

    ``train_on="all"`` takes every image; ``"defective"`` takes the images with a defect plus
    ``clean_fraction`` (0 to 1) of the defect-free ones, drawn from ``seed``: a segmenter that
    never sees clean steel learns to find a defect in every image.
    """
    check_key("segmenter", "train_on", train_on)
    check_key("segmenter", "clean_fraction", clean_fraction)
    if train_on == "all":
        return list(train_ids)
    has = ds.class_labels(train_ids).any(axis=1)
    clean = [i for i, h in zip(train_ids, has, strict=True) if not h]
    n_clean = int(round(clean_fraction * len(clean)))
    picked = set(np.random.default_rng(seed).choice(len(clean), size=n_clean, replace=False))
    return [i for i, h in zip(train_ids, has, strict=True) if h] + [
        c for j, c in enumerate(clean) if j in picked
    ]


def _segmenter_jobs(
    ds: SteelDataset, train_ids: list[str], cfg: dict[str, Any], seed: int
) -> list[tuple[str, int | None, list[str], str]]:
    """(model file, class or None, training ids, architecture) for each model to train."""
    archs = _archs(cfg)
    pool = multilabel_pool(ds, train_ids, cfg["train_on"], cfg["clean_fraction"], seed)
    jobs = []
    for arch in archs:
        prefix = arch if len(archs) > 1 else None
        if cfg["mode"] == "per_class":
            for class_id in (1, 2, 3, 4):
                ids = per_class_ids(
                    ds, train_ids, class_id, other_fraction=cfg["other_fraction"], seed=seed
                )
                jobs.append((model_file(prefix, class_id), class_id, ids, arch))
        else:
            jobs.append((model_file(prefix), None, pool, arch))
    return jobs


def train_segmenter(
    data: str | Path | SteelDataset | None = None,
    run_dir: str | Path = "runs/segmenter",
    recipe: str | Path = DEFAULT_RECIPE,
    overrides: dict[str, Any] | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train the segmenter(s) of a recipe and save them in ``run_dir/segmenter``.

    In ``multilabel`` mode one model predicts four sigmoid channels; in ``per_class`` mode one
    single-channel model per class trains on that class's images plus a share of the others.
    A recipe whose ``arch`` is a list (e.g. ``["unet", "fpn"]``) trains one model per
    architecture; the pipeline averages them.
    The recipe's ``train_on`` (``"all"`` or ``"defective"``) and ``clean_fraction`` choose a
    multi-label model's training images (:func:`multilabel_pool`). With a ``crop``, models
    that need a fixed size (FPN, the Xception U-Net) train at the crop size and are saved at
    ``image_size`` with the same weights; the others take any size.

    Args: as :func:`train_classifier`, for the recipe's segmenter section.

    Returns:
        A TrainResult with the model paths and a summary: the validation Dice over the masks of
        defective validation images (pairs whose true mask is not empty), per class and overall.
    """
    plan = _plan(data, run_dir, recipe, "segmenter", overrides, restart)
    ds, cfg, config, run_dir = plan.ds, plan.cfg, plan.config, plan.run_dir
    train_ids, val_ids = ds.split(config["val_fraction"], seed=config["seed"])
    jobs = _segmenter_jobs(ds, train_ids, cfg, config["seed"])
    stage_dir = run_dir / "segmenter"
    paths = [stage_dir / job[0] for job in jobs]
    if plan.state == "finished":
        return _finished(run_dir, "segmenter", paths)
    keras, strategy = _setup_keras(config["seed"], cfg)

    def start() -> None:
        if plan.state != "started":
            _start_run(run_dir, config, "segmenter", plan.state)
            plan.state = "started"

    for job in jobs:
        _train_one_segmenter(
            keras, strategy, ds, job, val_ids, cfg, stage_dir, config["seed"], start
        )
    summary = segmenter_summary(ds, val_ids, paths, cfg) | _stage_record(keras, strategy)
    write_json(stage_dir / SUMMARY_FILE, summary)
    return TrainResult(run_dir, "segmenter", paths, summary)


def _segmenter_data(
    ds: SteelDataset,
    ids: list[str],
    val_ids: list[str],
    cfg: dict[str, Any],
    class_id: int | None,
    seed: int,
) -> tuple[Any, Any]:
    """The training batches (cropped where the recipe says) and the full-size validation."""
    size, batch = _image_size(cfg), cfg["batch_size"]
    crop = tuple(cfg["crop"]) if cfg["crop"] else None
    train = segmentation_dataset(
        ds,
        ids,
        image_size=size,
        batch_size=batch,
        class_id=class_id,
        augment=_augmentation(cfg),
        shuffle=True,
        seed=seed,
        crop=crop,
        cache=cfg["cache"],
    )
    val = segmentation_dataset(
        ds, val_ids, image_size=size, batch_size=batch, class_id=class_id, cache=cfg["cache"]
    )
    return train, val


def _build_segmenters(
    strategy: Any, cfg: dict[str, Any], arch: str, class_id: int | None
) -> tuple[Any, Any]:
    """The model to train and, where it must be built at the crop size, its full-size twin.

    Unet, Linknet and the separable U-Net take any size: one model, trained on crops and
    validated on full images. FPN and the Xception U-Net need a fixed size: one model at the
    crop size trains; the twin at ``image_size`` (the same layers and weight shapes)
    validates and is saved."""
    from steel_keras.models import build_segmenter
    from steel_keras.models.segmenter import needs_fixed_size

    size, crop = _image_size(cfg), cfg["crop"]
    twin = crop is not None and needs_fixed_size(arch)
    shape = (*crop, 1) if twin else (None, None, 1) if crop else (*size, 1)
    kwargs = {"backbone": cfg["backbone"], "classes": 1 if class_id else 4, "width": cfg["width"]}
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_segmenter(
            arch, input_shape=shape, encoder_weights=cfg["encoder_weights"], **kwargs
        )
        # The twin's weights are copied from the trained model: no pretrained download.
        full = build_segmenter(arch, input_shape=(*size, 1), **kwargs) if twin else None
    return model, full


def _train_one_segmenter(
    keras: Any,
    strategy: Any,
    ds: SteelDataset,
    job: tuple[str, int | None, list[str], str],
    val_ids: list[str],
    cfg: dict[str, Any],
    stage_dir: Path,
    seed: int,
    start: Any,
) -> None:
    """Train one segmenter of the stage (a ``_segmenter_jobs`` entry) and save it."""
    from steel_keras.losses import get_loss
    from steel_keras.metrics.keras_metrics import DicePerClass

    file_name, class_id, ids, arch = job
    train, val = _segmenter_data(ds, ids, val_ids, cfg, class_id, seed)
    steps = math.ceil(len(ids) / cfg["batch_size"])
    model, full = _build_segmenters(strategy, cfg, arch, class_id)
    for phase in [cfg] + ([{**cfg, **cfg["finetune"]}] if cfg["finetune"] else []):
        with strategy.scope() if strategy else contextlib.nullcontext():
            model.compile(
                optimizer=_optimizer(keras, phase, steps),
                loss=get_loss(phase["loss"], **phase["loss_kwargs"]),
                metrics=[DicePerClass(name="dice")],
            )
            if full is not None:
                full.compile(
                    loss=get_loss(phase["loss"], **phase["loss_kwargs"]),
                    metrics=[DicePerClass(name="dice")],
                )
        start()
        _fit(keras, model, train, val, phase, stage_dir, "val_dice", file_name, full)
    path = stage_dir / file_name
    if full is not None:
        full.set_weights(model.get_weights())  # the best weights, restored by early stopping
        _save_model(full, path)
    elif not path.is_file():  # the monitored metric never improved (e.g. NaN)
        _save_model(model, path)
    _plot_curves(stage_dir, file_name)


def segmenter_summary(
    ds: SteelDataset, val_ids: list[str], paths: list[Path], cfg: dict[str, Any]
) -> dict[str, Any]:
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
    return {
        "val_defective_images": len(defective),
        "image_size": list(size),
        "dice_defective": float(np.nansum(per_class * masks) / masks.sum()),
        "per_class": {
            str(c + 1): (None if np.isnan(d) else float(d)) for c, d in enumerate(per_class)
        },
        "masks_per_class": {str(c + 1): int(n) for c, n in enumerate(masks)},
    }


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
