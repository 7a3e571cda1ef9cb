"""The results table and its forms: aligned text, GitHub Markdown, CSV and JSON, every mean with its 95% interval.

Each row holds, per metric key of :data:`COLUMNS`, the mean (``row[key]``), its :class:`camlab.stats.Estimate`
(``row["estimates"][key]``: value, low, high, n) and the per-case values (``row["values"][key]``), so that
:meth:`Table.difference` compares two methods on the same cases and :meth:`Table.tiers` groups the methods that
the data cannot tell apart.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from camlab import stats

#: (key, column header); arrows say which direction is better
COLUMNS = (
    ("loc_error", "loc. error top-1 ↓"),
    ("pointing", "pointing game ↑"),
    ("mass_inside", "mass inside ↑"),
    ("average_drop", "avg. drop ↓"),
    ("increase", "increase ↑"),
    ("deletion", "deletion AUC ↓"),
    ("insertion", "insertion AUC ↑"),
    ("sanity_top", "sanity ρ top ↓"),
    ("sanity_all", "sanity ρ all ↓"),
    ("seconds", "s / map"),
)
#: metric keys where higher is better (the others: lower is better; "seconds" is not ranked)
HIGHER_IS_BETTER = frozenset({"pointing", "mass_inside", "increase", "insertion"})
RANKED = tuple(key for key, _ in COLUMNS if key != "seconds")


@dataclass
class Table:
    """Rows of results: ``{"dataset", "model", "method", <metric keys of COLUMNS>, "estimates", "values",
    "note"}``; missing values are ``None``. ``notes`` explain the settings; ``settings`` holds the arguments of
    :func:`~camlab.evaluate.run`."""

    rows: list[dict]
    notes: list[str]
    settings: dict

    def column(self, key: str, dataset: str | None = None) -> dict[str, float | None]:
        """``{method: value}`` for one metric (and dataset)."""
        return {row["method"]: row.get(key) for row in self.rows if dataset is None or row["dataset"] == dataset}

    def _values(self, dataset: str, method: str, key: str):
        for row in self.rows:
            if row["dataset"] == dataset and row["method"] == method:
                if key not in row.get("values", {}):
                    raise KeyError(f"{method!r} on {dataset!r} has no per-case values of {key!r}")
                return row["values"][key]
        raise KeyError(f"no row for method {method!r} on dataset {dataset!r}")

    def difference(self, dataset: str, a: str, b: str, key: str) -> stats.PairedComparison:
        """``a − b`` on metric ``key`` over the same cases of ``dataset``: mean difference with a paired bootstrap
        interval and the exact sign test (:func:`camlab.stats.paired_comparison`)."""
        return stats.paired_comparison(self._values(dataset, a, key), self._values(dataset, b, key))

    def tiers(self, dataset: str, key: str) -> list[list[str]]:
        """The methods of ``dataset`` measured on ``key``, in tiers, best first: the best remaining mean opens a tier
        and every remaining method whose paired difference to it has a 95% interval containing 0 joins it (exactly
        equal values always do), as :meth:`camlab.scorecard.Scorecard.tiers`."""
        from camlab.scorecard import tiers

        measured = {row["method"]: row["values"][key] for row in self.rows
                    if row["dataset"] == dataset and key in row.get("values", {})}
        return tiers(measured, higher_is_better=key in HIGHER_IS_BETTER)

    def tier_lines(self) -> list[str]:
        """One line per dataset and metric: the tiers, ``a = b`` inside a tier, ``>`` between tiers."""
        lines = []
        for dataset in dict.fromkeys(row["dataset"] for row in self.rows):
            for key, title in COLUMNS:
                if key in RANKED and (tiers := self.tiers(dataset, key)):
                    lines.append(f"{dataset}, {title}: " + " > ".join(" = ".join(tier) for tier in tiers))
        return lines


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cell(row: dict, key: str) -> str:
    """``0.450 [0.436, 0.466]`` where the row has an interval for ``key``, else the bare value."""
    estimate = row.get("estimates", {}).get(key)
    if estimate is None:
        return _number(row.get(key))
    return f"{estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def row_text(row: dict) -> str:
    return "  ".join([row["dataset"], row["method"]] + [f"{key}={_cell(row, key)}" for key, _ in COLUMNS])


def _sizes(table: Table) -> list[str]:
    """The number of cases behind each interval, per dataset and metric (one note per dataset)."""
    lines = []
    for dataset in dict.fromkeys(row["dataset"] for row in table.rows):
        sizes = {}
        for row in table.rows:
            if row["dataset"] == dataset:
                sizes.update({key: e.n for key, e in row.get("estimates", {}).items()})
        if sizes:
            lines.append(f"{dataset}: n = " + ", ".join(f"{n} ({key})" for key, n in sizes.items()))
    return lines


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "method"] + [title for _, title in COLUMNS] + ["note"]
    body = [[row["dataset"], row["model"], row["method"]] + [_cell(row, key) for key, _ in COLUMNS]
            + [row.get("note", "")] for row in table.rows]
    return header, body


def _notes(table: Table) -> list[str]:
    tiers = table.tier_lines()
    heading = ["tiers, best first: each tier holds the best remaining method and every method whose paired "
               "difference to it (same cases) has a 95% bootstrap interval containing 0 ('='); '>' separates "
               "tiers:"] if tiers else []
    return table.notes + _sizes(table) + heading + tiers


def format_table(table: Table) -> str:
    """The table as aligned plain text, with its notes, the number of cases and the tiers."""
    header, body = _grid(table)
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header] + body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines + [""] + [f"* {note}" for note in _notes(table)])


def format_markdown(table: Table) -> str:
    """The table as GitHub Markdown, with its notes as a list."""
    header, body = _grid(table)
    numeric = set(range(3, 3 + len(COLUMNS)))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    return "\n".join(lines + [""] + [f"- {note}" for note in _notes(table)]) + "\n"


def _flat(row: dict) -> dict:
    """One CSV row: each metric's mean, then its interval's ends and n (``KEY_low``, ``KEY_high``, ``KEY_n``)."""
    flat = {"dataset": row["dataset"], "model": row["model"], "method": row["method"], "note": row.get("note", "")}
    for key, _ in COLUMNS:
        estimate = row.get("estimates", {}).get(key)
        flat[key] = row.get(key)
        if estimate is not None:
            flat.update({f"{key}_low": estimate.low, f"{key}_high": estimate.high, f"{key}_n": estimate.n})
    return flat


def csv_fields() -> list[str]:
    fields = ["dataset", "model", "method"]
    for key, _ in COLUMNS:
        fields += [key] + ([f"{key}_low", f"{key}_high", f"{key}_n"] if key != "seconds" else [])
    return fields + ["note"]


def to_csv(table: Table) -> str:
    handle = io.StringIO()
    keys = csv_fields()
    writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        flat = _flat(row)
        writer.writerow({key: ("" if flat.get(key) is None else flat.get(key)) for key in keys})
    return handle.getvalue()


def to_json(table: Table) -> str:
    """The table as JSON: settings, notes, rows (each metric as ``{"value", "low", "high", "n"}``, with the per-case
    values under ``"values"`` so that any paired comparison can be recomputed) and tiers."""
    rows = []
    for row in table.rows:
        entry = {key: row[key] for key in ("dataset", "model", "method", "note")}
        for key, _ in COLUMNS:
            estimate = row.get("estimates", {}).get(key)
            entry[key] = ({"value": estimate.value, "low": estimate.low, "high": estimate.high, "n": estimate.n}
                          if estimate is not None else row.get(key))
        entry["values"] = {key: [float(v) for v in values] for key, values in row.get("values", {}).items()}
        rows.append(entry)
    tiers = {dataset: {key: table.tiers(dataset, key) for key in RANKED if table.tiers(dataset, key)}
             for dataset in dict.fromkeys(row["dataset"] for row in table.rows)}
    return json.dumps({"settings": table.settings, "notes": table.notes, "rows": rows, "tiers": tiers},
                      indent=1, ensure_ascii=False) + "\n"


def save(table: Table, path: str | Path) -> Path:
    """Write the table as CSV (``.csv``, full precision), Markdown (``.md``) or JSON (``.json``); returns the
    path."""
    path = Path(path)
    writers = {".csv": to_csv, ".md": format_markdown, ".markdown": format_markdown, ".json": to_json}
    if path.suffix not in writers:
        raise ValueError(f"save writes .csv, .md or .json files, not {path.suffix or 'a path without suffix'!r}")
    path.write_text(writers[path.suffix](table), encoding="utf-8")
    return path
