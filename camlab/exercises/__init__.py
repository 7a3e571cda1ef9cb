"""Self-checking exercises: ``camlab.exercises.check_<name>(your_function)`` runs your function on worked examples and
prints PASS or FAIL with a hint. One module per chapter (``ch01.py`` ...); every ``check_*`` is re-exported here."""
from __future__ import annotations

import importlib
import pkgutil

from camlab.exercises._checking import (NOT_DONE, CheckResult, ExerciseFailed, cases_from_seed, close, run_check,
                                        with_weights)

__all__ = ["NOT_DONE", "CheckResult", "ExerciseFailed", "cases_from_seed", "close", "run_check", "with_weights"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("ch"):
        _chapter = importlib.import_module(f"{__name__}.{_module.name}")
        for _name in dir(_chapter):
            if _name.startswith("check_"):
                globals()[_name] = getattr(_chapter, _name)
                __all__.append(_name)
