"""Training recipes: plain JSON files in ``steel_keras/recipes/``, named after what they reproduce.

A recipe has a ``classifier`` and a ``segmenter`` section (backbone or architecture, image size,
batch size, epochs, optimiser, learning-rate schedule, loss, augmentation). ``load_recipe`` reads
one by name (or from a path to your own JSON file) and applies command-line overrides.

Example:
    >>> recipe = load_recipe("quick-cpu", classifier={"epochs": 1})
    >>> recipe["classifier"]["epochs"], recipe["segmenter"]["arch"]
    (1, 'unet_separable')
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from steel_keras.errors import ConfigError

DEFAULT_RECIPE = "quick-cpu"
STAGES = ("classifier", "segmenter")


def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package."""
    folder = resources.files("steel_keras") / "recipes"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                  if p.name.endswith(".json"))


def _read(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
    elif name_or_path in list_recipes():
        text = (resources.files("steel_keras") / "recipes" / f"{name_or_path}.json").read_text()
    else:
        raise ConfigError(f"unknown recipe {name_or_path!r}; choose one of "
                          f"{', '.join(list_recipes())} or give a path to a .json recipe")
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"recipe {name_or_path}: not valid JSON ({exc})") from None
    missing = [s for s in STAGES if s not in recipe]
    if missing:
        raise ConfigError(f"recipe {name_or_path}: missing section(s) {missing}")
    return recipe


def load_recipe(name_or_path: str = DEFAULT_RECIPE, **overrides: dict[str, Any]) -> dict[str, Any]:
    """Read a recipe and apply ``overrides`` per stage, e.g. ``segmenter={"epochs": 2}``.

    Overrides whose value is None are ignored, so command-line defaults can be passed through.
    """
    recipe = copy.deepcopy(_read(name_or_path))
    for stage, values in overrides.items():
        if stage not in STAGES:
            raise ConfigError(f"unknown recipe section {stage!r}; expected one of {STAGES}")
        recipe[stage].update({k: v for k, v in values.items() if v is not None})
    return recipe
