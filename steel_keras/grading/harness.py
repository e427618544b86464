"""Trusted helpers that run beside the code under test and report what it built, as plain data.

Some exercises take what cannot travel between processes: a Keras symbolic tensor
(``classifier_head(features)``), a callable (``hflip_tta(predict, batch)``), or a tensor where a
numpy array would not do. A graded test calls such an exercise through a helper here, by name:
``impl.harness("keras_block", "classifier_head", ...)``. The helper builds the inputs where the
exercise runs, calls it, and returns numbers, strings and arrays: output shapes, layer names,
classes and settings, parameter counts, outputs on given inputs, what a callback received. The
test, in the judge, asserts on that data; only a helper's arguments reach the student's process.

Each helper takes ``ex``, the exercise functions as attributes (the student's module or the
reference solutions), then its own arguments. ``USES`` names the exercise a helper calls. This
file imports neither the library nor the grader: it is copied into the sandbox as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["USES", "call_on_tensors", "describe_model", "hflip_tta_trace", "keras_block"]

# Settings of a layer worth reporting; the rest of get_config() is not needed by any test.
LAYER_SETTINGS = (
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "use_bias",
    "units",
    "rate",
    "momentum",
    "epsilon",
    "axis",
    "center",
    "scale",
    "size",
    "interpolation",
)


def _jsonable(value):
    if isinstance(value, list | tuple):
        return tuple(_jsonable(v) for v in value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def describe_layer(layer) -> dict:
    """A layer as data: name, class names (its own, then its bases), settings, output shape."""
    config = layer.get_config()
    activation = getattr(layer, "activation", None)
    output = getattr(layer, "output", None)
    return {
        "name": layer.name,
        "classes": [c.__name__ for c in type(layer).__mro__],
        "settings": {k: _jsonable(config[k]) for k in LAYER_SETTINGS if k in config},
        "activation": getattr(activation, "__name__", None) if activation else None,
        "output_shape": _shape(output.shape) if output is not None else None,
        "params": int(layer.count_params()) if layer.built else 0,
    }


def describe_model(model) -> dict:
    """A Keras model as data: input and output shapes, its layers in order, its weight count."""
    shapes = [_shape(t.shape) for t in model.inputs]
    return {
        "is_model": True,
        "input_shape": shapes[0] if len(shapes) == 1 else shapes,
        "output_shape": _shape(model.outputs[0].shape),
        "layers": [describe_layer(layer) for layer in model.layers],
        "params": int(model.count_params()),
    }


def keras_block(
    ex,
    function: str,
    input_shapes: Sequence[Sequence[int]],
    args: Sequence = (),
    kwargs: dict | None = None,
    *,
    set_weights: dict | None = None,
    inputs: Sequence[np.ndarray] | None = None,
) -> dict:
    """Call ``ex.<function>(keras.Input(s), *args, **kwargs)`` on symbolic inputs of
    ``input_shapes`` (without the batch axis); wrap what it returns in a model.

    Returns :func:`describe_model`'s data, plus ``"outputs"``: the model's output on ``inputs``
    (after ``set_weights``: ``{layer name: [arrays]}``), in inference mode.
    """
    import keras

    symbols = [keras.Input(tuple(shape)) for shape in input_shapes]
    out = getattr(ex, function)(*symbols, *args, **(kwargs or {}))
    return _described(
        keras.Model(symbols if len(symbols) > 1 else symbols[0], out), set_weights, inputs
    )


def keras_model(
    ex,
    function: str,
    args: Sequence = (),
    kwargs: dict | None = None,
    *,
    set_weights: dict | None = None,
    inputs: Sequence[np.ndarray] | None = None,
) -> dict:
    """Call ``ex.<function>(*args, **kwargs)``, which builds a model; describe it like
    :func:`keras_block` (``is_model`` says whether it returned a ``keras.Model``)."""
    import keras

    model = getattr(ex, function)(*args, **(kwargs or {}))
    if not isinstance(model, keras.Model):
        return {"is_model": False, "returned": type(model).__name__}
    return _described(model, set_weights, inputs)


def _described(model, set_weights: dict | None, inputs) -> dict:
    for name, weights in (set_weights or {}).items():
        model.get_layer(name).set_weights([np.asarray(w) for w in weights])
    summary = describe_model(model)
    if inputs is not None:
        arrays = [np.asarray(x, dtype=np.float32) for x in inputs]
        result = model(arrays if len(arrays) > 1 else arrays[0], training=False)
        summary["outputs"] = np.asarray(result)
    return summary


def call_on_tensors(ex, function: str, *args, **kwargs):
    """``ex.<function>`` called with every array argument as a backend tensor (float32)."""
    import keras

    def tensor(value):
        if isinstance(value, np.ndarray):
            return keras.ops.convert_to_tensor(value.astype(np.float32))
        return value

    result = getattr(ex, function)(
        *(tensor(a) for a in args), **{k: tensor(v) for k, v in kwargs.items()}
    )
    return np.asarray(keras.ops.convert_to_numpy(result))


def hflip_tta_trace(ex, batch: np.ndarray, weights: np.ndarray) -> dict:
    """``ex.hflip_tta(predict, batch)`` with a ``predict`` that depends on the column:
    ``concat(x * weights[column], 1 - x)`` over the last axis. Returns the output and every
    batch that ``predict`` received, in order."""
    received = []

    def predict(x):
        x = np.asarray(x)
        received.append(x.copy())
        return np.concatenate([x * weights[None, None, :, None], 1 - x], axis=-1)

    output = ex.hflip_tta(predict, batch)
    return {"output": np.asarray(output, dtype=np.float64), "received": received}


USES = {
    "keras_block": None,  # the exercise named by its ``function`` argument
    "keras_model": None,
    "call_on_tensors": None,
    "hflip_tta_trace": ("hflip_tta",),
}


def exercises_used(name: str, args: Sequence) -> tuple[str, ...]:
    """The exercise functions that the helper ``name`` calls with these arguments."""
    uses = USES[name]
    return uses if uses is not None else (str(args[0]),)
