"""Interleaved timing: every case runs once per round, in the same order, so that machine noise hits all alike;
the summary is the median per case and its ratio to a baseline case. Ratios between two cases are taken round by
round (both ran within seconds of each other) and summarised by their median and range."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_samples(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per case and round over ``rounds`` interleaved rounds, after ``warmup`` untimed rounds."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(elapsed)
    return samples


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per case over ``rounds`` interleaved rounds, after ``warmup`` untimed rounds."""
    return medians(interleaved_samples(cases, rounds, warmup))


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def round_ratios(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-round ratios numerator / denominator."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return statistics.median(ratios), min(ratios), max(ratios)


def table(medians: dict[str, float], baseline: str, title: str) -> str:
    """A Markdown table of medians (ms) and ratios to ``baseline``."""
    lines = [f"**{title}**", "", "| case | median (ms) | × baseline |", "|---|---:|---:|"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds * 1e3:.1f} | {seconds / medians[baseline]:.2f} |")
    return "\n".join(lines)
