"""The recipe schema: every key described once, checked on load, read by the training code."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from steel_keras.errors import ConfigError
from steel_keras.recipes import (
    INHERIT,
    LOSS_KWARGS,
    MIXED_PRECISION_VALUES,
    OPTIMIZERS,
    SCHEMA,
    check_key,
    key_table,
    list_recipes,
    load_recipe,
    recipe_file,
)

REPO = Path(__file__).resolve().parents[1]
VALID = {
    "name": "valid",
    "seed": 1,
    "classifier": {"backbone": "small_cnn", "image_size": [32, 160], "epochs": 1},
    "segmenter": {"arch": "unet_separable", "image_size": [32, 160], "epochs": 1},
}


def write(tmp_path: Path, recipe, name: str = "recipe.json") -> Path:
    path = tmp_path / name
    path.write_text(recipe if isinstance(recipe, str) else json.dumps(recipe))
    return path


def with_key(section: str, key: str, value) -> dict:
    recipe = json.loads(json.dumps(VALID))
    (recipe[section] if section else recipe)[key] = value
    return recipe


def test_shipped_recipes_load_with_every_default_filled():
    assert {"quick-cpu", "unet-bce-25", "kaggle-1st-place-lite"} <= set(list_recipes())
    for name in list_recipes():
        recipe = load_recipe(name)
        assert recipe["name"] == name
        for stage in ("classifier", "segmenter"):
            assert set(recipe[stage]) == {k.name for k in SCHEMA[stage]}
    first = load_recipe("kaggle-1st-place-lite")["segmenter"]
    assert first["arch"] == ["unet", "fpn"] and first["crop"] == [256, 512]
    # Finetune keys left out take the segmenter's values; its loss brings its own arguments.
    assert first["finetune"]["learning_rate"] == first["learning_rate"]
    assert first["finetune"]["loss_kwargs"] == {"bce_weight": 0.75, "dice_weight": 0.25}


def test_a_minimal_recipe_gets_the_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID))
    assert recipe["val_fraction"] == 0.2 and recipe["description"] == ""
    assert recipe["segmenter"]["augment"] == {
        "hflip": False,
        "vflip": False,
        "brightness_contrast": False,
    }
    assert recipe["segmenter"]["finetune"] is None and recipe["segmenter"]["crop"] is None


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            with_key("segmenter", "learning_rat", 0.1),
            "unknown key segmenter.learning_rat; did you mean learning_rate?",
        ),
        (
            with_key("classifier", "bakbone", "xception"),
            "unknown key classifier.bakbone; did you mean backbone?",
        ),
        (with_key("", "sed", 3), "unknown key sed; did you mean seed?"),
        (with_key("segmenter", "second_arch", "fpn"), "unknown key segmenter.second_arch"),
        (with_key("segmenter", "epochs", "2"), 'segmenter.epochs must be an integer >= 1, got "2"'),
        (with_key("classifier", "epochs", -3), "classifier.epochs must be an integer >= 1, got -3"),
        (with_key("classifier", "epochs", 1.5), "classifier.epochs must be an integer >= 1"),
        (with_key("classifier", "epochs", True), "classifier.epochs must be an integer >= 1"),
        (with_key("segmenter", "batch_size", 0), "segmenter.batch_size must be an integer >= 1"),
        (with_key("classifier", "learning_rate", 0), "learning_rate must be a finite number > 0"),
        (
            with_key("classifier", "learning_rate", -1e-3),
            "learning_rate must be a finite number > 0",
        ),
        (with_key("classifier", "image_size", [32]), "image_size must be [height, width]"),
        (with_key("classifier", "image_size", [32, 0]), "image_size must be [height, width]"),
        (
            with_key("segmenter", "mode", "per-class"),
            'segmenter.mode must be one of "multilabel", "per_class", got "per-class"',
        ),
        (with_key("segmenter", "schedule", "step"), "segmenter.schedule must be one of null"),
        (with_key("segmenter", "optimizer", "adamax"), "segmenter.optimizer must be one of"),
        (with_key("segmenter", "loss", "lovasz"), "segmenter.loss must be one of"),
        (with_key("segmenter", "cache", "yes"), "segmenter.cache must be true or false"),
        (
            with_key("segmenter", "clean_fraction", 2),
            "clean_fraction must be a number >= 0 and <= 1",
        ),
        (with_key("", "val_fraction", 1), "val_fraction must be a number > 0 and < 1, got 1"),
        (with_key("", "seed", "42"), "seed must be an integer >= 0"),
        (
            with_key("segmenter", "augment", {"hflp": True}),
            "unknown key segmenter.augment.hflp; did you mean hflip?",
        ),
        (with_key("segmenter", "augment", ["hflip"]), "segmenter.augment must be an object"),
        (
            with_key("segmenter", "finetune", {"epoch": 2}),
            "unknown key segmenter.finetune.epoch; did you mean epochs?",
        ),
        (
            with_key("segmenter", "finetune", {"epochs": 0}),
            "segmenter.finetune.epochs must be an integer >= 1",
        ),
        (
            with_key("segmenter", "crop", [64, 64]),
            "segmenter.crop [64, 64] is larger than segmenter.image_size [32, 160]",
        ),
        (
            with_key("segmenter", "loss_kwargs", {"pos_wieght": 2}),
            "segmenter.loss_kwargs.pos_wieght is not an argument of loss 'bce'; it takes none",
        ),
        (with_key("segmenter", "classifier", {}), "unknown key segmenter.classifier"),
        (with_key("", "segmenter", []), "segmenter must be an object {...} of keys, got list"),
        ([VALID], "the recipe must be an object {...} of keys, got list"),
        ({"classifier": {}}, "missing section 'segmenter'"),
    ],
)
def test_a_bad_key_is_one_line_naming_the_file_the_key_and_the_rule(tmp_path, recipe, message):
    path = write(tmp_path, recipe)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize("text", ['{"learning_rate": NaN}', '{"learning_rate": Infinity}'])
def test_a_non_finite_learning_rate_is_refused(tmp_path, text):
    recipe = json.dumps(VALID).replace('"epochs": 1}', '"epochs": 1, ' + text[1:], 1)
    with pytest.raises(ConfigError, match="classifier.learning_rate must be a finite number > 0"):
        load_recipe(write(tmp_path, recipe))


def test_loss_arguments_are_checked_against_the_loss_and_the_mode(tmp_path):
    recipe = with_key("segmenter", "loss", "dice")
    recipe["segmenter"]["loss_kwargs"] = {"smoth": 1.0}
    with pytest.raises(
        ConfigError,
        match="loss_kwargs.smoth is not an argument of loss 'dice'; did you mean smooth",
    ):
        load_recipe(write(tmp_path, recipe))
    recipe["segmenter"]["loss_kwargs"] = {"smooth": -1}
    with pytest.raises(ConfigError, match="loss_kwargs.smooth must be a finite number >= 0"):
        load_recipe(write(tmp_path, recipe))
    # weighted_bce's own four weights do not fit a per-class model's one channel.
    recipe = with_key("segmenter", "loss", "weighted_bce")
    recipe["segmenter"]["mode"] = "per_class"
    with pytest.raises(ConfigError, match="pos_weight has 4 values but a per_class model"):
        load_recipe(write(tmp_path, recipe))
    recipe["segmenter"]["loss_kwargs"] = {"pos_weight": 2.0}
    assert load_recipe(write(tmp_path, recipe))["segmenter"]["loss_kwargs"]["pos_weight"] == 2.0


def test_overrides_go_through_the_same_checks(tmp_path):
    path = write(tmp_path, VALID)
    with pytest.raises(
        ConfigError,
        match=r"override of .*classifier.learning_rate must be a "
        "finite number > 0, got NaN",
    ):
        load_recipe(path, classifier={"learning_rate": float("nan")})
    with pytest.raises(ConfigError, match="unknown key segmenter.epoch; did you mean epochs"):
        load_recipe(path, segmenter={"epoch": 2})
    with pytest.raises(
        ConfigError,
        match=r"\(with overrides\): segmenter.crop \[16, 320\] is "
        "larger",
    ):
        load_recipe(path, segmenter={"crop": [16, 320]})
    with pytest.raises(ConfigError, match="unknown recipe section 'segmentor'"):
        load_recipe(path, segmentor={})
    recipe = load_recipe(path, segmenter={"epochs": 3, "encoder_weights": None})
    assert recipe["segmenter"]["epochs"] == 3 and recipe["classifier"]["epochs"] == 1


def test_a_finetune_takes_what_it_leaves_out_from_the_overridden_section(tmp_path):
    recipe = with_key("segmenter", "finetune", {"epochs": 2})
    tuned = load_recipe(write(tmp_path, recipe), segmenter={"learning_rate": 0.5})
    assert tuned["segmenter"]["finetune"]["learning_rate"] == 0.5
    assert tuned["segmenter"]["finetune"]["epochs"] == 2


def test_unreadable_and_missing_recipes(tmp_path):
    path = write(tmp_path, '{"seed": 1,')
    with pytest.raises(ConfigError, match=f"{path}: not a readable JSON recipe"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="recipe file .*nope.json does not exist"):
        load_recipe(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; choose one of .*quick-cpu"):
        load_recipe("nope")
    assert recipe_file("quick-cpu").is_file()


def test_check_key_checks_one_value():
    assert check_key("segmenter", "clean_fraction", 0.5) == 0.5
    with pytest.raises(ConfigError, match="segmenter.train_on must be one of"):
        check_key("segmenter", "train_on", "clean")


def _read_keys(module: Path) -> set[str]:
    """The string keys a module reads: ``x["key"]`` and ``x.get("key")``."""
    keys = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
    return keys


def test_every_schema_key_is_read_by_the_training_code():
    """A key nothing reads is not done: each must be read by train.py (the top-level
    description keys by the command line that announces a run)."""
    read = _read_keys(REPO / "steel_keras" / "train.py")
    read |= _read_keys(REPO / "steel_keras" / "cli" / "_train_args.py")
    augment = next(k.rule.keys for k in SCHEMA["segmenter"] if k.name == "augment")
    finetune = next(k.rule.rule.keys for k in SCHEMA["segmenter"] if k.name == "finetune")
    names = {k.name for keys in SCHEMA.values() for k in keys}
    names |= {k.name for k in (*augment, *finetune)}
    assert names - read == set()


def test_the_schema_agrees_with_the_losses_optimizers_and_policies():
    import steel_keras.train as train
    from steel_keras.losses import _REGISTRY, list_losses

    assert tuple(LOSS_KWARGS) == list_losses()
    assert tuple(train._OPTIMIZERS) == OPTIMIZERS
    assert tuple(train.MIXED_PRECISION) == MIXED_PRECISION_VALUES
    for loss, keys in LOSS_KWARGS.items():
        cls, fixed = _REGISTRY[loss]
        params = inspect.signature(cls).parameters
        takes = set(params) - {"name", "reduction", "dtype"} - set(fixed)
        assert {k.name for k in keys} == takes, loss
        for key in keys:  # the schema's default is the loss's own
            default = params[key.name].default
            assert key.default == (list(default) if isinstance(default, tuple) else default)


def test_the_readme_key_table_is_the_schema():
    table = key_table()
    assert table in (REPO / "README.md").read_text(), (
        "README's key table is stale: paste the output of python -c "
        "'from steel_keras.recipes import key_table; print(key_table())'"
    )
    for keys in SCHEMA.values():
        for key in keys:
            assert f"| `{key.name}` |" in table
    assert INHERIT in table  # the finetune keys say where their defaults come from
