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


class TrainingError(SteelKerasError):
    """Training could not go on: the loss became NaN or infinite."""
