"""`planner serve` against published serving throughput (planner/data/validation/serving_*.yaml).

Each row is predicted at its published layout (tp, pp 1), precision and request lengths, at
maximum load: the replica's batch is as large as KV memory and the engine's max_batch allow,
no latency target. Rows marked ``role: fit`` set the ServePerf constants; ``held_out`` rows
never did. No constant is fitted per row.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path

from planner.catalog.yamlio import read_yaml
from planner.estimators.serving import ServePerf
from planner.planning.serve import answer, resolve_serve

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
    q = resolve_serve(row["model"], [row["hardware"]], row["input_tokens"],
                      row["output_tokens"], precision=row.get("precision", table["precision"]),
                      kv_precision=row.get("kv_precision", table["kv_precision"]),
                      tp=row["tp"], pp=1, max_batch=table["max_batch"],
                      shape={"max_seq_len": table.get("max_seq_len")})
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
