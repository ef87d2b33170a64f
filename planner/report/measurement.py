"""Rendering measured runs (record dicts, as stored in the ledger) for people and scripts.

Works from ``RunRecord.to_dict()`` dicts so ``planner measure`` and ``planner runs show`` print
the same thing, including rows migrated from older ledgers (missing fields print "n/a").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from planner.report.fmt import carbon, energy
from planner.report.tabular import flatten, render_rows
from planner.units import fmt_count
from planner.report.tabular import dumps_json

COMPONENTS = ("cpu", "gpu", "ram")


fmt_energy = energy  # one formatter for every report (planner/report/fmt.py)


def fmt_carbon(kg: float | None) -> str:
    """'1.2 t CO2e', '3.4 kg CO2e', '0.239 g CO2e'; 'n/a' for None."""
    return "n/a" if kg is None else f"{carbon(kg)} CO2e"


def fmt_usd(usd: float | None) -> str:
    if usd is None:
        return "n/a"
    return f"${usd:,.2f}" if abs(usd) >= 0.01 or usd == 0 else f"${usd:.2g}"


def _num(x: float | None) -> str:
    """'72,020' for large values, 3 significant digits below 1000."""
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def fmt_w(w: float | None) -> str:
    return "n/a" if w is None else f"{w:.3g} W"


def _status(rec: dict[str, Any]) -> str:
    state = "complete" if rec.get("complete") else "INCOMPLETE"
    parts = [state, f"exit {rec.get('exit_code')}" if rec.get("exit_code") is not None else
             "python block"]
    if rec.get("signal"):
        parts.append(f"killed by {rec['signal']}")
    if rec.get("interrupted_by"):
        parts.append(f"interrupted ({rec['interrupted_by']} forwarded)")
    if rec.get("error"):
        parts.append(f"error: {rec['error']}")
    duration = rec.get("duration_s")
    if duration is not None:
        parts.append(f"{duration:.3g} s")
    return ", ".join(parts)


def _components(energy: dict[str, Any]) -> str:
    """Per-component table, then one line per component saying how it was obtained."""
    methods, avg, peak = (energy.get(k) or {} for k in ("methods", "avg_power_w",
                                                         "peak_power_w"))
    rows, notes = [], []
    for c in COMPONENTS:
        m = methods.get(c) or {}
        rows.append({"component": c, "energy": fmt_energy(energy.get(f"{c}_kwh")),
                     "avg power": fmt_w(avg.get(c)), "peak power": fmt_w(peak.get(c)),
                     "method": m.get("kind", "unknown")})
        notes.append(f"{c}: {m.get('kind', 'unknown')}: {m.get('detail', 'not recorded')}")
    rows.append({"component": "total", "energy": fmt_energy(energy.get("it_kwh")),
                 "avg power": fmt_w(avg.get("total")), "peak power": "",
                 "method": "at the meters, before PUE"})
    cols = ["component", "energy", "avg power", "peak power", "method"]
    return render_rows(rows, cols, "table") + "\n" + "\n".join(notes) + "\n"


def _job(j: dict[str, Any]) -> str:
    """'42 (slurm): node 0, rank 1 (local 1) of 6; not metered here: ...'."""
    rank = "" if j.get("rank") is None else f", rank {j['rank']}"
    if j.get("local_rank") is not None:
        rank += f" (local {j['local_rank']})"
    if j.get("world_size"):
        rank += f" of {j['world_size']}"
    role = ("meters this node" if j.get("meters_node") else
            "rank record: local rank 0 meters this node")
    return (f"{j.get('id')} ({j.get('scheduler')}): node {j.get('node')}{rank}; {role} "
            f"(from {j.get('source')}); totals: planner runs summary --job {j.get('id')}")


def _lines(rec: dict[str, Any]) -> list[tuple[str, str]]:
    e, c, k = rec.get("energy") or {}, rec.get("carbon") or {}, rec.get("cost") or {}
    label = f' "{rec["label"]}"' if rec.get("label") else ""
    lines = [("run", f"{rec.get('id')}{label}: {_status(rec)}"),
             ("command", rec.get("command_line") or "n/a"),
             ("started", f"{rec.get('started_at')} on {rec.get('host', 'n/a')}")]
    if rec.get("job"):
        lines.append(("job", _job(rec["job"])))
    if e.get("pue") is not None:
        energy = (f"{fmt_energy(e.get('kwh'))} = {fmt_energy(e.get('it_kwh'))} at the meters "
                  f"x PUE {e['pue']:.2f}")
        lines += [("energy", energy), ("pue", f"{e['pue']:.2f}: {c.get('pue_source', 'n/a')}")]
    if c.get("grid_g_co2e_per_kwh") is not None:
        carbon = (f"{fmt_carbon(c.get('kg_co2e'))} = {fmt_energy(e.get('kwh'))} x "
                  f"{c['grid_g_co2e_per_kwh']:.4g} g CO2e/kWh ({c.get('basis')})")
        lines += [("carbon", carbon),
                  ("grid", f"{c.get('region')}, {c.get('location')}: {c.get('grid_source')}")]
        if c.get("codecarbon_kg_co2e") is not None:
            own = fmt_carbon(c["codecarbon_kg_co2e"])
            lines.append(("", f"codecarbon's own figure: {own} (its grid data, PUE 1.0)"))
    else:
        lines.append(("carbon", fmt_carbon(c.get("kg_co2e"))))
    lines.append(("cost", _cost(k)))
    lines.append(("meter", e.get("meter", "n/a")))
    return lines


def _cost(k: dict[str, Any]) -> str:
    if k.get("total_usd") is None:
        return f"n/a: {k.get('note') or 'not recorded'}"
    return (f"{fmt_usd(k['total_usd'])} = {k['devices']} device(s) x "
            f"{k['device_hours'] / k['devices']:.3g} h x {fmt_usd(k['usd_per_device_hour'])}/h "
            f"({k.get('price_source')})")


def _extrapolation(x: dict[str, Any]) -> str:
    p, est = x["projected"], x.get("planner_estimate")
    head = (f"extrapolation  {fmt_count(x['measured'])} {x['unit']} measured -> "
            f"{fmt_count(x['target'])} {x['unit']} (x{_num(x['scale'])})\n"
            f"assumption     {x['assumption']}\n")
    rows = [("wall clock (days)", "wall_clock_days", _num), ("device-hours", "device_hours", _num),
            ("energy, facility", "energy_kwh", fmt_energy), ("carbon", "kg_co2e", fmt_carbon),
            ("cost", "cost_usd", fmt_usd)]
    out = []
    for name, key, f in rows:
        row = {"full run": name, "projected from this run": f(p[key])}
        if est:
            row["planner estimate"] = f(est.get(key)) if est.get("available") else ""
        out.append(row)
    cols = ["full run", "projected from this run"] + (["planner estimate"] if est else [])
    tail = ""
    if est and not est.get("available"):
        tail = f"planner estimate: n/a: {est.get('reason')}\n"
    elif est:
        tail = (f"planner estimate: {est['model']} on {est['devices']} x {est['hardware']}, "
                f"expected case, MFU {est['mfu']:.1%}\n")
    return head + render_rows(out, cols, "table") + tail


def render_record(rec: dict[str, Any], fmt: str, ledger: str | None = None) -> str:
    """One run as table, json, markdown (field | value) or csv (one flattened row)."""
    if fmt == "json":
        return dumps_json(rec) + "\n"
    flat = flatten(rec)
    if fmt == "csv":
        return render_rows([flat], list(flat), "csv")
    if fmt == "markdown":
        rows = [{"field": k, "value": v} for k, v in flat.items()]
        return render_rows(rows, ["field", "value"], "markdown")
    lines = _lines(rec) + ([("ledger", ledger)] if ledger else [])
    text = "\n".join(f"{k:<10} {v}".rstrip() for k, v in lines) + "\n\n"
    text += _components(rec.get("energy") or {})
    if rec.get("extrapolation"):
        text += "\n" + _extrapolation(rec["extrapolation"])
    return text


def run_row(rec: dict[str, Any]) -> dict[str, Any]:
    """The one-line summary of a run used by ``planner runs list``."""
    e = rec.get("energy") or {}
    methods = e.get("methods") or {}
    return {"id": rec.get("id"), "started_at": rec.get("started_at"), "label": rec.get("label"),
            "exit_code": rec.get("exit_code"), "complete": rec.get("complete"),
            "duration_s": rec.get("duration_s"), "energy_kwh": e.get("kwh"),
            "kg_co2e": (rec.get("carbon") or {}).get("kg_co2e"),
            "cost_usd": (rec.get("cost") or {}).get("total_usd"),
            "methods": " ".join(f"{c}:{(methods.get(c) or {}).get('kind', 'unknown')}"
                                for c in COMPONENTS),
            "command": rec.get("command_line")}


LIST_COLUMNS = ["id", "started_at", "label", "exit_code", "complete", "duration_s",
                "energy_kwh", "kg_co2e", "cost_usd", "methods", "command"]
SUMMARY_COLUMNS = ["label", "runs", "complete", "duration_s", "energy_kwh", "kg_co2e",
                   "cost_usd", "runs_without_cost"]


def render_runs(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """``planner runs list``: one row per run."""
    rows = [run_row(r) for r in records]
    if fmt == "table":
        for r in rows:
            cmd = r["command"] or ""
            r["command"] = cmd if len(cmd) <= 40 else cmd[:37] + "..."
    return render_rows(rows, LIST_COLUMNS, fmt)


def render_export(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """``planner runs export``: full records (json) or flattened rows (csv, markdown, table)."""
    if fmt == "json":
        return dumps_json(list(records)) + "\n"
    flat = [flatten(r) for r in records]
    columns = list(dict.fromkeys(k for f in flat for k in f))
    return render_rows(flat, columns, fmt)


def render_summary(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """``planner runs summary``: totals by label."""
    if fmt != "json":
        rows = [{**r, "label": r["label"] if r["label"] is not None else "(no label)"}
                for r in rows]
    return render_rows(rows, SUMMARY_COLUMNS, fmt)
