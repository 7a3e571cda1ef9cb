"""The results table and its forms: aligned text, GitHub Markdown, CSV."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

#: (key, column header); arrows say which direction is better
COLUMNS = (
    ("loc_error", "loc. error top-1 ↓"),
    ("pointing", "pointing game ↑"),
    ("average_drop", "avg. drop ↓"),
    ("increase", "increase ↑"),
    ("deletion", "deletion AUC ↓"),
    ("insertion", "insertion AUC ↑"),
    ("sanity_top", "sanity ρ top ↓"),
    ("sanity_all", "sanity ρ all ↓"),
    ("seconds", "s / map"),
)


@dataclass
class Table:
    """Rows of results: ``{"dataset", "model", "method", <metric keys of COLUMNS>, "note"}``; missing values are
    ``None``. ``notes`` explain the settings; ``settings`` holds the arguments of :func:`run`."""

    rows: list[dict]
    notes: list[str]
    settings: dict

    def column(self, key: str, dataset: str | None = None) -> dict[str, float | None]:
        """``{method: value}`` for one metric (and dataset)."""
        return {row["method"]: row.get(key) for row in self.rows if dataset is None or row["dataset"] == dataset}


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def row_text(row: dict) -> str:
    return "  ".join([row["dataset"], row["method"]] + [f"{key}={_cell(row.get(key))}" for key, _ in COLUMNS])


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "method"] + [title for _, title in COLUMNS] + ["note"]
    body = [[row["dataset"], row["model"], row["method"]] + [_cell(row.get(key)) for key, _ in COLUMNS]
            + [row.get("note", "")] for row in table.rows]
    return header, body


def format_table(table: Table) -> str:
    """The table as aligned plain text, with its notes."""
    header, body = _grid(table)
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header] + body]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines + [""] + [f"* {note}" for note in table.notes])


def format_markdown(table: Table) -> str:
    """The table as GitHub Markdown, with its notes as a list."""
    header, body = _grid(table)
    numeric = set(range(3, 3 + len(COLUMNS)))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    return "\n".join(lines + [""] + [f"- {note}" for note in table.notes]) + "\n"


def to_csv(table: Table) -> str:
    handle = io.StringIO()
    keys = ["dataset", "model", "method"] + [key for key, _ in COLUMNS] + ["note"]
    writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in keys})
    return handle.getvalue()


def save(table: Table, path: str | Path) -> Path:
    """Write the table as CSV (``.csv``, full precision) or Markdown (``.md``); returns the path."""
    path = Path(path)
    if path.suffix == ".csv":
        path.write_text(to_csv(table), encoding="utf-8")
    elif path.suffix in (".md", ".markdown"):
        path.write_text(format_markdown(table), encoding="utf-8")
    else:
        raise ValueError(f"save writes .csv or .md files, not {path.suffix or 'a path without suffix'!r}")
    return path
