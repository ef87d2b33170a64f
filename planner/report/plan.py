"""Rendering sizing answers (`planner plan`) and hardware comparisons (`planner compare`)."""

from __future__ import annotations


from planner.report.estimate import render_estimate
from planner.report.fmt import carbon as _carbon
from planner.report.fmt import energy as _energy
from planner.report.fmt import money as _money
from planner.report.tabular import render_rows
from planner.units import fmt_count
from planner.report.tabular import dumps_json

# The candidate rows' own names (sizing.ROW_DEGREES and the outcome), as CSV and JSON print
# them; the table and markdown head the degree columns with short labels to stay narrow.
CANDIDATE_COLUMNS = ["devices", "dp", "tp", "pp", "cp", "ep", "zero_stage", "micro_batch_size",
                     "virtual_stages", "recompute", "global_batch_size", "dp_shard",
                     "reshard_after_forward", "memory_gib", "step_s", "mfu", "days",
                     "device_hours", "cost_usd", "kg_co2e"]
SHORT_LABELS = {"zero_stage": "zero", "micro_batch_size": "mb", "virtual_stages": "v",
                "global_batch_size": "batch", "dp_shard": "shard",
                "reshard_after_forward": "reshard"}


def _candidate_rows(candidates: list[dict], fmt: str) -> tuple[list[dict], list[str]]:
    """The rows and their columns as ``fmt`` prints them."""
    if fmt not in ("table", "markdown"):
        return candidates, CANDIDATE_COLUMNS
    out = []
    for c in candidates:
        r = {SHORT_LABELS.get(k, k): v for k, v in c.items()}
        r.update(mfu=f"{c['mfu']:.1%}", days=f"{c['days']:,.1f}",
                 device_hours=fmt_count(c["device_hours"]), cost_usd=_money(c["cost_usd"]),
                 kg_co2e=_carbon(c["kg_co2e"]), reshard=_reshard(c))
        out.append(r)
    return out, [SHORT_LABELS.get(k, k) for k in CANDIDATE_COLUMNS]


def _reshard(row: dict) -> str:
    """'on' / 'off' for ZeRO-3, whose weights are gathered and resharded; '-' for ZeRO 0-2,
    whose weights stay whole on every rank, so reshard-after-forward means nothing there."""
    if row["zero_stage"] != 3:
        return "-"
    return "on" if row["reshard_after_forward"] else "off"


def render_plan(result, fmt: str) -> str:
    """A sizing answer: the best plan in full, then the top layouts and the rejections."""
    if fmt == "json":
        return dumps_json(result.to_dict()) + "\n"
    rows, columns = _candidate_rows(result.candidates, fmt)
    rejected = [{"reason": k, "layouts": v} for k, v in result.rejected.items() if v]
    if fmt == "csv":
        return render_rows(rows, columns, "csv")
    heading = "## " if fmt == "markdown" else ""
    parts = [f"{heading}Question: {result.question} (searched {result.searched:,} layouts)\n",
             *_constraint_line(result),
             render_estimate(result.best, fmt),
             f"\n{heading}Top layouts\n",
             render_rows(rows, columns, fmt),
             f"\n{heading}Rejected\n",
             render_rows(rejected, ["reason", "layouts"], fmt)]
    return "\n".join(p.rstrip("\n") for p in parts) + "\n"


_CASES = {"low": "best", "expected": "expected", "high": "worst"}


def describe_constraint(con: dict, confidence: str) -> str:
    """'Deadline 60 days: met in the best (46.2 days) and expected (52.7 days) cases, not in
    the worst (73.5 days). Planned for the expected case (...).'"""
    days = con["kind"] == "deadline"
    unit = (lambda v: f"{v:,.1f} days") if days else _money
    label = f"Deadline {con['limit']:g} days" if days else f"Budget {_money(con['limit'])}"

    def cases(met: bool) -> str:
        names = [f"{_CASES[k]} ({unit(v)})" for k, v in con["values"].items()
                 if con["met"][k] == met]
        joined = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        return joined + (" cases" if len(names) > 1 else " case")

    text = f"{label}: met in the {cases(True)}" if any(con["met"].values()) else \
        f"{label}: met in no case"
    if not all(con["met"].values()):
        text += f", not in the {cases(False)}"
    if confidence == "high":
        return text + ". Planned for the worst case (--confidence high)."
    return text + (". Planned for the expected case; --confidence high plans for the worst."
                   if not con["met"]["high"] else ". Planned for the expected case.")


def _constraint_line(result) -> list[str]:
    if getattr(result, "constraint", None) is None:
        return []
    return [describe_constraint(result.constraint, result.confidence) + "\n"]


def _days(v: float) -> str:
    """Days to one decimal; under a day (a fine-tune) to two significant figures."""
    return f"{v:,.1f}" if v >= 0.95 else f"{v:.2g}"


def _mfu_span(e) -> str:
    """'52.7% (59.6%-39.4%)': expected, then best to worst case (as the other ranges)."""
    if e.ranges is None:
        return f"{e.throughput.mfu:.1%}"
    best, exp, worst = e.ranges.mfu
    return f"{exp:.1%} ({best:.1%}-{worst:.1%})"


def _memory_span(e) -> str:
    """'46.6 GiB (44.3-49.0)': expected, then low to high (the +-5% band)."""
    if e.ranges is None:
        return f"{e.memory_per_device.total_bytes / 2**30:.1f} GiB"
    low, exp, high = (v / 2**30 for v in e.ranges.memory_bytes)
    return f"{exp:.1f} GiB ({low:.1f}-{high:.1f})"


def compare_rows(estimates: list) -> list[dict]:
    """One row per hardware: the best plan with its low-high ranges."""
    rows = []
    for e in estimates:
        r, lay = e.range, e.layout
        rows.append({
            "hardware": e.hardware.name, "devices": lay.devices,
            "layout": f"dp{lay.dp} tp{lay.tp} pp{lay.pp} cp{lay.cp} ep{lay.ep} z{lay.zero_stage}",
            "mfu": _mfu_span(e),
            "memory": _memory_span(e),
            "days": f"{_days(r.expected.wall_clock_days)} ({_days(r.low.wall_clock_days)}-"
                    f"{_days(r.high.wall_clock_days)})",
            "device_hours": fmt_count(r.expected.device_hours),
            "cost": f"{_money(r.expected.cost_usd)} ({_money(r.low.cost_usd)}-"
                    f"{_money(r.high.cost_usd)})",
            "usd_per_hour": e.cost.usd_per_device_hour,
            "validated": e.hardware.validation,
            "energy": _energy(r.expected.energy_kwh),
            "carbon": f"{_carbon(r.expected.kg_co2e)} ({_carbon(r.low.kg_co2e)}-"
                      f"{_carbon(r.high.kg_co2e)})",
        })
    return rows


def render_compare(estimates: list, fmt: str, question: str) -> str:
    """The best plan per hardware, side by side."""
    if fmt == "json":
        return dumps_json([e.to_dict() for e in estimates]) + "\n"
    if fmt == "csv":
        from planner.report.tabular import flatten
        flat = [flatten({k: v for k, v in e.to_dict().items() if k != "assumptions"})
                for e in estimates]
        return render_rows(flat, list(flat[0]) if flat else [], "csv")
    cols = ["hardware", "validated", "devices", "layout", "mfu", "memory", "days",
            "device_hours", "cost", "usd_per_hour", "energy", "carbon"]
    head = f"{'## ' if fmt == 'markdown' else ''}{question}\n\n"
    m = estimates[0].model
    if m.finetune is not None:  # one job on every row: say what trains
        head += (f"Fine-tune {m.finetune}: {fmt_count(m.params_trainable)} trainable, "
                 f"{fmt_count(m.params_frozen)} frozen\n\n")
    note = ("\nRanges: best case (high efficiency, high goodput) to worst case. Prices are each "
            "profile's default tier; see `planner hardware show NAME`. validated: measured (this "
            "project ran it, docs/validation/), published runs (its efficiency checked against "
            "published training runs), scaled (datasheet figures and an efficiency scaled "
            f"from other hardware). Energy and carbon: {estimates[0].energy.scope} scope.\n")
    return head + render_rows(compare_rows(estimates), cols, fmt) + note
