"""`planner serve` against published serving throughput (planner/data/validation/serving_*.yaml).

Each row is predicted at its published layout (tp, pp 1), precision and request lengths, at
maximum load: the replica's batch is as large as KV memory and the engine's max_batch allow,
no latency target. Rows marked ``role: fit`` set the ServePerf constants; ``held_out`` rows
never did. No constant is fitted per row.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from planner.catalog.yamlio import read_yaml
from planner.estimators.serving import ServePerf
from planner.planning.serve import answer
from planner.planning.serve_request import ServeRequest, resolve_serve

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "validation"


@functools.cache
def _tables() -> tuple[dict, ...]:
    return tuple(read_yaml(p)[0] for p in sorted(DATA_DIR.glob("serving_*.yaml")))


@dataclass(frozen=True)
class ServeCheck:
    model: str
    hardware: str
    tp: int
    input_tokens: int
    output_tokens: int
    role: str
    reported: float  # output tokens/s of one replica
    predicted: float
    batch: int
    source: str

    @property
    def error_pct(self) -> float:
        return (self.predicted - self.reported) / self.reported * 100


def _predict(table: dict, row: dict, perf: ServePerf) -> ServeCheck:
    q = resolve_serve(ServeRequest(
        row["model"], (row["hardware"],), row["input_tokens"], row["output_tokens"],
        precision=row.get("precision", table["precision"]),
        kv_precision=row.get("kv_precision", table["kv_precision"]), tp=row["tp"], pp=1,
        max_batch=table["max_batch"], shape={"max_seq_len": table.get("max_seq_len")}))
    q.perf = perf
    o = answer(q).options[0]
    return ServeCheck(row["model"], row["hardware"], row["tp"], row["input_tokens"],
                      row["output_tokens"], row["role"], row["output_tokens_per_s"],
                      o.output_tokens_per_s_per_replica, o.batch,
                      f"{table['engine']}: {table['source']}")


def serving_checks(perf: ServePerf = ServePerf()) -> list[ServeCheck]:
    """Every published serving row, predicted."""
    return [_predict(t, r, perf) for t in _tables() for r in t["rows"]]


def median_abs_error_pct(checks: list[ServeCheck], role: str) -> float:
    """Median |error| over the rows of one role (fit or held_out), in percent."""
    return statistics.median(abs(c.error_pct) for c in checks if c.role == role)


def report(checks: list[ServeCheck] | None = None) -> str:
    """The markdown table of every row (docs/validation.md holds it; a test keeps it current)."""
    checks = serving_checks() if checks is None else checks
    lines = ["| engine | model | hardware | tp | input/output | role | reported tok/s | "
             "predicted | error | batch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        engine = "TensorRT-LLM" if "TensorRT-LLM" in c.source else "vLLM"
        lines.append(f"| {engine} | {c.model} | {c.hardware} | {c.tp} | {c.input_tokens}/"
                     f"{c.output_tokens} | {c.role} | {c.reported:,.0f} | {c.predicted:,.0f} | "
                     f"{c.error_pct:+.0f}% | {c.batch} |")
    lines.append(f"\nMedian absolute error: rows that set the constants (fit) "
                 f"{median_abs_error_pct(checks, 'fit'):.1f}%, held-out rows "
                 f"{median_abs_error_pct(checks, 'held_out'):.1f}%.")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LatencyGap:
    """One row of Oracle's MI300X latency table against planner's step model."""

    batch: int
    measured_step_s: float  # (latency - planner's prefill of the batch) / output tokens
    predicted_step_s: float  # planner's decode iteration at the mean context, no chunks
    floor_step_s: float  # the roofline alone: max(weight + KV reads, FLOPs) at 100% of peaks
    # the step's FLOPs / (its measured excess over batch 1 x the FP8 peak): what the GEMMs
    # reached at least (were part of the excess not GEMMs, they ran faster); nan at batch 1
    gemm_fraction_of_fp8_peak: float


def mi300x_latency_gap(perf: ServePerf = ServePerf()) -> list[LatencyGap]:
    """Decode step times implied by vLLM's MI300X latency table (Llama 3.1 405B FP8, tp 8),
    beside planner's. Batch 1 is memory-bound, so the excess over the roofline there is the
    engine's fixed cost per step; what a larger batch adds beyond it is its GEMMs, which
    gives the fraction of the FP8 peak they reached."""
    from planner.catalog.catalog import load_hardware, load_model
    from planner.estimators.params import count_params
    from planner.estimators.serving import (
        Layout, ServeConfig, StepLoad, forward_flops, iteration_time, prefill_time_s,
    )
    table = next(t for t in _tables() if "latency_table" in t)
    lat = table["latency_table"]
    model, hw = load_model(table["rows"][0]["model"]), load_hardware(table["rows"][0]["hardware"])
    cfg = ServeConfig(table["precision"], table["kv_precision"], Layout(8, 1))
    inp, out = lat["input_tokens"], lat["output_tokens"]
    ctx = inp + out / 2
    peak = hw.peak_flops_per_s("fp8")
    ideal = ServePerf(hbm_efficiency=(1.0,) * 3, gemm_efficiency=(1.0,) * 3,
                      allreduce_latency_s=0.0, step_overhead_s=0.0, p2p_latency_s=0.0,
                      link_efficiency=1e9)
    rows, first = [], None
    for r in lat["rows"]:
        b = r["batch"]
        pf = prefill_time_s(model, hw, cfg, inp, perf, prompts=b)
        measured = (r["latency_s"] - pf) / out
        first = measured if first is None else first
        pred = iteration_time(model, hw, cfg, StepLoad(b, ctx), perf).total_s
        floor = iteration_time(model, hw, cfg, StepLoad(b, ctx), ideal)
        flops = forward_flops(model, count_params(model), b, ctx) / 8
        excess = measured - first
        rows.append(LatencyGap(b, measured, pred, floor.decode_s,
                               flops / excess / peak if excess > 0 else float("nan")))
    return rows


def latency_gap_report(rows: list[LatencyGap] | None = None) -> str:
    """The markdown table docs/validation.md holds (a test keeps it current)."""
    rows = mi300x_latency_gap() if rows is None else rows
    lines = ["| batch | measured step ms | planner step ms | roofline floor ms | "
             "GEMMs at least, share of FP8 peak |", "|---|---|---|---|---|"]
    for g in rows:
        share = "-" if math.isnan(g.gemm_fraction_of_fp8_peak) else \
            f"{g.gemm_fraction_of_fp8_peak:.0%}"
        lines.append(f"| {g.batch} | {g.measured_step_s * 1e3:.1f} | "
                     f"{g.predicted_step_s * 1e3:.1f} | {g.floor_step_s * 1e3:.1f} | {share} |")
    return "\n".join(lines) + "\n"
