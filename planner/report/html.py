"""A scenario report: one self-contained HTML file (and its markdown twin).

Everything is inline: CSS in a <style> block, figures as base64 PNG data URIs, sources as
plain text. No scripts, no external stylesheets, images or fonts: it opens offline.
"""

from __future__ import annotations

import datetime
import html
from typing import Any

from planner.report.plan import compare_rows
from planner.report.scenario import scenario_answer
from planner.report.tabular import md_escape, render_rows

COMPARE_COLS = ["hardware", "validated", "devices", "layout", "mfu", "memory", "days",
                "device_hours", "cost", "usd_per_hour", "energy", "carbon"]
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ccc;
padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.answer{background:#f6f9ff;border-left:4px solid #3b6fd8;padding:.8em 1em}
.small{color:#666;font-size:.85em}img{max-width:100%}details{margin:.4em 0}
"""


def _table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _assumption_rows(plan) -> list[dict]:
    return [{"assumption": a.name, "value": a.value, "unit": a.unit,
             "from": "default" if a.defaulted else "scenario", "source": a.source}
            for a in plan.assumptions]


def _backtest_section(backtest) -> tuple[list[dict], str]:
    if backtest is None:
        return [], "The backtest was not available in this installation."
    from planner.report.backtest import table_rows

    rows = table_rows(backtest)
    return rows, (f"Median absolute error of predicted device-hours: "
                  f"{backtest.median_abs_error_pct:.0f}%, worst "
                  f"{backtest.max_abs_error_pct:.0f}%, over the {backtest.num_summary_runs} "
                  "published runs counted (rows marked 'not counted' are shown, not scored). "
                  "Each run is predicted from its model, tokens, hardware and device count "
                  "alone.")


def _validation_rows(checks) -> list[dict]:
    return [{"run": c.name, "layout": c.layout, "reported": f"{c.reported:g} {c.unit}",
             "predicted": f"{c.predicted:.1f} {c.unit}", "error": f"{c.error_pct:+.1f}%"}
            for c in checks]


def sections(result, figures: dict[str, str], backtest,
             checks=()) -> list[tuple[str, str, Any]]:
    """(title, kind, content) for every part of the report, shared by HTML and markdown."""
    bt_rows, bt_note = _backtest_section(backtest)
    best = result.plans[0]
    return [*_main_sections(result, figures), *_serving_section(result),
            ("How far to trust this: backtest against published runs", "table+note",
             (bt_rows, list(bt_rows[0]) if bt_rows else [], bt_note)),
            ("How far to trust this: throughput model against published and measured runs",
             "table", (_validation_rows(checks), ["run", "layout", "reported", "predicted",
                                                  "error"])),
            (f"Assumptions of the {best.hardware.name} plan (every number and its source)",
             "table", (_assumption_rows(best), ["assumption", "value", "unit", "from",
                                                "source"])),
            ("Assumptions of the other plans", "details",
             [(p.hardware.name, _assumption_rows(p)) for p in result.plans[1:]])]


def _serving_section(result) -> list[tuple[str, str, Any]]:
    """The scenario's serving block, when it has one (`planner serve` on each candidate)."""
    served = result.extra.get("serving")
    if served is None:
        return []
    from planner.report.serve import COMPARE_COLUMNS, compare_rows as serve_rows

    return [(f"Serving: {served.question}", "table",
             (serve_rows(served, "table"), COMPARE_COLUMNS))]


def _main_sections(result, figures: dict[str, str]) -> list[tuple[str, str, Any]]:
    sc = result.scenario
    return [
        ("The question", "text", sc.question + (f" {sc.description}" if sc.description else "")),
        ("The answer", "answer", scenario_answer(result)),
        ("Comparison", "table", (compare_rows(result.plans), COMPARE_COLS)),
        ("Cost against time", "figure", (figures["compare"], "Each option's expected cost and "
         "time, with bars from the best to the worst case. Options on the Pareto front (black "
         "edge, dashed line) are not beaten on both time and cost by another option.")),
        ("Memory per device", "figure", (figures["memory"], "What each device holds on the "
         "most loaded pipeline stage, against its capacity.")),
        ("Cost, energy and carbon", "figure", (figures["breakdown"], "Cost with its range; "
         "energy split into IT load and facility overhead (PUE); operational carbon from the "
         "grid and embodied carbon amortised over the devices' lifetime, where known.")),
    ]


def render_html(result, figures: dict[str, str], backtest=None, checks=()) -> str:
    """The report as one HTML document."""
    sc = result.scenario
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(sc.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(sc.title)}</h1>",
             f"<p class='small'>planner scenario <b>{html.escape(sc.name)}</b>, "
             f"generated {datetime.date.today().isoformat()}</p>"]
    for title, kind, content in sections(result, figures, backtest, checks):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if kind == "text":
            parts.append(f"<p>{html.escape(content)}</p>")
        elif kind == "answer":
            parts.append(f"<p class='answer'>{html.escape(content)}</p>")
        elif kind == "figure":
            uri, caption = content
            parts.append(f"<img alt='{html.escape(title)}' src='{uri}'>"
                         f"<p class='small'>{html.escape(caption)}</p>")
        elif kind == "table":
            parts.append(_table(*content))
        elif kind == "table+note":
            rows, cols, note = content
            parts.append((_table(rows, cols) if rows else "") + f"<p>{html.escape(note)}</p>")
        elif kind == "details":
            for name, rows in content:
                parts.append(f"<details><summary>{html.escape(name)}</summary>"
                             f"{_table(rows, ['assumption', 'value', 'unit', 'from', 'source'])}"
                             "</details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md_line(text: str) -> str:
    """Escaped text on one line (a newline in a title would end the heading)."""
    return " ".join(md_escape(text).split())


def render_markdown(result, figures: dict[str, str], backtest=None, checks=()) -> str:
    """The same report as markdown (figures embedded as data URIs)."""
    sc = result.scenario
    # Every piece of text is escaped (md_escape; tables escape their own cells): a title like
    # "<script>..." is shown as text by any tool that turns this markdown into HTML.
    out = [f"# {_md_line(sc.title)}", "", f"planner scenario `{sc.name}`, generated "
           f"{datetime.date.today().isoformat()}", ""]
    for title, kind, content in sections(result, figures, backtest, checks):
        out += [f"## {_md_line(title)}", ""]
        if kind in ("text", "answer"):
            out.append(("> " if kind == "answer" else "") + _md_line(content))
        elif kind == "figure":
            out += [f"![{md_escape(title)}]({content[0]})", "", f"*{_md_line(content[1])}*"]
        elif kind == "table":
            out.append(render_rows(content[0], content[1], "markdown"))
        elif kind == "table+note":
            rows, cols, note = content
            out += ([render_rows(rows, cols, "markdown")] if rows else []) + [_md_line(note)]
        elif kind == "details":
            for name, rows in content:
                out += [f"### {_md_line(name)}", "", render_rows(
                    rows, ["assumption", "value", "unit", "from", "source"], "markdown")]
        out.append("")
    return "\n".join(out)
