"""The grader's side of a sandboxed submission: start its worker (:mod:`camlab.course.worker`), run its program,
and stand in for its functions while the instructor's checks run in the grader's own process.

A :class:`Remote` is what the check cells see under the name of a student's function or class: calling it sends
the arguments to the sandbox, runs the student's object there and decodes the result as plain data (tensors,
arrays, numbers, tuples, lists, dicts; anything else comes back as another :class:`Remote`). Decoding never runs
code from the submission (no pickle): a result can be wrong, never dangerous. Every reply has a deadline kept by
this process, so a worker that hangs, stops itself or floods its pipe is killed and its remaining calls fail."""
from __future__ import annotations

import base64
import io
import json
import queue
import threading
import time

from camlab.course import sandbox

#: the longest protocol line the grader reads (a larger result is an error)
MAX_LINE = 64 << 20
_DTYPES = {"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"}


class WorkerGone(RuntimeError):
    """The worker did not answer in time, broke the protocol or died: it has been killed."""


class Session:
    """One submission's worker: ``run(cells)`` then calls through :class:`Remote` objects; ``close()`` kills it."""

    def __init__(self, limits: sandbox.Limits, use_sandbox: bool = True, start_timeout: float = 60):
        self.process = sandbox.start_worker(limits, use_sandbox)
        self.lines: queue.Queue = queue.Queue()
        self.dead = False
        threading.Thread(target=self._read, daemon=True).start()
        self._receive(start_timeout)

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            line = stream.readline(MAX_LINE)
            if not line or not line.endswith("\n"):
                self.lines.put(None)
                return
            self.lines.put(line)

    def _receive(self, timeout: float) -> dict:
        if self.dead:
            raise WorkerGone("the submission's process was stopped earlier")
        try:
            line = self.lines.get(timeout=max(timeout, 0.1))
            message = json.loads(line) if line is not None else None
        except (queue.Empty, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict):
            self.close()
            raise WorkerGone("the submission's process stopped answering (time limit, crash or a broken reply)")
        return message

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.close()
            raise WorkerGone("the submission's process has ended") from None

    def run(self, cells: list[str], timeout: float, own_work: list[str]) -> list[dict]:
        """Run ``cells`` in order (each at most ``timeout`` s); one ``{"status", "error"}`` per cell that ran."""
        self._send({"op": "run", "cells": cells, "timeout": timeout, "own_work": own_work})
        results, deadline = [], time.monotonic() + len(cells) * (timeout + 5) + 30
        while True:
            try:
                message = self._receive(deadline - time.monotonic())
            except WorkerGone:
                return results
            if message.get("done"):
                return results
            results.append({"status": str(message.get("status")), "error": str(message.get("error") or "")[:300]})

    def call(self, name: str | None, args: tuple, kwargs: dict, handle: int | None = None,
             helper: str | None = None, timeout: float = 60) -> object:
        import torch

        buffer = io.BytesIO()
        torch.save((args, kwargs), buffer)
        self._send({"op": "call", "name": name, "handle": handle, "helper": helper,
                    "args": base64.b64encode(buffer.getvalue()).decode("ascii")})
        message = self._receive(timeout + 10)
        if "error" in message:
            raise _student_error(str(message["error"]))
        return decode(message.get("ok"), self)

    def close(self) -> None:
        if not self.dead:
            self.dead = True
            sandbox.stop_worker(self.process)


class StudentError(Exception):
    """The student's code raised. Only the name of a built-in exception is kept: the text could carry a hidden
    case's inputs into the feedback."""


def _student_error(report: str) -> Exception:
    import builtins

    name = report.split(":", 1)[0].strip()
    if name == "NotImplementedError":
        return NotImplementedError("not done yet")
    if name == "CellTimeout":
        return StudentError("it ran past the time limit")
    if name == "NameError":
        return StudentError("NameError: a name is not defined (did the cell that defines it run?)")
    known = isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), BaseException)
    return StudentError(f"{name if known else 'an exception'} (its message is not shown by the grader)")


class Remote:
    """A student's function, class or object living in the sandbox. ``Remote(...)`` calls it there;
    ``apply(helper, *args)`` runs one of camlab's functions on it there (``helper``: ``"module:function"``)."""

    def __init__(self, session: Session, name: str | None, handle: int | None = None, kind: str = "object",
                 timeout: float = 60):
        self.session, self.name, self.handle, self.kind, self.timeout = session, name, handle, kind, timeout

    def __call__(self, *args, **kwargs):
        return self.session.call(self.name, args, kwargs, self.handle, timeout=self.timeout)

    def apply(self, helper: str, *args, **kwargs):
        return self.session.call(self.name, args, kwargs, self.handle, helper=helper, timeout=self.timeout)

    def __repr__(self) -> str:
        return f"<the submission's {self.name or self.kind}>"


def _number(value):
    if isinstance(value, dict) and value.get("t") == "float" and value.get("v") in ("nan", "inf", "-inf"):
        return float(value["v"])
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    raise ValueError("a broken value in the reply")


def decode(value, session: Session | None = None):
    """The inverse of the worker's ``encode``, strictly: anything unexpected is a ValueError."""
    import numpy
    import torch

    if not isinstance(value, dict) or value.get("t") == "float":
        return _number(value)
    kind = value.get("t")
    if kind in ("tensor", "ndarray"):
        if value.get("dtype") not in _DTYPES:
            raise ValueError(f"a result of dtype {value.get('dtype')!r} (the checks take numbers and booleans)")
        shape = [int(size) for size in value["shape"]]
        array = numpy.array([_number(v) for v in value["v"]], dtype=value["dtype"]).reshape(shape)
        return torch.from_numpy(array) if kind == "tensor" else array
    if kind in ("tuple", "list"):
        items = [decode(item, session) for item in value["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {str(key): decode(item, session) for key, item in value["v"].items()}
    if kind == "handle" and session is not None:
        return Remote(session, None, int(value["id"]), str(value.get("kind")))
    raise ValueError(f"a reply of unknown kind {kind!r}")
