"""The machinery behind every ``camlab.exercises.check_*``: run the student's function on worked examples, print a
clear pass, fail or "not done yet" with a hint (in words, never the solution), and return the result.

A notebook's check cell calls a ``check_*`` twice: with its visible worked examples (shipped here) and, between
nbgrader's ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``, with hidden ones. These are either drawn at
grading time, ``hidden_seed=HIDDEN_SEED`` (a seed the grader derives from the instructor's secret; the instructor's
notebook has ``HIDDEN_SEED = 0``): each chapter's module lists the kinds of case its chapter warns about (ties,
constant maps, a layer given by name, ...) and :func:`cases_for` draws every kind with values from that seed, the
expected answers computed by a reference in the module; or literal lists ``hidden=[...]`` in the instructor's
notebook. Students' versions (``camlab course student``) drop the hidden region and grading (``camlab course
grade``) puts it back; a failure names the case's number and the hint, never its values."""
from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

#: what a student notebook's solution cells raise until the exercise is done (``camlab course student`` writes it)
NOT_DONE = "not done yet"


class ExerciseFailed(AssertionError):
    """Raised by a failing or unfinished check when ``CAMLAB_STRICT_CHECKS=1`` (the test suite and
    ``camlab course grade`` set it, so that a wrong answer fails the check cell)."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.name}"


def strict() -> bool:
    """True when ``CAMLAB_STRICT_CHECKS`` is set (not empty, not 0): a failing check raises :class:`ExerciseFailed`."""
    return os.environ.get("CAMLAB_STRICT_CHECKS", "") not in ("", "0")


def close(actual, expected, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    """``actual`` matches ``expected`` in shape and value (tensors, arrays or numbers)."""
    try:
        actual_t = torch.as_tensor(actual, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    return actual_t.shape == expected_t.shape and bool(torch.allclose(actual_t, expected_t, atol=atol, rtol=rtol))


def run_check(name: str, student: Callable, cases: Iterable[tuple[tuple, object]], hint: str,
              compare: Callable[[object, object], bool] = close) -> CheckResult:
    """Call ``student(*args)`` for every ``(args, expected)`` case; all must match for a pass. An unfinished
    exercise (``NotImplementedError``) is reported as "not done yet"; any other exception as a failure."""
    cases = list(cases)
    for number, (args, expected) in enumerate(cases, start=1):
        try:
            actual = student(*args)
        except NotImplementedError:
            return _report(CheckResult(name, False, f"{NOT_DONE}: replace `raise NotImplementedError(...)` in the "
                                                    "exercise's cell with your code, run it, then run this check"))
        except Exception as error:  # the student's code may fail in any way: report it, don't crash
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            return _report(CheckResult(name, False, f"case {number} of {len(cases)} raised {last}. Hint: {hint}"))
        if not compare(actual, expected):
            shape = getattr(actual, "shape", None)   # not for hidden cases: a result's shape could carry their inputs
            detail = f" (your result has shape {tuple(shape)})" if shape is not None and "(hidden" not in name else ""
            return _report(CheckResult(name, False, f"case {number} of {len(cases)} gives a wrong answer{detail}. "
                                                    f"Hint: {hint}"))
    return _report(CheckResult(name, True, f"all {len(cases)} cases pass"))


#: how many cases of each kind a hidden seed draws (:func:`cases_for`)
HIDDEN_ROUNDS = 2


def cases_for(name: str, visible: list, hidden: list | None, hidden_seed: int | None = None,
              kinds: Sequence[Callable[[torch.Generator], tuple[tuple, object]]] = (),
              rounds: int = HIDDEN_ROUNDS) -> tuple[str, list]:
    """The check's label and cases: the visible worked examples; the notebook's literal ``hidden`` ones; or, with
    ``hidden_seed``, :func:`cases_from_kinds` of ``kinds`` (each ``kind(generator) -> (args, expected)``)."""
    if hidden_seed is not None:
        if not kinds:
            raise ValueError(f"{name}: this check has no generated hidden cases (pass hidden=[...])")
        return f"{name} (hidden cases)", cases_from_kinds(hidden_seed, kinds, rounds)
    return (name, visible) if hidden is None else (f"{name} (hidden cases)", list(hidden))


def cases_from_kinds(seed: int, kinds: Sequence[Callable[[torch.Generator], tuple[tuple, object]]],
                     rounds: int = HIDDEN_ROUNDS) -> list:
    """``rounds`` cases of every kind, drawn with one generator seeded by ``seed`` (``HIDDEN_SEED``): each edge case
    the chapter warns about is in every hidden set, its values change with the seed, and the global random state is
    untouched."""
    generator = torch.Generator().manual_seed(int(seed))
    return [kind(generator) for _ in range(rounds) for kind in kinds]


def integer(generator: torch.Generator, low: int, high: int) -> int:
    """A random integer in ``[low, high]`` (both included) from ``generator``."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def small_integers(generator: torch.Generator, shape: tuple, low: int, high: int) -> torch.Tensor:
    """A float tensor of random integers in ``[low, high]``: sums and products stay exact, and equal values (ties,
    flat regions) are common."""
    return torch.randint(low, high + 1, tuple(shape), generator=generator).float()


def cases_from_seed(seed: int, make: Callable[[torch.Generator], tuple[tuple, object]], count: int) -> list:
    """``count`` cases ``(args, expected)`` from ``make(generator)``, with a generator seeded by ``seed`` (a student's
    ``STUDENT_SEED`` or the grader's ``HIDDEN_SEED``): the same seed gives the same cases on every machine, another
    seed other cases; the global random state is untouched."""
    generator = torch.Generator().manual_seed(int(seed))
    return [make(generator) for _ in range(count)]


def _report(result: CheckResult) -> CheckResult:
    mark = "✅ PASS" if result.passed else ("⏳" if result.message.startswith(NOT_DONE) else "❌ FAIL")
    print(f"{mark} {result.name}: {result.message}")
    if not result.passed and strict():
        raise ExerciseFailed(f"{result.name}: {result.message}")
    return result


def with_weights(make, *tensors: torch.Tensor) -> torch.nn.Module:
    """``make()`` (a function building a module, e.g. ``lambda: nn.Linear(3, 2)``), built without touching the global
    random state, in eval mode, with its parameters (in ``parameters()`` order) set to ``tensors`` (reshaped): worked
    examples build tiny nets whose outputs can be derived by hand."""
    with torch.random.fork_rng(devices=[]):
        module = make()
    parameters = list(module.parameters())
    if len(parameters) != len(tensors):
        raise ValueError(f"{type(module).__name__} has {len(parameters)} parameters, {len(tensors)} tensors given")
    with torch.no_grad():
        for parameter, tensor in zip(parameters, tensors):
            parameter.copy_(torch.as_tensor(tensor, dtype=parameter.dtype).reshape(parameter.shape))
    return module.eval()
