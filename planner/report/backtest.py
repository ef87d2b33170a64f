"""Rendering the backtest: per-run rows, the energy/carbon/cost details and the summary."""

from __future__ import annotations

from planner.checks.backtest import BacktestResult, BacktestRow
from planner.report.tabular import dumps_json, render_rows
from planner.units import fmt_count


def table_rows(result: BacktestResult) -> list[dict[str, str]]:
    """Device-hours per run as display strings (for tables and reports)."""
    return [_display_row(r) for r in result.rows]

def detail_rows(result: BacktestResult) -> list[dict[str, str]]:
    """Energy, carbon (predicted and arithmetic) and cost rows, where a run reports them."""
    return [d for r in result.rows for d in _detail_rows(r)]

def summary(result: BacktestResult) -> str:
    """One sentence: median and worst absolute error, and over which runs."""
    if result.median_abs_error_pct is None:
        return "No run in the summary."
    left_out = [r.id for r in result.rows if not r.in_summary]
    runs = f"{result.num_summary_runs} run" + ("s" if result.num_summary_runs != 1 else "")
    text = (f"Device-hours over {runs}: median absolute error "
            f"{result.median_abs_error_pct:.0f}%, worst {result.max_abs_error_pct:.0f}% "
            f"({result.worst_run}); median signed error {result.median_error_pct:+.0f}%.")
    if result.coverage is not None:
        inside = sum(r.reported_within_range for r in result.rows if r.in_summary)
        text += (f" Coverage: {inside} of {result.num_summary_runs} reported inside their "
                 f"low-high range ({result.coverage:.0%}).")
    if result.energy_median_abs_error_pct is not None:
        text += (f" Energy in matching scopes: median {result.energy_median_abs_error_pct:.0f}%"
                 " off.")
    if left_out:
        text += f" Shown but not counted: {', '.join(left_out)}."
    if result.arithmetic_max_abs_error_pct is not None:
        text += (f" Carbon arithmetic (reported hours x the source's power, PUE and grid): "
                 f"median {result.arithmetic_median_abs_error_pct:.1f}%, worst "
                 f"{result.arithmetic_max_abs_error_pct:.1f}%.")
    return text


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.0f}%"


def _amount(x: float | None, unit: str) -> str:
    """1,022 MWh, 24.7 t, $5.33M."""
    if x is None:
        return "n/a"
    if unit == "USD":
        return f"${fmt_count(x)}"
    return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.3g} {unit}"


def _display_row(r: BacktestRow) -> dict[str, str]:
    return {
        "run": r.id + ("" if r.in_summary else " (not counted)"),
        "hardware": f"{r.devices:,}{' (assumed)' if r.devices_assumed else ''} x {r.hardware}",
        "tokens": fmt_count(r.tokens),
        "predicted device-h": fmt_count(r.predicted_device_hours),
        "range": f"{fmt_count(r.predicted_device_hours_low)}-"
                 f"{fmt_count(r.predicted_device_hours_high)}",
        "inside": "yes" if r.reported_within_range else "no",
        "reported device-h": fmt_count(r.reported_device_hours),
        "error": _pct(r.error_pct),
        "error at 1/2x, 2x devices": (f"{_pct(r.error_pct_half_devices)}, "
                                      f"{_pct(r.error_pct_double_devices)}"
                                      if r.devices_assumed else ""),
        "MFU x goodput": f"{r.predicted_mfu * 100:.0f}% x {r.goodput:.2f}",
        "implied MFU": f"{r.implied_mfu * 100:.0f}%",
    }


def _detail_rows(r: BacktestRow) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    grid = f"PUE {r.pue:g} x {r.grid_g_co2e_per_kwh:g} g/kWh" if r.pue is not None else ""
    plan = f"planner {r.energy_scope} {r.predicted_power_w:.0f} W/device x {grid}"
    src = f"reported hours x {r.reported_power_w:g} W x {grid}" if r.reported_power_w else ""
    if r.reported_power_w is not None:
        out.append({"run": r.id, "quantity": f"power per device ({r.energy_scope})",
                    "basis": f"planner {r.energy_scope} scope, before PUE",
                    "predicted": f"{r.predicted_power_w:.0f} W",
                    "reported": f"{r.reported_power_w:g} W",
                    "error": _pct(100 * (r.predicted_power_w / r.reported_power_w - 1))})
    for name, basis, pred, rep, err, unit in (
            ("energy", plan, r.predicted_energy_mwh, r.reported_energy_mwh,
             r.energy_error_pct, "MWh"),
            ("carbon", plan, r.predicted_tco2e, r.reported_tco2e, r.carbon_error_pct, "t"),
            ("carbon, arithmetic", src, r.arithmetic_tco2e, r.reported_tco2e,
             r.arithmetic_error_pct, "t"),
            ("cost", "predicted device-hours x the run's price", r.predicted_cost_usd,
             r.reported_cost_usd, r.cost_error_pct, "USD")):
        if pred is not None:
            out.append({"run": r.id, "quantity": name, "basis": basis,
                        "predicted": _amount(pred, unit), "reported": _amount(rep, unit),
                        "error": f"{err:+.1f}%" if "arithmetic" in name else _pct(err)})
    return out


def render_backtest(result: BacktestResult, fmt: str) -> str:
    """The backtest as table, markdown, csv (one row per run) or json."""
    if fmt == "json":
        return dumps_json(result.to_dict()) + "\n"
    if fmt == "csv":
        rows = [r.to_dict() for r in result.rows]
        return render_rows(rows, list(rows[0]) if rows else [], "csv")
    main, detail = table_rows(result), detail_rows(result)
    parts = [render_rows(main, list(main[0]) if main else [], fmt)]
    if detail:
        title = "Energy, carbon and cost" if fmt == "table" else "**Energy, carbon and cost**"
        parts += [title + "\n", render_rows(detail, list(detail[0]), fmt)]
    return "\n".join(parts + [summary(result)]) + "\n"
