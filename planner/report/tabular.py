"""Generic rendering of rows (lists of dicts) and flattening of nested results."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259: no NaN or Infinity); a non-finite number in a result is a
    one-line PlannerError naming where it is, never ``Infinity`` in the output."""
    try:
        return json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:
        where = _non_finite(data, "")
        if where is None:
            raise
        from planner.errors import PlannerError

        raise PlannerError(f"the result '{where[0] or 'value'}' is {where[1]}, not a finite "
                           "number; an input is too large (or too small) to compute with, so "
                           "there is no JSON to print") from None


def _non_finite(obj: Any, path: str) -> tuple[str, str] | None:
    """(path, 'inf'/'nan') of the first non-finite float in a JSON-like value, else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, repr(obj)
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for p, v in items:
        found = _non_finite(v, p)
        if found:
            return found
    return None


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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will not evaluate: text starting with = + - @ tab or CR gets a
    leading single quote (OWASP's CSV-injection advice); numbers are written as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    import csv  # only for --format csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_safe(str(c)) for c in columns])
    for r in rows:
        w.writerow(["" if r.get(c) is None else csv_safe(r.get(c)) for c in columns])
    return buf.getvalue()


def md_escape(text: Any) -> str:
    """Text for markdown: HTML-significant characters as entities (a name like <script> stays
    text in any markdown-to-HTML tool), and link and code syntax ([ ] `) backslash-escaped."""
    import html  # only for markdown

    out = html.escape(str(text), quote=False)
    return out.replace("[", "\\[").replace("]", "\\]").replace("`", "\\`")


def _markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(md_escape(c).replace("|", "\\|") for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for r in rows:
        cells = [md_escape(_cell(r.get(c))).replace("|", "\\|").replace("\n", " ")
                 for c in columns]
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
        return dumps_json(list(json_rows if json_rows is not None else rows)) + "\n"
    if fmt == "csv":
        return _csv(rows, columns)
    if fmt == "markdown":
        return _markdown(rows, columns)
    return _text(rows, columns)
