"""The student's side of grading: ``python -m camlab.course.worker``, started by the grader inside the sandbox.

It runs a submission's program (the chapter's lesson cells with the student's solution cells) in an IPython shell,
then answers the grader's calls: "call the object named ``cam`` with these arguments" -> the result, encoded as
plain data. It never sees an expected answer and decides nothing: the grader compares the results in its own
process (:mod:`camlab.course.grading`). Everything here runs in the student's process, so nothing here is trusted:
a submission may replace any of it, and can then only give wrong answers to its own calls.

Protocol: one JSON object per line on the worker's original stdin/stdout (duplicated to private descriptors before
any student code runs; the student's own output goes to /dev/null). Messages from the grader:
``{"op": "run", "cells": [source, ...], "timeout": s, "own_work": [dotted names]}`` (answered with one
``{"cell": i, "status": "ok"|"error", "error": "..."}`` per cell, then ``{"done": true}``) and
``{"op": "call", "name": str | None, "handle": int | None, "args": base64 torch.save((args, kwargs)),
"helper": "module:function" | None}`` (answered with ``{"ok": encoded}`` or ``{"error": "Name: text"}``)."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import sys

#: the largest result (number of elements) a call may return
MAX_ELEMENTS = 5_000_000


class CellTimeout(Exception):
    """A cell or a call ran past its time limit (raised by the alarm)."""


def _alarm(seconds: float):
    def expired(signum, frame):
        raise CellTimeout(f"ran past {seconds:g} s")
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def encode(value, handles: list, depth: int = 0):
    """``value`` as JSON-able data: numbers, strings, tensors and arrays (dtype, shape, flat values), tuples, lists,
    dicts; anything else (a function, a class, an object) stays here and is sent as a handle the grader can call."""
    import numpy
    import torch

    if depth > 20:
        raise ValueError("the result is nested more than 20 levels deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, float) or value == value and abs(value) != float("inf") \
            else {"t": "float", "v": repr(value)}
    if isinstance(value, (torch.Tensor, numpy.ndarray, numpy.generic)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "ndarray"
        array = value.detach().cpu().numpy() if kind == "tensor" else numpy.asarray(value)
        if array.size > MAX_ELEMENTS:
            raise ValueError(f"the result has {array.size} elements, more than {MAX_ELEMENTS}")
        return {"t": kind, "dtype": str(array.dtype), "shape": list(array.shape),
                "v": [repr(v) if isinstance(v, float) and (v != v or abs(v) == float("inf")) else v
                      for v in array.ravel().tolist()]}
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__, "v": [encode(item, handles, depth + 1) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"t": "dict", "v": {key: encode(item, handles, depth + 1) for key, item in value.items()}}
    handles.append(value)
    return {"t": "handle", "id": len(handles) - 1, "kind": "class" if isinstance(value, type) else "object"}


def trap_own_work(names: list[str]) -> None:
    """Make camlab's own implementations of this chapter's exercises raise when called (their code object is
    replaced, so references taken earlier are caught too): an answer must be the student's work."""
    import importlib

    for dotted in names:
        module_name, _, attribute = dotted.partition(":")
        owner = importlib.import_module(module_name)
        *path, last = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        function = getattr(owner, last)
        function = getattr(function, "__func__", function)
        message = f"camlab's own {attribute} may not be used in a graded exercise: write it yourself"
        namespace: dict = {}
        exec(f"def trap(*args, **kwargs):\n    raise PermissionError({message!r})", namespace)
        if not function.__code__.co_freevars:
            function.__code__ = namespace["trap"].__code__
        setattr(owner, last, namespace["trap"])


def drop_privileges() -> None:
    """In a root grader's sandbox (:func:`camlab.course.sandbox.bwrap_command`), become the sandbox's own user
    ``CAMLAB_SANDBOX_UID`` (user, group and saved ids, no supplementary groups: every capability is gone) before any
    submission code runs, so that the kernel applies the process limit; refuse to go on as root."""
    wanted = os.environ.get("CAMLAB_SANDBOX_UID")
    if not wanted or os.getuid() != 0:
        return
    uid = int(wanted)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
        raise SystemExit("the worker could not leave root")


def run_cells(shell, cells: list[str], timeout: float, reply) -> None:
    for index, source in enumerate(cells):
        try:
            _alarm(timeout)
            result = shell.run_cell(source, store_history=False, silent=False)
        except BaseException as error:  # noqa: BLE001 - the alarm outside IPython's own handler
            result, outcome = None, _first_line(error)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if result is not None:
            error = result.error_before_exec or result.error_in_exec
            outcome = _first_line(error) if error is not None else None
        reply({"cell": index, "status": "ok" if outcome is None else "error", "error": outcome})
    reply({"done": True})


def answer_call(shell, message: dict, handles: list, timeout: float) -> dict:
    import importlib

    import torch

    try:
        args, kwargs = torch.load(io.BytesIO(base64.b64decode(message["args"])), weights_only=False)
        if message.get("handle") is not None:
            target = handles[int(message["handle"])]
        elif message["name"] not in shell.user_ns:
            raise NameError(f"name {message['name']!r} is not defined (did its cell run?)")
        else:
            target = shell.user_ns[message["name"]]
        if message.get("helper"):
            module_name, _, function = message["helper"].partition(":")
            args, target = (target, *args), getattr(importlib.import_module(module_name), function)
        _alarm(timeout)
        try:
            value = target(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return {"ok": encode(value, handles)}
    except BaseException as error:  # noqa: BLE001 - a student's function may fail in any way
        return {"error": _first_line(error)}


def main() -> None:
    drop_privileges()
    protocol_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def reply(message: dict) -> None:
        protocol_out.write(json.dumps(message) + "\n")
        protocol_out.flush()

    os.environ["MPLBACKEND"] = "Agg"
    from IPython.core.interactiveshell import InteractiveShell

    shell, handles, timeout = InteractiveShell.instance(), [], 60.0
    reply({"ready": True})
    for line in protocol_in:
        message = json.loads(line)
        if message["op"] == "run":
            timeout = float(message["timeout"])
            run_cells(shell, message["cells"], timeout, reply)
            try:
                trap_own_work(message.get("own_work", []))
            except Exception:  # a name that moved: the checks still run, without this guard
                pass
        elif message["op"] == "call":
            reply(answer_call(shell, message, handles, timeout))


if __name__ == "__main__":
    sys.exit(main())
