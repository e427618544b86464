"""A careless user's mistakes (issue 16): each is one line and exit code 2, and loses nothing.

Real files and real processes throughout: the command line runs in a subprocess; a full disk is a
real file-size limit (``RLIMIT_FSIZE``: a write past it fails with ``EFBIG``, and Python ignores
the signal that would otherwise kill the process); a missing package is a module on
``PYTHONPATH`` that fails to import; "before TensorFlow starts" is checked by putting a
``tensorflow`` package on ``PYTHONPATH`` that fails loudly when imported.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest

from steel_keras.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----- helpers ----------------------------------------------------------------------------------


def steel_keras(
    *args: str, pythonpath: tuple[Path, ...] = (), file_limit: int | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run ``steel-keras ARGS`` in a fresh process, with folders put first on PYTHONPATH and an
    optional limit on the size of every file it writes."""
    path = [str(p) for p in pythonpath] + [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))

    return subprocess.run(
        [sys.executable, "-m", "steel_keras", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=limit if file_limit is not None else None,
    )


def assert_one_error(
    result: subprocess.CompletedProcess, verb: str, *needles: str, alone: bool = False
) -> str:
    """Exit code 2, no traceback, exactly one ``steel-keras VERB: error:`` line holding each
    needle (and nothing else on stderr where ``alone``); returns that line."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [
        line
        for line in result.stderr.splitlines()
        if line.startswith(f"steel-keras {verb}: error: ")
    ]
    assert len(errors) == 1, result.stderr[-3000:]
    if alone:
        assert result.stderr.strip().splitlines() == errors, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".partial")]


def png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims ``width`` x ``height`` gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _can_write(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


# ----- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tiny_dataset, tmp_path_factory) -> Path:
    """This module's own copy of the tiny dataset: every test checks it is left as it was."""
    folder = tmp_path_factory.mktemp("reliability") / "data"
    shutil.copytree(tiny_dataset, folder)
    return folder


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    from steel_keras.deploy.demo import make_demo_run

    return make_demo_run(tmp_path_factory.mktemp("reliability") / "run", data, seg_size=(32, 64))


@pytest.fixture
def damaged_data(tiny_dataset, tmp_path) -> Path:
    """A copy of the tiny dataset that a test may damage."""
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_dataset, folder)
    return folder


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory) -> Path:
    """A folder that, first on PYTHONPATH, makes importing TensorFlow or Keras fail loudly."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    for name in ("tensorflow", "keras"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(
            f"raise RuntimeError('{name} was imported before the command checked its input')\n"
        )
    return folder


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder where no file can be made: read-only bits, or for root (who ignores them) /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    chosen = folder if not _can_write(folder) else Path("/sys")
    if not chosen.is_dir() or _can_write(chosen):
        folder.chmod(0o755)
        pytest.skip("no folder here refuses new files")
    yield chosen
    folder.chmod(0o755)


# ----- 6. no command loses or corrupts a file ---------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "train.csv",
        "test_truth.csv",
        "sample_submission.csv",
        "test_images/first",
        "train_images/new.csv",
        "run/config.json",
        "run/segmenter/model.keras",
    ],
)
def test_predict_never_writes_over_its_inputs(target, data, run, no_tensorflow):
    before_data, before_run = snapshot(data), snapshot(run)
    if target.startswith("run/"):
        out = run / target.removeprefix("run/")
    elif target == "test_images/first":
        out = next(iter(sorted((data / "test_images").iterdir())))
    else:
        out = data / target
    result = steel_keras(
        "predict", "--run", str(run), "--out", str(out), pythonpath=(no_tensorflow,)
    )
    assert_one_error(result, "predict", str(out), "reads", alone=True)
    assert snapshot(data) == before_data and snapshot(run) == before_run


def test_predict_replaces_its_own_submission_and_a_full_disk_leaves_it_intact(run, tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("an earlier submission\n")
    first = steel_keras("predict", "--run", str(run), "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    written = out.read_bytes()
    assert written.startswith(b"ImageId,EncodedPixels,ClassId") and len(written) > 400

    # A disk that takes only half the file: the write fails, the earlier file stays whole.
    full = steel_keras(
        "predict", "--run", str(run), "--out", str(out), file_limit=len(written) // 2
    )
    assert_one_error(full, "predict", str(out), "the previous file is unchanged")
    assert out.read_bytes() == written
    assert partial_files(tmp_path) == []


def test_write_submission_failing_midway_keeps_the_previous_file(tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text("previous\n")
    code = (
        "import pandas as pd\n"
        "from steel_keras.data.annotations import Annotations, write_submission\n"
        "ids = [f'{i:09d}.jpg' for i in range(500)]\n"
        "table = pd.DataFrame({'ImageId': ids, 'ClassId': 3, 'EncodedPixels': '1 5 20 5 40 5'})\n"
        f"write_submission({str(out)!r}, Annotations(table, ids))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)),
    )
    assert "OutputError" in result.stderr and "File too large" in result.stderr, result.stderr
    assert out.read_text() == "previous\n"
    assert partial_files(tmp_path) == []


def test_eda_on_a_full_disk_keeps_every_earlier_output(data, tmp_path):
    out = tmp_path / "eda"
    assert steel_keras("eda", "--data", str(data), "--out", str(out)).returncode == 0
    before = snapshot(out)
    assert "eda.json" in before and len(before) >= 4
    result = steel_keras("eda", "--data", str(data), "--out", str(out), file_limit=1024)
    assert_one_error(result, "eda", str(out))
    assert snapshot(out) == before
    assert partial_files(out) == []


def test_student_copy_force_backs_up_a_students_changed_work(tmp_path):
    copy = tmp_path / "copy"
    assert steel_keras("course", "student-copy", "--out", str(copy)).returncode == 0
    original = snapshot(copy)
    stub = sorted((copy / "exercises").glob("ch*.py"))[0]
    work = stub.read_text() + "\n# three evenings of the student's own work\n"
    stub.write_text(work)

    result = steel_keras("course", "student-copy", "--out", str(copy), "--force")
    assert result.returncode == 0, result.stderr
    backups = list(copy.glob("backup-*"))
    assert len(backups) == 1 and backups[0].name in result.stdout
    assert (backups[0] / "exercises" / stub.name).read_text() == work
    assert {k: v for k, v in snapshot(copy).items() if not k.startswith("backup-")} == original

    again = steel_keras("course", "student-copy", "--out", str(copy), "--force")
    assert again.returncode == 0 and "0 changed" in again.stdout, again.stdout
    assert list(copy.glob("backup-*")) == backups


def _out_cases(data: Path, run: Path, afile: Path, unwritable: Path) -> list[tuple[str, ...]]:
    """(verb, arguments...) of every command with an output, given a wrong output."""
    return [
        ("eda", "--data", str(data), "--out", str(afile)),
        ("eda", "--data", str(data), "--out", str(data)),
        ("eda", "--data", str(data), "--out", str(unwritable / "eda")),
        ("predict", "--run", str(run), "--out", str(afile.parent)),
        ("predict", "--run", str(run), "--out", str(afile / "submission.csv")),
        ("predict", "--run", str(run), "--out", str(unwritable / "submission.csv")),
        ("evaluate", "--run", str(run), "--out", str(afile)),
        ("evaluate", "--run", str(run), "--out", str(run / "segmenter")),
        ("benchmark", "--run", str(run), "--json", str(afile.parent)),
        ("benchmark", "--run", str(run), "--json", str(data / "train.csv")),
        ("course", "student-copy", "--out", str(afile)),
        ("course", "student-copy", "--out", str(unwritable / "copy")),
        ("course", "check", "--out", str(afile)),
        ("course", "check", "--out", str(REPO_ROOT / "course")),
        ("download", "--out", str(afile)),
        ("download", "--out", str(unwritable / "severstal")),
    ]


def test_every_output_is_checked_before_any_work(data, run, tmp_path, unwritable, no_tensorflow):
    afile = tmp_path / "a-file"
    afile.write_text("keep me\n")
    before = snapshot(data), snapshot(run), snapshot(REPO_ROOT / "course")
    for verb, *args in _out_cases(data, run, afile, unwritable):
        result = steel_keras(verb, *args, pythonpath=(no_tensorflow,), timeout=60)
        assert_one_error(result, verb, alone=True)
    assert afile.read_text() == "keep me\n"
    assert (snapshot(data), snapshot(run), snapshot(REPO_ROOT / "course")) == before


def test_export_and_tune_check_that_the_run_can_be_written(run, tmp_path, no_tensorflow):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "export").write_text("a file where the exports go\n")
    (copy / "pipeline.json").mkdir()
    export = steel_keras(
        "export", "--run", str(copy), "--format", "onnx", pythonpath=(no_tensorflow,)
    )
    assert_one_error(export, "export", "export", "is a file", alone=True)
    tune = steel_keras("tune", "--run", str(copy), pythonpath=(no_tensorflow,))
    assert_one_error(tune, "tune", "pipeline.json", "is a folder", alone=True)


# ----- 8. damaged files from outside ------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b'{"recipe": "quick-cpu", "segm', b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "truncated", "binary"],
)
def test_damaged_config_json_is_one_line_before_tensorflow(content, run, tmp_path, no_tensorflow):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "config.json").write_bytes(content)
    for verb, *args in (
        ("predict", "--out", str(tmp_path / "s.csv")),
        ("evaluate",),
        ("tune",),
        ("export", "--format", "onnx"),
        ("benchmark",),
    ):
        result = steel_keras(verb, "--run", str(copy), *args, pythonpath=(no_tensorflow,))
        assert_one_error(result, verb, str(copy / "config.json"), alone=True)


def test_damaged_pipeline_json_and_image_sizes_are_data_errors(run, tmp_path):
    from steel_keras.rundir import read_pipeline, run_models
    from steel_keras.runs import load_run

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "pipeline.json").write_text('{"thresholds": {"pixel": [0.5, ')
    with pytest.raises(DataError, match="pipeline.json.*steel-keras tune"):
        read_pipeline(copy)
    with pytest.raises(DataError, match="pipeline.json"):
        load_run(copy)
    (copy / "pipeline.json").unlink()
    (copy / "config.json").write_text('{"segmenter": 3, "classifier": {"image_size": "big"}}')
    with pytest.raises(DataError, match="image_size"):
        run_models(copy)


def _rezip(source: Path, out: Path, edit) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            content = edit(name, zin.read(name))
            if content is not None:
                zout.writestr(name, content)
    return out


def test_damaged_keras_files_are_one_data_error_naming_them(run, tmp_path):
    from steel_keras.models import load_model

    good = run / "classifier" / "model.keras"
    damaged = {
        "empty": tmp_path / "empty.keras",
        "cut": tmp_path / "cut.keras",
        "no_config": _rezip(
            good, tmp_path / "no_config.keras", lambda n, c: None if n == "config.json" else c
        ),
        "bad_config": _rezip(
            good, tmp_path / "bad_config.keras", lambda n, c: c[:40] if n == "config.json" else c
        ),
        "cut_weights": _rezip(
            good, tmp_path / "cut_weights.keras", lambda n, c: c[:500] if n.endswith(".h5") else c
        ),
    }
    damaged["empty"].write_bytes(b"")
    damaged["cut"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name, path in damaged.items():
        with pytest.raises(DataError, match=str(path)) as info:
            load_model(path)
        assert "again" in str(info.value) and "\n" not in str(info.value), name


def test_zero_byte_keras_file_on_the_command_line(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "segmenter" / "model.keras").write_bytes(b"")
    result = steel_keras("predict", "--run", str(copy), "--out", str(tmp_path / "s.csv"))
    assert_one_error(result, "predict", str(copy / "segmenter" / "model.keras"), "again")
    assert not (tmp_path / "s.csv").exists()


def test_damaged_onnx_export_names_the_file_and_the_export_command(run, tmp_path):
    from steel_keras.deploy.registry import get_runtime
    from steel_keras.rundir import run_models

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for model in run_models(copy):
        path = get_runtime("onnx").export_path(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x08\x07garbage, not a protobuf")
    result = steel_keras(
        "predict", "--run", str(copy), "--runtime", "onnx", "--out", str(tmp_path / "s.csv")
    )
    assert_one_error(result, "predict", ".onnx", "steel-keras export --run", "--format onnx")


def _truncated_jpeg(data: Path, tmp_path: Path) -> Path:
    source = next(iter(sorted((data / "train_images").iterdir())))
    path = tmp_path / "cut.jpg"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "kind",
    [
        "bomb",
        "huge_any_size",
        "wrong_size",
        "truncated",
        "not_an_image",
        "loop",
        "dangling",
        "folder",
    ],
)
def test_read_image_turns_bad_files_into_one_data_error(kind, data, tmp_path):
    from steel_keras.data.images import read_image

    path = tmp_path / f"{kind}.png"
    expected = (256, 1600)
    if kind == "bomb":
        path.write_bytes(png_header(30000, 30000))
    elif kind == "huge_any_size":
        path.write_bytes(png_header(10000, 9000))
        expected = None
    elif kind == "wrong_size":
        path.write_bytes(png_header(1600, 9000))
    elif kind == "truncated":
        path = _truncated_jpeg(data, tmp_path)
    elif kind == "not_an_image":
        path.write_text("ImageId,EncodedPixels\n")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere.png")
    else:
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_image(path, expected_shape=expected)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    if kind in ("loop", "dangling"):
        assert "symbolic link" in message


def test_symlink_loops_and_dangling_links_in_image_folders(damaged_data, tmp_path, no_tensorflow):
    loop = damaged_data / "train_images" / "loop.jpg"
    loop.symlink_to(loop.name)
    result = steel_keras(
        "eda",
        "--data",
        str(damaged_data),
        "--out",
        str(tmp_path / "eda"),
        pythonpath=(no_tensorflow,),
    )
    assert_one_error(result, "eda", str(loop), "symbolic link", alone=True)
    loop.unlink()
    dangling = damaged_data / "test_images" / "gone.jpg"
    dangling.symlink_to(tmp_path / "deleted.jpg")
    result = steel_keras(
        "eda",
        "--data",
        str(damaged_data),
        "--out",
        str(tmp_path / "eda"),
        pythonpath=(no_tensorflow,),
    )
    assert_one_error(result, "eda", str(dangling), "does not exist", alone=True)


def test_a_decompression_bomb_among_the_test_images(damaged_data, run, tmp_path):
    bomb = damaged_data / "test_images" / "000-bomb.png"  # sorted first: read in batch one
    bomb.write_bytes(png_header(30000, 30000))
    result = steel_keras(
        "predict", "--run", str(run), "--data", str(damaged_data), "--out", str(tmp_path / "s.csv")
    )
    assert_one_error(result, "predict", str(bomb), "pixels")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    ("args", "hidden"),
    [
        (("course", "sync", "--check"), "jupytext"),
        (("course", "check", "--chapter", "1"), "nbclient"),
        (("course", "check", "--chapter", "1"), "nbformat"),
    ],
)
def test_a_missing_optional_extra_names_the_extra(args, hidden, tmp_path):
    (tmp_path / f"{hidden}.py").write_text(
        f'raise ImportError("No module named {hidden!r} (hidden by the test)")\n'
    )
    result = steel_keras(*args, pythonpath=(tmp_path,))
    assert_one_error(result, "course", hidden, 'pip install "steel-keras[course]"', alone=True)


def test_comparing_with_a_real_folder_checks_each_header_before_decoding(tmp_path):
    from steel_keras.synthetic.realism import folder_statistics, write_side_by_side

    real = tmp_path / "real"
    real.mkdir()
    bomb = real / "huge.png"
    bomb.write_bytes(png_header(30000, 30000))
    with pytest.raises(DataError, match="huge.png"):
        folder_statistics([bomb])
    with pytest.raises(DataError, match="huge.png"):
        write_side_by_side(real, real, tmp_path / "side.png", rows=1)
    assert not (tmp_path / "side.png").exists()
