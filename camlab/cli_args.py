"""What ``camlab`` and ``python -m camlab.evaluate`` share on the command line: the parser that reports a usage
error on one line (:class:`UsageError`, exit status 2) and the checks of models, methods, devices and counts, made
before any model loads. A module of its own so that ``camlab.cli`` (which runs ``camlab.evaluate``) and
``camlab.evaluate.cli`` (which uses these) import it without importing each other."""
from __future__ import annotations

import argparse
import difflib


class UsageError(Exception):
    """The command line asks for something that does not exist or does not fit together: exit status 2."""

    def __init__(self, message: str, prog: str | None = None):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse's parser, except that a usage error raises :class:`UsageError` (reported on one line, exit 2)
    instead of printing the whole usage text and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)", self.prog)


# --- checking the command line before anything loads -------------------------------------------------------------

def _check_name(what: str, name: str, known, listing: str) -> str:
    if name in known:
        return name
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
    raise UsageError(f"unknown {what} {name!r}{hint}; list them with `{listing}`")


def _check_model(name: str) -> str:
    import camlab

    return _check_name("model", name, camlab.list_models(), "camlab models")


def _check_classifier(name: str) -> str:
    """A model ``camlab explain`` can explain: an image classifier (lab models of another kind are refused)."""
    from camlab.lab.zoo import LAB_MODELS

    spec = LAB_MODELS.get(_check_model(name))
    if spec is not None and spec.recipe.kind != "classifier":
        raise UsageError(f"--model {name} is a {spec.recipe.kind} model, not an image classifier: `camlab explain` "
                         f"explains classifiers; explain it from Python ({spec.description})")
    return name


def parse_methods(values: list[str] | None) -> list[str]:
    """``--method`` values (repeated and/or comma-separated) as registry names, in order, without repeats."""
    import camlab

    names = [part.strip() for value in (values or ["gradcam"]) for part in value.split(",") if part.strip()]
    if not names:
        raise UsageError("--method is empty; name a method such as gradcam (several: --method gradcam,scorecam)")
    methods = []
    for name in names:
        try:
            registered = camlab.get_method(name).name
        except ValueError as error:
            raise UsageError(str(error)) from None
        if registered not in methods:
            methods.append(registered)
    return methods


def parse_device(name: str):
    """``--device`` as a ``torch.device`` that is available on this machine (else a usage error saying why)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {name}: no CUDA GPU is available to this torch "
                             f"(torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: there are {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {name}: Apple's MPS backend is not available here; use --device cpu")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: camlab's command line runs on cpu, cuda, cuda:N or mps")
    return device


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value
