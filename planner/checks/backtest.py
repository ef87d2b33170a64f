"""Backtest: the planner's predictions against published training runs.

Each run in ``planner/data/backtest/runs.yaml`` is predicted from what someone planning it
would know (model, tokens, hardware, device count; sequence length, batch and precision where
published) as "the best layout on N devices" (``sizing.answer``) with the default performance
model and goodput. No efficiency comes from the run; nothing is fitted per run. Energy and
carbon use the run's own PUE and grid factor, cost its own price. The arithmetic check
multiplies the *reported* device-hours by the power, PUE and grid factor the source used,
testing the carbon formula apart from the time prediction. Errors are (predicted - reported)
/ reported in percent: positive means the planner predicts more than was reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from planner.catalog.yamlio import load_spec
from planner.errors import PlannerError, SpecError, UnknownNameError
from planner.estimators import outcome as oc
from planner.results import Result
from planner.specs.base import PositiveWhole, Spec
from planner.vocab import AttentionKernel, Framework, Precision, Recompute, ZeroStage
from planner.units import SECONDS_PER_HOUR, TERA

DATASET = Path(__file__).resolve().parent.parent / "data" / "backtest" / "runs.yaml"
INPUT_FIELDS = ("tokens", "devices", "seq_len", "global_batch_sequences", "precision", "layout")
REPORTED_FIELDS = ("reported_device_hours", "reported_energy_mwh", "reported_tco2e",
                   "reported_power_w", "reported_pue", "reported_grid_g_co2e_per_kwh",
                   "reported_cost_usd", "price_usd_per_device_hour")
_BASIS = ("reported_power_w", "reported_pue", "reported_grid_g_co2e_per_kwh")


class PublishedLayout(Spec):
    """The degrees and options a source publishes for its run (TrainingSpec / ParallelismSpec
    names); the search fills the rest, as `planner estimate` does for flags not given."""

    tp: PositiveWhole | None = None
    pp: PositiveWhole | None = None
    cp: PositiveWhole | None = None
    virtual_stages: PositiveWhole | None = None
    zero_stage: ZeroStage | None = None
    micro_batch_size: PositiveWhole | None = None
    recompute: Recompute | None = None
    dropout: bool | None = None
    framework: Framework | None = None
    attention_kernel: AttentionKernel | None = None

    def options(self) -> dict[str, Any]:
        """The given fields as `resolve` options."""
        return self.model_dump(exclude_none=True)


class BacktestRun(Spec):
    """One published run: the planner's inputs, the reported figures and their quotes."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="kebab-case run id.")
    name: str
    model: str = Field(description="Model preset (`planner models list`).")
    hardware: str = Field(description="Hardware profile (`planner hardware list`).")
    devices: PositiveInt
    devices_assumed: bool = Field(False, description="The source gives no device count.")
    tokens: PositiveFloat = Field(description="Training tokens.")
    seq_len: PositiveInt | None = Field(None, description="None: the planner's default.")
    global_batch_sequences: PositiveInt | None = Field(None, description="None: default.")
    precision: Precision | None = Field(None, description="None: the planner's default.")
    layout: PublishedLayout | None = Field(
        None, description="The published layout, honoured as given flags are; None: searched.")
    reported_device_hours: PositiveFloat
    hours_basis: Literal["throughput", "allocation", "card"] = Field(
        description="What the reported hours count: tokens / measured speed (no restarts, "
        "stalls or checkpoints: compared with planner's compute hours), a wall-clock "
        "allocation, or a card total of unstated scope (both compared with the whole run).")
    reported_energy_mwh: PositiveFloat | None = None
    reported_tco2e: PositiveFloat | None = None
    reported_power_w: PositiveFloat | None = Field(
        None, description="W per device in the source's own energy arithmetic.")
    reported_pue: float | None = Field(None, ge=1, le=3)
    reported_grid_g_co2e_per_kwh: float | None = Field(None, ge=0, le=2000)
    energy_scope: Literal["accelerator", "server"] | None = Field(
        None, description="What the source's power counts: the accelerators alone (a TDP "
        "figure) or measured system power with hosts; the prediction uses planner's power in "
        "the same scope x the source's PUE.")
    reported_cost_usd: PositiveFloat | None = None
    price_usd_per_device_hour: PositiveFloat | None = Field(
        None, description="The price the reported cost was computed with.")
    in_summary: bool = Field(True, description="Counted in the median and worst error.")
    excluded_reason: str | None = None
    reliability: str
    source: str = Field(pattern=r"^https?://")
    quotes: dict[str, str] = Field(description="Figure name -> verbatim quote.")
    derived: dict[str, str] = Field(default_factory=dict,
                                    description="Figure name -> how it was obtained.")
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> BacktestRun:
        given = [f for f in _BASIS if getattr(self, f) is not None]
        if given and len(given) < len(_BASIS):
            raise ValueError(f"give all of {', '.join(_BASIS)} or none (got {', '.join(given)})")
        if bool(given) != (self.energy_scope is not None):
            raise ValueError("energy_scope goes with reported_power_w, PUE and grid: give all "
                             "or none")
        known = INPUT_FIELDS + REPORTED_FIELDS
        for key in (*self.quotes, *self.derived):
            if key not in known:
                raise ValueError(f"'{key}' in quotes/derived is not a figure; valid: "
                                 f"{', '.join(known)}")
        for f in REPORTED_FIELDS:
            if getattr(self, f) is not None and not self.quotes.get(f, "").strip():
                raise ValueError(f"{f}={getattr(self, f)} has no quote from its source")
        for f in INPUT_FIELDS:
            value = getattr(self, f)
            if value is not None and not (self.quotes.get(f) or self.derived.get(f)):
                shown = value.options() if isinstance(value, PublishedLayout) else value
                raise ValueError(f"{f}={shown} has neither a quote nor a derivation")
        if self.devices_assumed and not self.derived.get("devices"):
            raise ValueError("devices_assumed needs derived.devices saying why that count")
        if self.in_summary == bool(self.excluded_reason):
            raise ValueError("give excluded_reason exactly when in_summary is false")
        if (self.reported_cost_usd is None) != (self.price_usd_per_device_hour is None):
            raise ValueError("a reported cost needs the price per device-hour behind it")
        return self

    @property
    def has_carbon_basis(self) -> bool:  # power, PUE and grid are given together or not at all
        return self.reported_pue is not None


class BacktestDataset(Spec):
    """The dataset file: a description and the runs."""

    description: str
    runs: list[BacktestRun] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BacktestDataset:
        ids = [r.id for r in self.runs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate run ids: {', '.join(dupes)}")
        return self


@dataclass(frozen=True)
class BacktestRow(Result):
    """Predicted against reported for one run (MWh, t CO2e, USD; errors in percent)."""

    id: str
    name: str
    model: str
    hardware: str
    devices: int
    devices_assumed: bool
    tokens: float
    in_summary: bool
    excluded_reason: str | None
    layout: str
    predicted_device_hours: float
    predicted_device_hours_low: float  # assumed device counts: the least over n/2, n, 2n
    predicted_device_hours_high: float  # ... and the most
    reported_device_hours: float
    error_pct: float
    error_pct_half_devices: float | None  # only for assumed device counts: at n/2 and 2n
    error_pct_double_devices: float | None
    reported_within_range: bool  # inside [low, high] (assumed device counts: over n/2 .. 2n)
    hours_basis: str  # throughput (compared with compute hours) | allocation | card
    energy_scope: str | None  # accelerator | server: the scope the energy rows compare
    predicted_mfu: float
    goodput: float
    implied_mfu: float  # model FLOPs / (reported device-hours x peak): end-to-end
    predicted_power_w: float  # the planner's W per device in energy_scope, before PUE
    reported_power_w: float | None
    pue: float | None
    grid_g_co2e_per_kwh: float | None
    predicted_energy_mwh: float | None
    reported_energy_mwh: float | None
    energy_error_pct: float | None
    predicted_tco2e: float | None
    reported_tco2e: float | None
    carbon_error_pct: float | None
    arithmetic_energy_mwh: float | None  # reported hours x reported W x PUE
    arithmetic_energy_error_pct: float | None
    arithmetic_tco2e: float | None  # ... x grid factor
    arithmetic_error_pct: float | None
    predicted_cost_usd: float | None
    reported_cost_usd: float | None
    cost_error_pct: float | None
    source: str


@dataclass(frozen=True)
class BacktestResult:
    """All rows, and the error summary over the runs marked in_summary."""

    rows: tuple[BacktestRow, ...]
    median_abs_error_pct: float | None
    max_abs_error_pct: float | None
    median_error_pct: float | None  # signed: > 0 means the planner over-predicts
    worst_run: str | None
    num_summary_runs: int
    arithmetic_median_abs_error_pct: float | None
    arithmetic_max_abs_error_pct: float | None
    coverage: float | None = None  # share of counted runs whose reported hours are in range
    energy_median_abs_error_pct: float | None = None  # energy rows, in matching scopes

    def to_dict(self) -> dict[str, Any]:
        """The `planner backtest --format json` object."""
        return {"runs": [r.to_dict() for r in self.rows],
                "median_abs_error_pct": self.median_abs_error_pct,
                "max_abs_error_pct": self.max_abs_error_pct,
                "median_error_pct": self.median_error_pct, "worst_run": self.worst_run,
                "num_summary_runs": self.num_summary_runs, "coverage": self.coverage,
                "energy_median_abs_error_pct": self.energy_median_abs_error_pct,
                "carbon_arithmetic": {
                    "median_abs_error_pct": self.arithmetic_median_abs_error_pct,
                    "max_abs_error_pct": self.arithmetic_max_abs_error_pct}}


def load_runs(path: Path | None = None) -> list[BacktestRun]:
    """The runs of a dataset file (default: the shipped one), validated."""
    return list(load_spec(BacktestDataset, path or DATASET).runs)


def _error_pct(predicted: float | None, reported: float | None) -> float | None:
    if predicted is None or reported is None:
        return None
    return (predicted - reported) / reported * 100.0


def _estimate(run: BacktestRun, devices: int | None = None):
    """The planner's best plan for the run on its device count (an Estimate)."""
    from planner.planning.resolve import resolve
    from planner.planning.sizing import Question, answer

    n = devices or run.devices
    options = {"seq_len": run.seq_len, "global_batch_size": run.global_batch_sequences,
               "precision": run.precision, "pue": run.reported_pue,
               "grid_g_co2e_per_kwh": run.reported_grid_g_co2e_per_kwh,
               "price_usd_per_device_hour": run.price_usd_per_device_hour,
               **(run.layout.options() if run.layout else {})}
    try:
        req = resolve(run.model, run.hardware, run.tokens, **options)
        return answer(req, Question("devices", n, max_devices=n), 1).best
    except PlannerError as e:
        raise SpecError(f"backtest run '{run.id}' on {n} devices: {e}") from None


def _estimate_at(run: BacktestRun, devices: int):
    """The best plan on another device count (None if the model does not fit there)."""
    try:
        return _estimate(run, devices)
    except SpecError:
        return None


def _scope_kwh(e, scope: str | None) -> float:
    """The estimate's expected energy in a scope, before PUE (kWh)."""
    return e.energy.accelerator_kwh if scope == "accelerator" else e.energy.it_kwh


def _arithmetic(run: BacktestRun) -> tuple[float | None, float | None]:
    """(MWh, t CO2e) from the reported hours and the source's own power, PUE and grid."""
    if not run.has_carbon_basis:
        return None, None
    assert run.reported_power_w and run.reported_pue
    assert run.reported_grid_g_co2e_per_kwh is not None
    _, kwh = oc.energy_kwh(run.reported_device_hours, run.reported_power_w, run.reported_pue)
    return kwh / 1e3, oc.carbon_kg(kwh, run.reported_grid_g_co2e_per_kwh) / 1e3


def predict(run: BacktestRun) -> BacktestRow:
    """Predict one run and compare every reported figure."""
    e = _estimate(run)
    lay = e.layout
    # throughput-derived hours hold no restarts, stalls or checkpoints: compare compute hours
    # (each case's device-hours x its goodput), and the energy and cost that go with them
    compute_only = run.hours_basis == "throughput"

    def basis_hours(x) -> float:  # an Outcome or a Time: device-hours in the run's basis
        return x.device_hours * (x.goodput if compute_only else 1.0)

    share = e.time.goodput if compute_only else 1.0
    hours = basis_hours(e.time)
    others = ([_estimate_at(run, max(1, run.devices // 2)), _estimate_at(run, run.devices * 2)]
              if run.devices_assumed else [])
    # an assumed device count is an uncertain input: its range spans n/2 .. 2n devices
    cases = [x for x in (e, *others) if x is not None]
    low = min(basis_hours(x.range.low) for x in cases)
    high = max(basis_hours(x.range.high) for x in cases)
    implied = e.flops.total / (run.reported_device_hours * SECONDS_PER_HOUR
                               * e.hardware.peak_tflops * TERA)
    basis = run.has_carbon_basis
    scope_mwh = _scope_kwh(e, run.energy_scope) * share * (run.reported_pue or 1.0) / 1e3
    energy = scope_mwh if basis and run.reported_energy_mwh else None
    carbon = (scope_mwh * (run.reported_grid_g_co2e_per_kwh or 0.0) / 1e3
              if basis and run.reported_tco2e else None)
    power_w = _scope_kwh(e, run.energy_scope or "server") * 1e3 / e.time.device_hours
    cost = e.cost.total_usd * share if run.reported_cost_usd else None
    a_mwh, a_t = _arithmetic(run)
    half, double = (tuple(None if o is None else _error_pct(basis_hours(o.time),
                                                            run.reported_device_hours)
                          for o in others) if others else (None, None))
    inside = low <= run.reported_device_hours <= high
    return BacktestRow(
        id=run.id, name=run.name, model=run.model, hardware=run.hardware, devices=run.devices,
        devices_assumed=run.devices_assumed, tokens=run.tokens, in_summary=run.in_summary,
        excluded_reason=run.excluded_reason,
        layout=(f"tp{lay.tp} pp{lay.pp} dp{lay.dp} cp{lay.cp} ep{lay.ep} zero{lay.zero_stage} "
                f"mb{lay.micro_batch_size} batch{lay.global_batch_size} {lay.recompute}"),
        predicted_device_hours=hours, predicted_device_hours_low=low,
        predicted_device_hours_high=high, reported_device_hours=run.reported_device_hours,
        error_pct=_error_pct(hours, run.reported_device_hours),  # type: ignore[arg-type]
        error_pct_half_devices=half, error_pct_double_devices=double,
        reported_within_range=inside, energy_scope=run.energy_scope,
        hours_basis=run.hours_basis,
        predicted_mfu=e.throughput.mfu, goodput=1.0 if compute_only else e.time.goodput,
        implied_mfu=implied,
        predicted_power_w=power_w, reported_power_w=run.reported_power_w,
        pue=run.reported_pue, grid_g_co2e_per_kwh=run.reported_grid_g_co2e_per_kwh,
        predicted_energy_mwh=energy, reported_energy_mwh=run.reported_energy_mwh,
        energy_error_pct=_error_pct(energy, run.reported_energy_mwh),
        predicted_tco2e=carbon, reported_tco2e=run.reported_tco2e,
        carbon_error_pct=_error_pct(carbon, run.reported_tco2e),
        arithmetic_energy_mwh=a_mwh if run.reported_energy_mwh else None,
        arithmetic_energy_error_pct=_error_pct(a_mwh, run.reported_energy_mwh),
        arithmetic_tco2e=a_t if run.reported_tco2e else None,
        arithmetic_error_pct=_error_pct(a_t, run.reported_tco2e),
        predicted_cost_usd=cost, reported_cost_usd=run.reported_cost_usd,
        cost_error_pct=_error_pct(cost, run.reported_cost_usd), source=run.source)


def _stats(errors: list[float]) -> tuple[float | None, float | None]:
    """(median, max) of the absolute errors, or (None, None) when there are none."""
    absolute = [abs(x) for x in errors]
    return (statistics.median(absolute), max(absolute)) if absolute else (None, None)


def summarize(rows: Sequence[BacktestRow]) -> BacktestResult:
    """Median and worst absolute error over the rows marked in_summary."""
    counted = [r for r in rows if r.in_summary]
    med, worst = _stats([r.error_pct for r in counted])
    worst_row = max(counted, key=lambda r: abs(r.error_pct)) if counted else None
    a_med, a_max = _stats([r.arithmetic_error_pct for r in rows
                           if r.arithmetic_error_pct is not None])
    e_med, _ = _stats([r.energy_error_pct for r in counted if r.energy_error_pct is not None])
    return BacktestResult(
        rows=tuple(rows), median_abs_error_pct=med, max_abs_error_pct=worst,
        median_error_pct=statistics.median(r.error_pct for r in counted) if counted else None,
        worst_run=worst_row.id if worst_row else None, num_summary_runs=len(counted),
        arithmetic_median_abs_error_pct=a_med, arithmetic_max_abs_error_pct=a_max,
        coverage=(sum(r.reported_within_range for r in counted) / len(counted)
                  if counted else None), energy_median_abs_error_pct=e_med)


def run_backtest(path: Path | None = None, ids: Sequence[str] = ()) -> BacktestResult:
    """Predict every run of the dataset (or only ``ids``) and summarize the errors."""
    runs = load_runs(path)
    if ids:
        by_id = {r.id: r for r in runs}
        for i in ids:
            if i not in by_id:
                raise UnknownNameError("backtest run", i, by_id)
        runs = [by_id[i] for i in dict.fromkeys(ids)]
    return summarize([predict(r) for r in runs])
