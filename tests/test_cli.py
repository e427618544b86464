"""The command line as a user meets it: one-line errors with exit code 2, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from steel_keras.cli import COMMANDS, build_parser


def steel_keras(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steel_keras", *args],
                          capture_output=True, text=True, timeout=120)


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
    code = ("import sys; from steel_keras.cli import build_parser; build_parser(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
