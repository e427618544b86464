"""The command line as a user meets it: one-line errors with exit code 2, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from steel_keras.cli import COMMANDS, build_parser


def steel_keras(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_usage_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_verb_is_one_line_exit_2():
    assert_one_line_usage_error(steel_keras("frobnicate"), "frobnicate", "invalid choice")


def test_no_verb_is_one_line_exit_2():
    assert_one_line_usage_error(steel_keras(), "required")


def test_unknown_option_is_one_line_exit_2():
    result = steel_keras("score", __file__, "--truth", __file__, "--no-such-option")
    assert_one_line_usage_error(result, "--no-such-option")


def test_version_and_help():
    version = steel_keras("--version")
    assert version.returncode == 0 and version.stdout.startswith("steel-keras ")
    help_text = steel_keras("--help")
    assert help_text.returncode == 0
    for module_name in COMMANDS:
        assert module_name.replace("_", "-") in help_text.stdout


@pytest.mark.parametrize("module_name", COMMANDS)
def test_every_verb_has_help(module_name):
    parser = build_parser()
    verb = module_name.replace("_", "-")
    with pytest.raises(SystemExit) as info:
        parser.parse_args([verb, "--help"])
    assert info.value.code == 0


def test_cli_help_does_not_import_tensorflow():
    code = (
        "import sys; from steel_keras.cli import build_parser; build_parser(); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# --- training commands: bad settings are refused before anything is written ---------------

TINY_RECIPE = {
    "name": "tiny-cli",
    "description": "test-sized",
    "seed": 3,
    "val_fraction": 0.25,
    "classifier": {
        "backbone": "small_cnn",
        "image_size": [32, 160],
        "batch_size": 8,
        "epochs": 1,
        "early_stopping_patience": 2,
        "verbose": 0,
    },
    "segmenter": {
        "arch": "unet_separable",
        "image_size": [32, 160],
        "batch_size": 8,
        "epochs": 1,
        "loss": "bce_dice",
        "verbose": 0,
    },
}
# Runs a verb in a fresh interpreter and says whether TensorFlow was imported by then.
IN_PROCESS = (
    "import sys; from steel_keras.cli import main; rc = main(sys.argv[1:]); "
    "print('TENSORFLOW', 'tensorflow' in sys.modules); sys.exit(rc)"
)


def steel_keras_tf(*args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """Run a verb; return the process and whether it had imported TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, *args], capture_output=True, text=True, timeout=600
    )
    tf_line = [x for x in result.stdout.splitlines() if x.startswith("TENSORFLOW ")]
    return result, tf_line == ["TENSORFLOW True"]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The command's own error lines (TensorFlow may log to stderr too)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [x for x in result.stderr.splitlines() if x.startswith("steel-keras ")]


def write_recipe(folder, **changes) -> str:
    recipe = json.loads(json.dumps(TINY_RECIPE))
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition("__")
        (recipe[section] if section else recipe)[key] = value
    path = folder / "recipe.json"
    path.write_text(json.dumps(recipe))
    return str(path)


@pytest.mark.parametrize(
    ("verb", "changes", "flags", "needle"),
    [
        (
            "train-classifier",
            {"classifier__epochs": -1},
            [],
            "classifier.epochs must be an integer >= 1, got -1",
        ),
        (
            "train-segmenter",
            {"segmenter__bakbone": "resnet18"},
            [],
            "unknown key segmenter.bakbone; did you mean backbone?",
        ),
        (
            "train-segmenter",
            {"segmenter__epochs": "2"},
            [],
            'segmenter.epochs must be an integer >= 1, got "2"',
        ),
        (
            "train-classifier",
            {},
            ["--learning-rate", "nan"],
            "classifier.learning_rate must be a finite number > 0, got NaN",
        ),
        (
            "train-segmenter",
            {"segmenter__crop": [64, 64]},
            [],
            "segmenter.crop [64, 64] is larger than segmenter.image_size [32, 160]",
        ),
        (
            "baseline",
            {"classifier__learning_rate": 0},
            [],
            "classifier.learning_rate must be a finite number > 0, got 0",
        ),
    ],
)
def test_bad_recipe_keys_fail_in_one_line_before_tensorflow(tmp_path, verb, changes, flags, needle):
    recipe = write_recipe(tmp_path, **changes)
    run = tmp_path / "run"
    result, tf = steel_keras_tf(verb, "--recipe", recipe, "--out", str(run), *flags)
    assert_one_line_usage_error(result, needle)
    assert recipe in result.stderr or "override of" in result.stderr  # names the file
    assert not tf and not run.exists()


@pytest.mark.parametrize("verb", ["train-classifier", "train-segmenter", "baseline"])
def test_out_that_is_a_file_or_unwritable_fails_before_tensorflow(tmp_path, verb):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for out, needle in (
        (a_file, "is a file; give a folder to write in"),
        (a_file / "run", "is a file, so no folder can be made there"),
        # /proc takes no new files, even from root.
        ("/proc/steel-keras-run", "cannot write in /proc"),
    ):
        result, tf = steel_keras_tf(verb, "--out", str(out))
        assert_one_line_usage_error(result, "--out", needle)
        assert not tf
    assert a_file.read_text() == "keep me"


def test_a_name_only_the_models_know_is_one_line_naming_the_recipe(tiny_dataset, tmp_path):
    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    result, _ = steel_keras_tf(
        "train-classifier",
        "--data",
        str(tiny_dataset),
        "--recipe",
        recipe,
        "--out",
        str(run),
        "--backbone",
        "resnet1000",
    )
    assert result.returncode == 2
    assert error_lines(result) == [
        f"steel-keras train-classifier: error: {recipe}: classifier.backbone 'resnet1000' is not "
        "a classifier backbone; choose one of xception, efficientnetb0, efficientnetb1, "
        "efficientnetb3, mobilenetv2, resnet50, small_cnn"
    ]
    assert not run.exists()


def test_damaged_run_files_are_one_line_naming_the_file(tiny_dataset, tmp_path):
    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    (run / "segmenter").mkdir(parents=True)
    (run / "config.json").write_text('{"seed": 3, "da')
    result, _ = steel_keras_tf(
        "train-classifier", "--data", str(tiny_dataset), "--recipe", recipe, "--out", str(run)
    )
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and f"{run / 'config.json'}: not valid JSON" in lines[0]
    result, _ = steel_keras_tf("evaluate", "--run", str(run), "--data", str(tiny_dataset))
    assert result.returncode == 2
    assert f"{run / 'config.json'}: not valid JSON" in error_lines(result)[0]
    # A zero-byte model file.
    config = {
        "data": str(tiny_dataset),
        "seed": 3,
        "val_fraction": 0.25,
        "classifier": {"image_size": [32, 160]},
        "segmenter": {"image_size": [32, 160]},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "segmenter" / "model.keras").write_bytes(b"")
    result, _ = steel_keras_tf("evaluate", "--run", str(run), "--data", str(tiny_dataset))
    assert result.returncode == 2
    assert error_lines(result) == [
        f"steel-keras evaluate: error: model file "
        f"{run / 'segmenter' / 'model.keras'} is empty or damaged (not a .keras zip archive); "
        "train the model again or restore the file"
    ]


def test_a_finished_run_says_so_and_restart_trains_again(tiny_dataset, tmp_path):
    from steel_keras.train import train_classifier

    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    train_classifier(tiny_dataset, run, recipe)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = ["train-classifier", "--data", str(tiny_dataset), "--recipe", recipe, "--out", str(run)]
    result, _ = steel_keras_tf(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"classifier already trained in {run / 'classifier'} (nothing changed); use --restart"
        in result.stdout
    )
    assert result.stdout.startswith("recipe tiny-cli: test-sized")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    result, _ = steel_keras_tf(*args, "--restart")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already trained" not in result.stdout
    saved = [
        x.removeprefix("classifier saved to ")
        for x in result.stdout.splitlines()
        if x.startswith("classifier saved to ")
    ]
    assert saved and all(Path(p).is_file() for p in saved)  # every path printed exists
    history = (run / "classifier" / "history.csv").read_text().splitlines()
    assert len(history) == 2  # one epoch, not appended to the first run's


def test_a_non_finite_loss_exits_2_with_a_clear_message(tiny_dataset, tmp_path):
    recipe = write_recipe(tmp_path, segmenter__optimizer="sgd", segmenter__learning_rate=1e30)
    run = tmp_path / "run"
    result, _ = steel_keras_tf(
        "train-segmenter", "--data", str(tiny_dataset), "--recipe", recipe, "--out", str(run)
    )
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "the training loss became nan in epoch 1" in lines[0]
    assert "--restart" in lines[0] and "saved to" not in result.stdout
    assert not (run / "segmenter" / "summary.json").exists()
