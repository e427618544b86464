"""Errors that mean "the input is wrong", as opposed to a bug.

The command line prints these as one line and exits with code 2; a traceback means a bug.
Every message names the file, row or argument and says what to do.
"""


class SteelKerasError(Exception):
    """Base class of the errors the command line reports as one line, exit code 2."""


class DataError(SteelKerasError, ValueError):
    """A file, folder, table or image is missing, malformed or of the wrong size."""


class RLEError(DataError):
    """A run-length encoded mask is malformed."""


class ConfigError(SteelKerasError, ValueError):
    """An unknown model, backbone, loss or recipe name, or an image size a model cannot take."""


class RuntimeUnavailableError(SteelKerasError):
    """A runtime or converter this machine lacks (TensorRT, TF-TRT, OpenVINO, ONNX Runtime)."""


class OutputError(SteelKerasError):
    """An output that cannot be written where asked: a folder where a file is wanted (or the
    reverse), a folder that cannot be made or written to, a full disk, or one of the command's
    own inputs."""


class MissingExtraError(SteelKerasError):
    """An optional dependency a command needs is not installed; the message names the extra."""


def require_modules(what: str, extra: str, *modules: str) -> None:
    """Import each of ``modules``, or say which extra of steel-keras brings the first one missing.

    Args:
        what: the command or feature that needs them, e.g. ``"course check"``.
        extra: the optional-dependency group in ``pyproject.toml`` that installs them.
        modules: importable names, e.g. ``"jupytext"``.

    Raises:
        MissingExtraError: one of them cannot be imported.
    """
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MissingExtraError(
                f"{what} needs the Python package {name}, which cannot be imported ({exc}); "
                f'install the {extra} extra: pip install "steel-keras[{extra}]"'
            ) from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name where it has none), for quoting
    a library's error inside one of ours."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class TrainingError(SteelKerasError):
    """Training could not go on: the loss became NaN or infinite."""
