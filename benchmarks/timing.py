"""Interleaved timing: every case runs once per round, in the same order, so that machine noise hits all alike;
the summary is the median per case and its ratio to a baseline case."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per case over ``rounds`` interleaved rounds, after ``warmup`` untimed rounds."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(medians: dict[str, float], baseline: str, title: str) -> str:
    """A Markdown table of medians (ms) and ratios to ``baseline``."""
    lines = [f"**{title}**", "", "| case | median (ms) | × baseline |", "|---|---:|---:|"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds * 1e3:.1f} | {seconds / medians[baseline]:.2f} |")
    return "\n".join(lines)
