"""Training recipes: plain JSON files in ``steel_keras/recipes/``, named after what they reproduce.

A recipe has a few top-level keys (``name``, ``seed``, ``val_fraction``, ...) and a
``classifier`` and a ``segmenter`` section (backbone or architecture, image size, batch size,
epochs, optimiser, learning-rate schedule, loss, augmentation). Every key is described once, in
:data:`SCHEMA`: its rule (type and allowed values), its default and what it does. The
validation, the README's key table (:func:`key_table`) and the command line's ``--help`` all
read that table.

:func:`load_recipe` reads a recipe by name (or from a path to your own JSON file), applies
overrides, checks every key and returns the recipe with every default filled in. A bad key is
one :class:`~steel_keras.errors.ConfigError` naming the file, the key and what it must be:
an unknown key (with the nearest valid name), a wrong type, a value out of range, or keys that
do not go together (a crop larger than the image, loss arguments the loss does not take).
Names only the model layer knows (an unknown backbone or architecture) are checked by
``steel_keras.train`` before it writes anything.

Example:
    >>> recipe = load_recipe("quick-cpu", classifier={"epochs": 1})
    >>> recipe["classifier"]["epochs"], recipe["segmenter"]["arch"]
    (1, 'unet_separable')
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from steel_keras.errors import ConfigError

DEFAULT_RECIPE = "quick-cpu"
STAGES = ("classifier", "segmenter")


class _Invalid(Exception):
    """A value breaks its rule (the message says what it must be)."""


def _show(value: Any) -> str:
    """A value as the recipe's JSON spells it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Integer:
    """An integer of at least ``minimum`` (``true``/``false`` are not integers)."""

    minimum: int

    @property
    def text(self) -> str:
        return f"an integer >= {self.minimum}"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise _Invalid(self.text)
        return value


@dataclass(frozen=True)
class Number:
    """A finite number in a range; ``open_low`` excludes ``low`` itself."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    @property
    def text(self) -> str:
        low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
        if self.high is None:
            return f"a finite number {low}"
        high = f"< {self.high:g}" if self.open_high else f"<= {self.high:g}"
        return f"a number {low} and {high}"

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(self.text)
        if not math.isfinite(value) or value < self.low or (self.open_low and value == self.low):
            raise _Invalid(self.text)
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            raise _Invalid(self.text)
        return value


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    text = "true or false"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Invalid(self.text)
        return value


@dataclass(frozen=True)
class Text:
    """Any string (names the model layer knows are checked when training starts)."""

    text = "a string"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(self.text)
        return value


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (``None`` is JSON's ``null``)."""

    values: tuple[Any, ...]

    @property
    def text(self) -> str:
        return "one of " + ", ".join(_show(v) for v in self.values)

    def check(self, value: Any) -> Any:
        # bool == int in Python: keep `true` from matching 1.
        if isinstance(value, bool) or not any(
            value == v and type(value) is type(v) for v in self.values
        ):
            raise _Invalid(self.text)
        return value


@dataclass(frozen=True)
class Size:
    """``[height, width]``: two integers >= 1."""

    text = "[height, width], two integers >= 1"

    def check(self, value: Any) -> list[int]:
        one = Integer(1)
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise _Invalid(self.text)
        try:
            return [one.check(v) for v in value]
        except _Invalid:
            raise _Invalid(self.text) from None


@dataclass(frozen=True)
class Names:
    """A name, or a non-empty list of distinct names (one model per name)."""

    text = "a string or a non-empty list of distinct strings"

    def check(self, value: Any) -> str | list[str]:
        if isinstance(value, str):
            return value
        if not (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value)
        ):
            raise _Invalid(self.text)
        return list(value)


@dataclass(frozen=True)
class Weights:
    """One positive number, or a list of them (one per channel)."""

    text = "a number > 0 or a non-empty list of numbers > 0"

    def check(self, value: Any) -> float | list[float]:
        one = Number(0, open_low=True)
        try:
            if isinstance(value, list | tuple) and value:
                return [one.check(v) for v in value]
            return one.check(value)
        except _Invalid:
            raise _Invalid(self.text) from None


@dataclass(frozen=True)
class Devices:
    """A non-empty list of TensorFlow device names."""

    text = 'a non-empty list of device names such as ["/gpu:0", "/gpu:1"]'

    def check(self, value: Any) -> list[str]:
        if not (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, str) and v for v in value)
        ):
            raise _Invalid(self.text)
        return list(value)


@dataclass(frozen=True)
class Nullable:
    """``null``, or what ``rule`` takes."""

    rule: Any

    @property
    def text(self) -> str:
        return f"null or {self.rule.text}"

    def check(self, value: Any) -> Any:
        try:
            return None if value is None else self.rule.check(value)
        except _Invalid:
            raise _Invalid(self.text) from None


@dataclass(frozen=True)
class Section:
    """A JSON object whose keys are described by a tuple of :class:`Key`."""

    keys: tuple[Key, ...]
    text = "an object"

    def check(self, value: Any) -> dict[str, Any]:
        # The keys are checked one by one by _check_object, which names each.
        if not isinstance(value, Mapping):
            raise _Invalid(self.text)
        return dict(value)


#: ``default`` of a finetune key: take the segmenter section's value.
INHERIT = "the segmenter's"


@dataclass(frozen=True)
class Key:
    """One recipe key: its name, the values it takes, its default and what it does."""

    name: str
    rule: Any
    default: Any
    doc: str


_AUGMENT = (
    Key("hflip", Boolean(), False, "random horizontal flips"),
    Key("vflip", Boolean(), False, "random vertical flips"),
    Key("brightness_contrast", Boolean(), False, "random brightness and contrast"),
)

#: The arguments each loss takes in ``loss_kwargs`` (see ``steel_keras.losses.get_loss``).
LOSS_KWARGS: dict[str, tuple[Key, ...]] = {
    "bce": (),
    "weighted_bce": (
        Key(
            "pos_weight",
            Nullable(Weights()),
            [2.0, 2.0, 1.0, 1.5],
            "weight of the defect pixels, per class or one for all",
        ),
    ),
    "dice": (
        Key("smooth", Number(0), 1.0, "added to the Dice's numerator and denominator"),
        Key("per_image", Boolean(), True, "Dice per image (true) or over the batch"),
    ),
    "bce_dice": (
        Key("bce_weight", Number(0), 0.75, "weight of the BCE term"),
        Key("dice_weight", Number(0), 0.25, "weight of the Dice term"),
        Key("pos_weight", Nullable(Weights()), None, "weight of the defect pixels in the BCE"),
        Key("smooth", Number(0), 1.0, "smoothing of the Dice term"),
        Key("per_image", Boolean(), True, "Dice per image (true) or over the batch"),
    ),
    "focal": (
        Key("gamma", Number(0), 2.0, "focusing exponent (0: weighted BCE)"),
        Key("alpha", Number(0, 1), 0.25, "weight of the positive term"),
    ),
}
OPTIMIZERS = ("adam", "sgd", "adamw")
MIXED_PRECISION_VALUES = ("auto", "off", "float16", "bfloat16")

_LOSS = Key("loss", OneOf(tuple(LOSS_KWARGS)), "bce", "the segmenter's loss")
_LOSS_KWARGS = Key(
    "loss_kwargs", Section(()), {}, "arguments of the loss (keys per loss: see loss_kwargs.* below)"
)
_TRAINING = (
    Key("batch_size", Integer(1), 8, "images per training step"),
    Key("epochs", Integer(1), 10, "passes over the training images (at most)"),
    Key("optimizer", OneOf(OPTIMIZERS), "adam", "the Keras optimiser"),
    Key("learning_rate", Number(0, open_low=True), 1e-3, "the (initial) learning rate"),
    Key(
        "schedule",
        OneOf((None, "cosine", "plateau")),
        None,
        "learning-rate schedule: cosine decay, or halve on a plateau of the monitored metric",
    ),
    Key(
        "early_stopping_patience", Integer(0), 5, "epochs without improvement before training stops"
    ),
)
_COMMON = (
    Key(
        "encoder_weights",
        OneOf((None, "imagenet")),
        None,
        "pretrained encoder weights (imagenet: downloaded on first use)",
    ),
    Key("image_size", Size(), [128, 800], "images are resized to this before training"),
    Key(
        "cache",
        Boolean(),
        False,
        "keep decoded, resized images in memory after the first "
        "epoch (12,568 real images at 256 x 1600 take 5 GB)",
    ),
    *_TRAINING,
    Key(
        "augment",
        Section(_AUGMENT),
        {k.name: k.default for k in _AUGMENT},
        "augmentation of the training images",
    ),
    Key(
        "mixed_precision",
        OneOf(MIXED_PRECISION_VALUES),
        "auto",
        "dtype policy: auto is mixed float16 on a GPU, float32 elsewhere",
    ),
    Key(
        "devices",
        Nullable(Devices()),
        None,
        "devices to train on (MirroredStrategy over several); null: every GPU",
    ),
    Key("verbose", OneOf(("auto", 0, 1, 2)), "auto", "Keras's progress output"),
)
_FINETUNE = tuple(
    Key(k.name, k.rule, INHERIT, k.doc)
    for k in (*_TRAINING, _LOSS, _LOSS_KWARGS)
    if k.name != "batch_size"
)

CLASSIFIER_KEYS = (
    Key(
        "backbone",
        Text(),
        "xception",
        "a name from steel_keras.models.list_classifiers(), e.g. small_cnn, xception",
    ),
    *_COMMON,
)
SEGMENTER_KEYS = (
    Key(
        "arch",
        Names(),
        "unet",
        "a name from steel_keras.models.list_segmenters(), or a list "
        "of them: one model each, averaged",
    ),
    Key(
        "backbone",
        Nullable(Text()),
        None,
        "encoder of unet/fpn/linknet (list_backbones(arch)); null: the default",
    ),
    Key(
        "width",
        Number(0, 4, open_low=True),
        1.0,
        "unet_separable only: multiplies its numbers of filters",
    ),
    Key(
        "mode",
        OneOf(("multilabel", "per_class")),
        "multilabel",
        "one 4-channel model, or one model per class",
    ),
    Key(
        "crop",
        Nullable(Size()),
        None,
        "train on random crops of this size (at most "
        "image_size); validate and predict at image_size",
    ),
    Key(
        "train_on",
        OneOf(("defective", "all")),
        "defective",
        "multilabel: every image, or the defective ones plus clean_fraction of the others",
    ),
    Key("clean_fraction", Number(0, 1), 0.0, "share of defect-free images added (defective)"),
    Key(
        "other_fraction",
        Number(0, 1),
        0.3,
        "per_class: share of the images without that class added",
    ),
    *_COMMON,
    _LOSS,
    _LOSS_KWARGS,
    Key(
        "finetune",
        Nullable(Section(_FINETUNE)),
        None,
        "a second training phase; keys left out take the segmenter's values",
    ),
)
TOP_KEYS = (
    Key("name", Nullable(Text()), None, "the recipe's name (default: the file name)"),
    Key("description", Text(), "", "what the recipe is, in a sentence or two"),
    Key("reproduces", Nullable(Text()), None, "the published result it reproduces"),
    Key("seed", Integer(0), 0, "seeds the split, the weights, shuffling and augmentation"),
    Key(
        "val_fraction",
        Number(0, 1, open_low=True, open_high=True),
        0.2,
        "share of the train images held out for validation",
    ),
)
#: Every key: ``""`` for the top level, then each section.
SCHEMA: dict[str, tuple[Key, ...]] = {
    "": TOP_KEYS,
    "classifier": CLASSIFIER_KEYS,
    "segmenter": SEGMENTER_KEYS,
}


def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package."""
    folder = resources.files("steel_keras") / "recipes"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def recipe_file(name_or_path: str | Path) -> Path:
    """The JSON file of a shipped recipe's name, or the path given; ConfigError if neither."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path
    if str(name_or_path) in list_recipes():
        return Path(str(resources.files("steel_keras") / "recipes" / f"{name_or_path}.json"))
    raise ConfigError(
        f"unknown recipe {str(name_or_path)!r}; choose one of "
        f"{', '.join(list_recipes())} or give a path to a .json recipe"
    )


def load_recipe(
    name_or_path: str | Path = DEFAULT_RECIPE, **overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Read, override and check a recipe; return it with every default filled in.

    Args:
        name_or_path: a shipped recipe's name (:func:`list_recipes`) or a ``.json`` path.
        **overrides: values replacing keys of a section, e.g. ``segmenter={"epochs": 2}``;
            each is checked like the file's own keys (``None`` sets a key to null).

    Returns:
        A plain, JSON-ready dict: the top-level keys and a ``classifier`` and a ``segmenter``
        dict holding every key of :data:`SCHEMA` (a ``finetune`` holds every key of its own).

    Raises:
        ConfigError: one line naming the file, the key and what it must be.
    """
    path = recipe_file(name_or_path)
    source = str(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}: not a readable JSON recipe ({exc})") from None
    recipe = _check_object(raw, "", source)
    for stage in STAGES:
        if stage not in recipe:
            raise ConfigError(f"{source}: missing section {stage!r} (an object of keys)")
    if recipe["name"] is None:
        recipe["name"] = path.stem
    for stage, values in overrides.items():
        if stage not in STAGES:
            raise ConfigError(
                f"unknown recipe section {stage!r} in overrides; expected one "
                f"of {', '.join(STAGES)}"
            )
        where = f"override of {source}"
        changed = _check_object(values, stage, where, fill=False)
        recipe[stage] = {**recipe[stage], **changed}
    where = f"{source} (with overrides)" if any(overrides.values()) else source
    for stage in STAGES:
        _resolve_section(recipe[stage], stage, where)
    return recipe


def check_key(section: str, name: str, value: Any, source: str = "argument") -> Any:
    """Check one value against its key's rule (``section`` is ``""`` for the top level)."""
    key = _key(section, name, source)
    return _check_value(key, value, _path(section, name), source)


def _key(section: str, name: str, source: str) -> Key:
    keys = {k.name: k for k in _keys_of(section)}
    if name not in keys:
        close = difflib.get_close_matches(name, keys, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(keys)}"
        raise ConfigError(f"{source}: unknown key {_path(section, name)}; {hint}")
    return keys[name]


def _keys_of(section: str) -> tuple[Key, ...]:
    """The keys of the top level (and its sections' names), a section or a nested object."""
    if not section:
        return TOP_KEYS + tuple(Key(s, Section(()), None, "a section") for s in STAGES)
    if section in SCHEMA:
        return SCHEMA[section]
    return _FINETUNE if section.endswith(".finetune") else _AUGMENT


def _path(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _check_value(key: Key, value: Any, path: str, source: str) -> Any:
    try:
        return key.rule.check(value)
    except _Invalid as exc:
        raise ConfigError(f"{source}: {path} must be {exc}, got {_show(value)}") from None


def _check_object(value: Any, section: str, source: str, fill: bool = True) -> dict[str, Any]:
    """Check the keys of one object (the recipe or a section); fill defaults if ``fill``."""
    what = _path("", section) if section else "the recipe"
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{source}: {what} must be an object {{...}} of keys, got "
            f"{type(value).__name__} {_show(value)}"
        )
    out = {}
    for name, item in value.items():
        key = _key(section, str(name), source)
        if key.name in STAGES and not section:
            out[key.name] = _check_object(item, key.name, source)
            continue
        out[key.name] = _check_value(key, item, _path(section, key.name), source)
        nested = key.rule.rule if isinstance(key.rule, Nullable) else key.rule
        if isinstance(nested, Section) and nested.keys and out[key.name] is not None:
            out[key.name] = _check_object(
                out[key.name], _path(section, key.name), source, fill=key.name != "finetune"
            )
    if fill:
        for key in _keys_of(section):
            if key.name not in out and key.name not in STAGES:
                out[key.name] = copy.deepcopy(key.default)
    return out


def _resolve_section(cfg: dict[str, Any], stage: str, source: str) -> None:
    """Checks between keys, once the section's values are final; fill in ``finetune``."""
    if stage != "segmenter":
        return
    crop, size = cfg["crop"], cfg["image_size"]
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        raise ConfigError(
            f"{source}: segmenter.crop {crop} is larger than segmenter.image_size "
            f"{size}: a crop must fit in the resized image"
        )
    _check_loss_kwargs(cfg["loss"], cfg["loss_kwargs"], cfg["mode"], "segmenter", source)
    if cfg["finetune"] is not None:
        tune = dict(cfg["finetune"])
        if "loss" in tune and "loss_kwargs" not in tune:
            tune["loss_kwargs"] = {}  # the segmenter's belong to its own loss
        for key in _FINETUNE:
            tune.setdefault(key.name, copy.deepcopy(cfg[key.name]))
        _check_loss_kwargs(
            tune["loss"], tune["loss_kwargs"], cfg["mode"], "segmenter.finetune", source
        )
        cfg["finetune"] = {k.name: tune[k.name] for k in _FINETUNE}


def _check_loss_kwargs(
    loss: str, kwargs: dict[str, Any], mode: str, where: str, source: str
) -> None:
    keys = {k.name: k for k in LOSS_KWARGS[loss]}
    for name, value in kwargs.items():
        if name not in keys:
            close = difflib.get_close_matches(name, keys, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else f"it takes {', '.join(keys)}"
                if keys
                else "it takes none"
            )
            raise ConfigError(
                f"{source}: {where}.loss_kwargs.{name} is not an argument of loss {loss!r}; {hint}"
            )
        _check_value(keys[name], value, f"{where}.loss_kwargs.{name}", source)
    # A loss's own default counts too: weighted_bce's four weights do not fit one channel.
    weights = kwargs.get("pos_weight", keys["pos_weight"].default if "pos_weight" in keys else None)
    channels = 4 if mode == "multilabel" else 1
    if isinstance(weights, list) and len(weights) not in (1, channels):
        raise ConfigError(
            f"{source}: {where}.loss_kwargs.pos_weight has {len(weights)} values "
            f"but a {mode} model predicts {channels} channel(s): give "
            f"{'one per class or ' if channels > 1 else ''}a single number"
        )


def key_help(section: str, name: str) -> str:
    """A key's doc and rule in one phrase, for a command-line flag's ``--help``."""
    key = _key(section, name, "schema")
    return f"{key.doc}; {key.rule.text}"


def key_table() -> str:
    """The recipe keys as a Markdown table (the README's), from :data:`SCHEMA`."""
    rows = ["| key | in | values | default | what it does |", "| --- | --- | --- | --- | --- |"]
    classifier = {id(k) for k in CLASSIFIER_KEYS}
    for section, keys in SCHEMA.items():
        for key in keys:
            if section == "segmenter" and id(key) in classifier:
                continue  # listed with the classifier's, as "both"
            both = section == "classifier" and any(key is k for k in SEGMENTER_KEYS)
            rows.append(
                _row(key.name, "top level" if not section else "both" if both else section, key)
            )
    rows += [_row(f"augment.{k.name}", "both", k) for k in _AUGMENT]
    rows += [_row(f"finetune.{k.name}", "segmenter", k) for k in _FINETUNE]
    rows += [
        _row(f"loss_kwargs.{k.name}", f"loss {loss}", k)
        for loss, keys in LOSS_KWARGS.items()
        for k in keys
    ]
    return "\n".join(rows) + "\n"


def _row(name: str, where: str, key: Key) -> str:
    default = key.default if key.default is INHERIT else _show(key.default)
    return f"| `{name}` | {where} | {key.rule.text} | {default} | {key.doc} |"
