"""Rendering a job's summary (``planner runs summary --job``) and its records (``runs show --job``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from planner.report.measurement import _extrapolation as extrapolation_text
from planner.report.measurement import fmt_carbon, fmt_energy, fmt_usd, run_row
from planner.report.tabular import dumps_json, render_rows

NODE_COLUMNS = ["node", "ranks", "records", "metering_records", "attempts", "duration_s",
                "host_kwh", "gpu_kwh", "gpu_devices", "it_kwh", "kwh", "kg_co2e", "cost_usd",
                "complete", "note"]
RECORD_COLUMNS = ["id", "node", "rank", "local_rank", "meters_node", "started_at", "complete",
                  "duration_s", "energy_kwh", "cost_usd", "command"]


def _ranks(ranks: Sequence[int]) -> str:
    """'0-3,6' for (0, 1, 2, 3, 6)."""
    out: list[str] = []
    for r in ranks:
        if out and r == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{r}"
        else:
            out.append(str(r))
    return ",".join(out)


def _footer(s: dict[str, Any]) -> str:
    nodes = f"{len(s['nodes'])} node(s)" + (f" of {s['nodes_expected']} expected"
                                            if s["nodes_expected"] else "")
    ranks = f"{s['ranks_seen']} rank(s)" + (f" of {s['world_size']}" if s["world_size"] else "")
    lines = [f"job {s['job']}: {nodes}, {ranks}, {s['records']} record(s); "
             f"{'complete' if s['complete'] else 'INCOMPLETE'}",
             f"total: {fmt_energy(s['kwh'])} (facility; {fmt_energy(s['it_kwh'])} at the meters),"
             f" {fmt_carbon(s['kg_co2e'])}, {fmt_usd(s['cost_usd'])}",
             f"counted: {s['method']}"]
    if s["missing_nodes"]:
        lines.append("MISSING node record(s): " + ", ".join(s["missing_nodes"])
                     + " (their energy is not in the total)")
    if s["missing_ranks"]:
        lines.append("missing rank(s): " + _ranks(s["missing_ranks"]))
    lines += [f"note: {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


def render_job_summary(summary: dict[str, Any], fmt: str) -> str:
    """Per-node rows and the job's totals; json: the whole ``JobSummary``."""
    if fmt == "json":
        return dumps_json(summary) + "\n"
    rows = [{**n, "ranks": _ranks(n["ranks"])} for n in summary["nodes"]]
    table = render_rows(rows, NODE_COLUMNS, fmt)
    if fmt == "csv":
        return table
    x = summary.get("extrapolation")
    return table + "\n" + _footer(summary) + ("\n" + extrapolation_text(x) if x else "")


def render_job_records(records: Sequence[dict[str, Any]], summary: dict[str, Any],
                       fmt: str) -> str:
    """Each record of the job (node, rank, whether it metered) and the job's totals."""
    rows = []
    for r in records:
        job = r.get("job") or {}
        rows.append({**run_row(r), "node": job.get("node"), "rank": job.get("rank"),
                     "local_rank": job.get("local_rank"), "meters_node": job.get("meters_node")})
    if fmt == "json":
        return dumps_json({"records": list(records), "summary": summary}) + "\n"
    table = render_rows(rows, RECORD_COLUMNS, fmt)
    if fmt == "csv":
        return table
    return table + "\n" + _footer(summary)
