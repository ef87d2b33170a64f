"""Generic rendering of rows (lists of dicts) and flattening of nested results."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists of named dicts use the name as key."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, tuple):
        out.update(flatten(list(obj), prefix))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) and "name" in x for x in obj):
        for x in obj:
            out[f"{prefix}{x['name']}"] = x.get("value")
    elif isinstance(obj, list):
        out[prefix[:-1]] = "; ".join(str(x) for x in obj)
    else:
        out[prefix[:-1]] = obj
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    return buf.getvalue()


def _markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [_cell(r.get(c)).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    table = [list(columns)] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def render_rows(rows: Sequence[dict], columns: Sequence[str], fmt: str,
                json_rows: Sequence[Any] | None = None) -> str:
    """Render rows in a format; json prints ``json_rows`` (default: the rows themselves)."""
    if fmt == "json":
        return json.dumps(list(json_rows if json_rows is not None else rows), indent=2) + "\n"
    if fmt == "csv":
        return _csv(rows, columns)
    if fmt == "markdown":
        return _markdown(rows, columns)
    return _text(rows, columns)
