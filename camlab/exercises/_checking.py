"""The machinery behind every ``camlab.exercises.check_*``: run the student's function on hidden cases, print a
clear pass or fail with a hint, and return the result."""
from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch


class ExerciseFailed(AssertionError):
    """Raised by a failing check when ``CAMLAB_STRICT_CHECKS=1`` (the test suite sets it, so that the committed
    solutions are checked in CI)."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.name}"


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
    """Call ``student(*args)`` for every hidden ``(args, expected)`` case; all must match for a pass."""
    cases = list(cases)
    for number, (args, expected) in enumerate(cases, start=1):
        try:
            actual = student(*args)
        except NotImplementedError:
            return _report(CheckResult(name, False, "not implemented yet: replace `raise NotImplementedError`"))
        except Exception as error:  # the student's code may fail in any way: report it, don't crash
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            return _report(CheckResult(name, False, f"case {number} raised {last}. Hint: {hint}"))
        if not compare(actual, expected):
            shape = getattr(actual, "shape", None)
            detail = f" (your result has shape {tuple(shape)})" if shape is not None else ""
            return _report(CheckResult(name, False, f"case {number} of {len(cases)} gives a wrong answer{detail}. "
                                                    f"Hint: {hint}"))
    return _report(CheckResult(name, True, f"all {len(cases)} hidden cases pass"))


def _report(result: CheckResult) -> CheckResult:
    mark = "✅ PASS" if result.passed else "❌ FAIL"
    print(f"{mark} {result.name}: {result.message}")
    if not result.passed and os.environ.get("CAMLAB_STRICT_CHECKS", "") not in ("", "0"):
        raise ExerciseFailed(result.message)
    return result
