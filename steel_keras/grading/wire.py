"""The grader's wire format: values between the trusted judge and a sandboxed worker, no pickle.

A message is a frame: an 8-byte little-endian length, then a 4-byte length of a UTF-8 JSON
header, the header, and the raw buffers it refers to (``"_buffers"`` lists their sizes). Values
in the header are JSON scalars and lists as themselves, and everything else as an object tagged
by ``"$"``: ``tuple``, ``dict`` (items as pairs, so keys keep their type), ``set``, ``bytes``,
``path``, numpy arrays and scalars (``np.save`` bytes, read back with ``allow_pickle=False``;
object arrays item by item), pandas ``Index``, ``Series`` and ``DataFrame`` (columns, values and
index), and ``file``: a file the judge's test made, sent along so that the worker can open it.

Decoding builds only these types, so a reply from the student's process is data and never code.
This file imports neither the library nor anything outside numpy and pandas: it is copied into
the sandbox as it is, beside the worker.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

__all__ = ["WireError", "decode", "encode", "read_message", "write_message"]

MAX_DEPTH = 64
_FRAME = struct.Struct("<Q")
_HEADER = struct.Struct("<I")


class WireError(ValueError):
    """A value that cannot be sent, or a message that is malformed or too large."""


# --- framing --------------------------------------------------------------------------------


def write_message(stream, message: dict, *, files_under: tuple[str, ...] = ()) -> None:
    """Encode ``message`` (its values with :func:`encode`) and write it as one frame."""
    buffers: list[bytes] = []
    header = {key: encode(value, buffers, files_under) for key, value in message.items()}
    header["_buffers"] = [len(b) for b in buffers]
    text = json.dumps(header, allow_nan=True).encode("utf-8")
    body = b"".join([_HEADER.pack(len(text)), text, *buffers])
    stream.write(_FRAME.pack(len(body)) + body)
    stream.flush()


def read_message(stream, max_bytes: int, *, files_dir: str | None = None) -> dict | None:
    """One frame from ``stream``, decoded; ``None`` at the end of the stream.

    Raises:
        WireError: a frame larger than ``max_bytes``, cut short, or malformed.
    """
    size = _read_exactly(stream, _FRAME.size)
    if size is None:
        return None
    (length,) = _FRAME.unpack(size)
    if length > max_bytes:
        raise WireError(
            f"a reply of {length / 2**20:.1f} MiB is over the limit of {max_bytes / 2**20:.0f} MiB"
        )
    body = _read_exactly(stream, length)
    if body is None:
        raise WireError("the reply was cut short")
    return decode_frame(body, files_dir)


def decode_frame(body: bytes, files_dir: str | None = None) -> dict:
    """The message in one frame's body (what follows its 8-byte length)."""
    try:
        (text_len,) = _HEADER.unpack_from(body)
        header = json.loads(body[_HEADER.size : _HEADER.size + text_len].decode("utf-8"))
        sizes = header.pop("_buffers")
        buffers, offset = [], _HEADER.size + text_len
        for n in sizes:
            if not isinstance(n, int) or n < 0 or offset + n > len(body):
                raise WireError("a buffer runs past the end of the message")
            buffers.append(body[offset : offset + n])
            offset += n
        return {key: decode(value, buffers, files_dir) for key, value in header.items()}
    except WireError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
        struct.error,
        UnicodeDecodeError,
    ) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}: {exc}"[:300]) from None


def _read_exactly(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# --- encoding -------------------------------------------------------------------------------


def encode(value, buffers: list[bytes], files_under: tuple[str, ...] = (), depth: int = 0):
    """``value`` as JSON-able data, large binary parts appended to ``buffers``.

    ``files_under``: a ``Path`` (or absolute ``str``) naming an existing file under one of these
    folders travels as the file's content, so that the receiver can open its own copy.

    Raises:
        WireError: a type this format does not carry, or nesting deeper than ``MAX_DEPTH``.
    """
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | str) or type(value) in (int, float):
        if files_under and isinstance(value, str) and _shipped(value, files_under):
            return _file(value, "str", buffers)
        return value
    if isinstance(value, np.generic | np.ndarray):
        return _array(
            np.asarray(value),
            buffers,
            files_under,
            depth,
            scalar=value.ndim == 0 and isinstance(value, np.generic),
        )
    if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        return _pandas(value, buffers, files_under, depth)
    if isinstance(value, PurePath):
        if files_under and _shipped(str(value), files_under):
            return _file(str(value), "path", buffers)
        return {"$": "path", "value": str(value)}

    def sub(v):
        return encode(v, buffers, files_under, depth + 1)

    if isinstance(value, int | float):  # subclasses, e.g. an IntEnum
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, list):
        return [sub(v) for v in value]
    if isinstance(value, tuple):
        return {"$": "tuple", "items": [sub(v) for v in value]}
    if isinstance(value, dict):
        return {"$": "dict", "items": [[sub(k), sub(v)] for k, v in value.items()]}
    if isinstance(value, set | frozenset):
        return {"$": type(value).__name__, "items": [sub(v) for v in value]}
    if isinstance(value, bytes | bytearray):
        buffers.append(bytes(value))
        return {"$": "bytes", "buf": len(buffers) - 1}
    if isinstance(value, complex):
        return {"$": "complex", "value": [value.real, value.imag]}
    converted = _tensor_to_numpy(value)
    if converted is not None:
        return encode(converted, buffers, files_under, depth)
    raise WireError(
        f"cannot send a value of type {type(value).__module__}."
        f"{type(value).__qualname__}; return numbers, strings, lists, dicts, "
        "numpy arrays or pandas tables"
    )


def _tensor_to_numpy(value) -> np.ndarray | None:
    """A TensorFlow, Keras, JAX or torch tensor as a numpy array; None for anything else."""
    module = type(value).__module__.split(".")[0]
    if module not in ("tensorflow", "keras", "jax", "jaxlib", "torch"):
        return None
    for convert in (lambda v: v.numpy(), np.asarray):
        try:
            array = np.asarray(convert(value))
        except Exception:  # noqa: BLE001 - try the next way, then refuse the value
            continue
        if array.dtype != object:
            return array
    return None


def _array(array: np.ndarray, buffers, files_under, depth, scalar: bool):
    if array.dtype.hasobject:
        items = [encode(v, buffers, files_under, depth + 1) for v in array.ravel().tolist()]
        return {"$": "objarray", "shape": list(array.shape), "items": items}
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    buffers.append(out.getvalue())
    return {"$": "ndarray", "buf": len(buffers) - 1, "scalar": scalar}


def _values(values, buffers, files_under, depth):
    """A pandas column or index's values: a numpy array, or an extension array by item."""
    if isinstance(values.dtype, np.dtype):
        return _array(np.asarray(values), buffers, files_under, depth + 1, scalar=False)
    items = [
        encode(None if pd.isna(v) is True else v, buffers, files_under, depth + 1)
        for v in list(values)
    ]
    return {"$": "extarray", "dtype": str(values.dtype), "items": items}


def _pandas(value, buffers, files_under, depth):
    def sub(v):
        return encode(v, buffers, files_under, depth + 1)

    if isinstance(value, pd.DataFrame):
        return {
            "$": "dataframe",
            "columns": sub(value.columns),
            "index": sub(value.index),
            "data": [
                _values(value.iloc[:, i].array, buffers, files_under, depth)
                for i in range(value.shape[1])
            ],
        }
    if isinstance(value, pd.Series):
        return {
            "$": "series",
            "values": _values(value.array, buffers, files_under, depth),
            "index": sub(value.index),
            "name": sub(value.name),
        }
    if isinstance(value, pd.RangeIndex):
        return {
            "$": "range_index",
            "start": value.start,
            "stop": value.stop,
            "step": value.step,
            "name": sub(value.name),
        }
    if isinstance(value, pd.MultiIndex):
        return {
            "$": "multi_index",
            "tuples": [sub(t) for t in value.tolist()],
            "names": [sub(n) for n in value.names],
        }
    return {
        "$": "index",
        "values": _values(value.array, buffers, files_under, depth),
        "name": sub(value.name),
    }


def _shipped(path: str, folders: tuple[str, ...]) -> bool:
    if not os.path.isabs(path) or not os.path.isfile(path):
        return False
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(f) + os.sep) for f in folders)


def _file(path: str, kind: str, buffers: list[bytes]) -> dict:
    buffers.append(Path(path).read_bytes())
    return {"$": "file", "name": os.path.basename(path), "as": kind, "buf": len(buffers) - 1}


# --- decoding -------------------------------------------------------------------------------


def decode(data, buffers: list[bytes], files_dir: str | None = None, depth: int = 0):
    """The value :func:`encode` made, built from plain data and ``buffers`` only."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, bool | int | float | str):
        return data

    def sub(v):
        return decode(v, buffers, files_dir, depth + 1)

    if isinstance(data, list):
        return [sub(v) for v in data]
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__} in a message")
    tag = data["$"]
    if tag in _SIMPLE:
        return _SIMPLE[tag](data, sub, buffers)
    if tag == "file":
        return _write_file(data, buffers, files_dir)
    return _decode_pandas(tag, data, sub, buffers)


def _decode_array(data, buffers) -> np.ndarray:
    array = load_npy(buffers[data["buf"]])
    return array[()] if data.get("scalar") else array


def load_npy(buffer: bytes) -> np.ndarray:
    """The array in ``np.save`` bytes, checked against their length before anything is allocated
    (``np.load`` on a stream allocates what the header claims first), never an object array."""
    stream = io.BytesIO(buffer)
    version = np.lib.format.read_magic(stream)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran_order, dtype = read_header(stream)
    if dtype.hasobject:
        raise WireError("an array of Python objects came as raw bytes")
    data = buffer[stream.tell() :]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dtype.itemsize != len(data):
        raise WireError(f"an array of shape {shape} and dtype {dtype} came with {len(data)} bytes")
    flat = np.frombuffer(data, dtype=dtype, count=count).copy()
    return flat.reshape(shape, order="F" if fortran_order else "C")


def _decode_objarray(data, sub) -> np.ndarray:
    items = [sub(v) for v in data["items"]]
    shape = tuple(int(n) for n in data["shape"])
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _decode_values(data, sub, buffers):
    if data["$"] == "extarray":
        return pd.array(
            [sub(v) for v in data["items"]], dtype=pd.api.types.pandas_dtype(str(data["dtype"]))
        )
    return _decode_array(data, buffers) if data["$"] == "ndarray" else _decode_objarray(data, sub)


def _decode_pandas(tag: str, data, sub, buffers):
    if tag == "dataframe":
        index = sub(data["index"])
        columns = [_decode_values(c, sub, buffers) for c in data["data"]]
        frame = pd.DataFrame(dict(enumerate(columns)), index=index)
        frame.columns = sub(data["columns"])
        return frame
    if tag == "series":
        values = _decode_values(data["values"], sub, buffers)
        return pd.Series(values, index=sub(data["index"]), name=sub(data["name"]), copy=False)
    if tag == "range_index":
        return pd.RangeIndex(
            int(data["start"]), int(data["stop"]), int(data["step"]), name=sub(data["name"])
        )
    if tag == "multi_index":
        return pd.MultiIndex.from_tuples(
            [sub(t) for t in data["tuples"]], names=[sub(n) for n in data["names"]]
        )
    if tag == "index":
        values = _decode_values(data["values"], sub, buffers)
        return pd.Index(
            values,
            name=sub(data["name"]),
            dtype=object if isinstance(values, np.ndarray) and values.dtype.hasobject else None,
        )
    raise WireError(f"unknown tag {tag!r} in a message")


def _write_file(data, buffers, files_dir: str | None):
    if files_dir is None:
        raise WireError("a file was sent where none is expected")
    name = os.path.basename(str(data["name"])) or "file"
    folder = Path(files_dir) / str(len(os.listdir(files_dir)) if os.path.isdir(files_dir) else 0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(buffers[data["buf"]])
    return path if data["as"] == "path" else str(path)


_SIMPLE = {
    "tuple": lambda d, sub, b: tuple(sub(v) for v in d["items"]),
    "dict": lambda d, sub, b: {sub(k): sub(v) for k, v in d["items"]},
    "set": lambda d, sub, b: {sub(v) for v in d["items"]},
    "frozenset": lambda d, sub, b: frozenset(sub(v) for v in d["items"]),
    "bytes": lambda d, sub, b: b[d["buf"]],
    "complex": lambda d, sub, b: complex(*d["value"]),
    "path": lambda d, sub, b: Path(str(d["value"])),
    "ndarray": lambda d, sub, b: _decode_array(d, b),
    "objarray": lambda d, sub, b: _decode_objarray(d, sub),
}
