"""The sandboxed worker: imports a student's exercise file and calls its functions on request.

    python -I -B worker.py '{"submission": "/submission", "memory_mb": 2048, ...}' 3 4

The judge starts it (inside the sandbox) with a request pipe on fd 3 and a reply pipe on fd 4;
stdout and stderr are the student's output, which the judge reads and caps. Before any student
code runs, this bootstrap:

- lowers its resource limits, soft and hard, so that neither the code nor its children can raise
  them again: address space, processes, file size, no core dumps;
- puts a finder first on ``sys.meta_path`` that answers every ``import steel_keras...`` with a
  stand-in whose functions raise :class:`LibraryOutOfReach`, naming the import and its line: the
  library holds the exercises' answers, and it is not in the sandbox anyway;
- loads the wire format and the harness from its own folder.

Then it serves requests: ``load`` (import a chapter's file), ``call`` (a function, with
arguments) and ``harness`` (a trusted helper around a function). Each reply is data: a value, or
an error's type, message and line in the student's file. What it says is never a test's outcome:
the judge compares it with what the test expects.

This file imports neither the library nor the grader: it is copied into the sandbox as it is.
"""

from __future__ import annotations

import importlib.util
import json
import linecache
import os
import resource
import shutil
import sys
import tempfile
import traceback

MB = 2**20
LIBRARY = "steel_keras"


class LibraryOutOfReach(BaseException):  # noqa: N818 - read as a sentence in messages
    """Raised by anything imported from the library while grading.

    A ``BaseException``, so that ``except Exception`` in the student's code lets it through.
    """


# --- limits ---------------------------------------------------------------------------------


def set_limits(config: dict) -> None:
    """Lower the soft and hard limits of this process (and so of everything it starts)."""
    limits = {
        resource.RLIMIT_AS: config.get("memory_mb", 0) * MB,
        resource.RLIMIT_FSIZE: config.get("fsize_mb", 0) * MB,
        resource.RLIMIT_NPROC: config.get("nproc", 0),
        resource.RLIMIT_NOFILE: config.get("nofile", 0),
    }
    for which, value in limits.items():
        if value:
            _lower(which, value)
    _lower(resource.RLIMIT_CORE, 0, zero_ok=True)


def _lower(which: int, value: int, zero_ok: bool = False) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    if value or zero_ok:
        resource.setrlimit(which, (value, value))


# --- the library, out of reach --------------------------------------------------------------


def _importer() -> tuple[str, str]:
    """The import statement being run, and where: ``("from x import y", "ch01.py, line 3")``."""
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen")
        or frame.f_code.co_filename == __file__
        or "importlib" in frame.f_code.co_filename
    ):
        frame = frame.f_back
    if frame is None:
        return f"import {LIBRARY}", "an unknown line"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(filename, line).strip() or f"import {LIBRARY}"
    return text, f"{os.path.basename(filename)}, line {line}"


class Poisoned:
    """Something imported from the library: any use raises :class:`LibraryOutOfReach`."""

    def __init__(self, name: str, statement: str, where: str) -> None:
        object.__setattr__(self, "_poison", (name, statement, where))

    def _raise(self, *args, **kwargs):
        name, statement, where = object.__getattribute__(self, "_poison")
        raise LibraryOutOfReach(
            f"`{statement}` ({where}): the library's answer is out of reach "
            f"while grading ({name} cannot be used); write the function "
            "yourself"
        )

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        name, statement, where = object.__getattribute__(self, "_poison")
        return Poisoned(f"{name}.{attr}", statement, where)

    __call__ = __getitem__ = __iter__ = __len__ = __index__ = __int__ = __float__ = _raise
    __bool__ = __array__ = __enter__ = __add__ = __mul__ = __eq__ = __lt__ = _raise
    __hash__ = object.__hash__


class _PoisonedModule(type(sys)):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        statement, where = self.__dict__["_statement"]
        return Poisoned(f"{self.__name__}.{attr}", statement, where)


class LibraryBlocker:
    """A meta-path finder and loader: ``steel_keras`` and its modules become stand-ins."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name != LIBRARY and not name.startswith(LIBRARY + "."):
            return None
        return importlib.util.spec_from_loader(name, LibraryBlocker, is_package=True)

    @staticmethod
    def create_module(spec):
        module = _PoisonedModule(spec.name)
        module.__dict__["_statement"] = _importer()
        module.__path__ = []
        return module

    @staticmethod
    def exec_module(module) -> None:
        return None


# --- requests -------------------------------------------------------------------------------


class Worker:
    """Serves the judge's requests on the student's module(s)."""

    def __init__(self, config: dict, wire, harness) -> None:
        self.submission = config["submission"]
        self.max_bytes = int(config.get("max_reply_mb", 64)) * MB
        self.wire, self.harness = wire, harness
        self.modules: dict[str, object] = {}

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "load":
            return self.load(str(request["module"]), str(request["file"]))
        module = self.modules[request["module"]]
        if op == "call":
            return self.call(getattr(module, request["function"]), request)
        if op == "harness":
            helper = getattr(self.harness, request["name"])
            return self.call(lambda *a, **k: helper(module, *a, **k), request)
        raise ValueError(f"unknown request {op!r}")

    def load(self, module_name: str, file_name: str) -> dict:
        path = os.path.join(self.submission, os.path.basename(file_name))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - a student's import may raise anything
            sys.modules.pop(module_name, None)
            return {"ok": False, "error": self.describe(exc)}
        self.modules[module_name] = module
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        return {"ok": True, "functions": names}

    def call(self, function, request: dict) -> dict:
        args, kwargs = list(request.get("args", [])), dict(request.get("kwargs", {}))
        before = {i: a.copy() for i, a in enumerate(args) if _is_array(a)}
        try:
            value = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - report whatever the code raised
            return {"ok": False, "error": self.describe(exc)}
        changed = [
            [i, args[i]] for i, a in before.items() if _is_array(args[i]) and _changed(a, args[i])
        ]
        return {"ok": True, "value": value, "mutated": changed}

    def describe(self, exc: BaseException) -> dict:
        """An exception as data: type, builtin bases, message, and the line of the student's
        file that raised it."""
        try:
            message = str(exc)
        except BaseException:  # noqa: BLE001 - a student's __str__ may raise too
            message = "(the exception's message could not be read)"
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if f.filename.startswith(self.submission + os.sep)
        ]
        where = (
            f"{os.path.basename(frames[-1].filename)}, line {frames[-1].lineno}" if frames else None
        )
        if isinstance(exc, SyntaxError) and exc.lineno:
            where = f"{os.path.basename(exc.filename or '')}, line {exc.lineno}"
        return {
            "type": type(exc).__qualname__[:200],
            "bases": [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"],
            "message": message[:4000],
            "where": where,
            "library": isinstance(exc, LibraryOutOfReach),
        }


def _is_array(value) -> bool:
    return (
        type(value).__module__ == "numpy"
        and type(value).__name__ == "ndarray"
        and not value.dtype.hasobject
    )


def _changed(before, after) -> bool:
    return (
        before.shape != after.shape
        or before.dtype != after.dtype
        or before.tobytes() != after.tobytes()
    )


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def serve(config: dict, requests, replies) -> None:
    """Answer requests until the judge closes the pipe."""
    here = os.path.dirname(os.path.abspath(__file__))
    wire = _load_file("grader_wire", os.path.join(here, "wire.py"))
    harness = _load_file("grader_harness", os.path.join(here, "harness.py"))
    worker = Worker(config, wire, harness)
    # Files a test passes arrive here: a folder of this worker's own, never a shared one.
    files = tempfile.mkdtemp(prefix="steel-keras-files-")
    wire.write_message(replies, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            request = wire.read_message(requests, 2**40, files_dir=files)
        except (wire.WireError, OSError) as exc:
            wire.write_message(replies, _failure(f"the call could not be received: {exc}"))
            continue
        if request is None:
            return
        try:
            reply = worker.handle(request)
            wire.write_message(replies, reply)
        except wire.WireError as exc:
            wire.write_message(replies, _failure(str(exc)))
        except BaseException as exc:  # noqa: BLE001 - keep serving; the judge decides
            wire.write_message(replies, {"ok": False, "error": worker.describe(exc)})


def _failure(message: str) -> dict:
    """A reply that fails the call as the grader's error, not as one of the student's."""
    return {
        "ok": False,
        "error": {
            "type": "UnsendableValue",
            "bases": [],
            "message": message,
            "where": None,
            "library": False,
        },
    }


def copy_tree(source: str, target: str) -> None:
    """The student's files arrive read-only; its private, writable copy lives in memory."""
    for root, _dirs, files in os.walk(source):
        out = os.path.join(target, os.path.relpath(root, source))
        os.makedirs(out, exist_ok=True)
        for name in files:
            shutil.copyfile(os.path.join(root, name), os.path.join(out, name))


def main() -> None:
    config = json.loads(sys.argv[1])
    requests = os.fdopen(int(sys.argv[2]), "rb", buffering=0)
    replies = os.fdopen(int(sys.argv[3]), "wb")
    for fd in (requests.fileno(), replies.fileno()):
        os.set_inheritable(fd, False)
    set_limits(config)
    if config.get("copy_from"):
        copy_tree(config["copy_from"], config["submission"])
    sys.meta_path.insert(0, LibraryBlocker)
    for name in [n for n in sys.modules if n == LIBRARY or n.startswith(LIBRARY + ".")]:
        del sys.modules[name]
    sys.path.insert(0, config["submission"])
    os.chdir(config["submission"])
    serve(config, requests, replies)


if __name__ == "__main__":
    main()
