"""The Python API, the CLI's peer: each function returns the typed result the CLI renders.

    >>> import planner
    >>> est = planner.estimate(model="llama3-70b", hardware="h100-sxm", devices=2048,
    ...                        tokens="15T", tp=8, pp=4)
    >>> est.time.wall_clock_days, est.cost.total_usd, est.layout_choice.chosen
    >>> planner.plan(model="llama3-70b", hardware="h100-sxm", tokens="15T",
    ...              deadline_days=60).best.layout.devices

Options are the CLI's, by their spec names: seq_len, global_batch_size, micro_batch_size,
precision, recompute, tp, pp, cp, ep, zero_stage, virtual_stages, pipeline_schedule,
sequence_parallel, and the assumptions (pue, price_tier, efficiency, goodput_expected, ...).
"""

from __future__ import annotations

from typing import Any

from planner.catalog.catalog import load_hardware, load_model
from planner.errors import SpecError
from planner.planning.answer import estimate_plan
from planner.results import Estimate

__all__ = ["backtest", "budget", "compare", "estimate", "load_hardware", "load_model", "plan"]


def estimate(model=None, hardware: str | None = None, devices: int | None = None,
             tokens=None, region: str | None = None, alternatives: int = 0,
             **options: Any) -> Estimate:
    """`planner estimate`: one job on ``devices``; degrees not given are searched."""
    return estimate_plan(model, hardware, devices, tokens, region, top=alternatives, **options)


def plan(model=None, hardware: str | None = None, tokens=None, region: str | None = None,
         devices: int | None = None, deadline_days: float | None = None,
         budget_usd: float | None = None, max_devices: int = 65536, objective: str = "time",
         top: int = 10, confidence: str = "expected", **options: Any):
    """`planner plan`: answer one sizing question (default: the fewest devices) -> PlanResult."""
    from planner.planning.resolve import resolve
    from planner.planning.sizing import answer, question

    q = question(devices, deadline_days, budget_usd, max_devices, objective, confidence)
    return answer(resolve(model, hardware, tokens, region, **options), q, top)


def compare(hardware: list[str], model=None, tokens=None, region: str | None = None,
            **question: Any) -> list[Estimate]:
    """`planner compare`: the best plan on each hardware for the same job (options that
    cannot answer raise; the CLI instead leaves them out with a warning)."""
    return [plan(model, h, tokens, region, top=1, **question).best for h in hardware]


def budget(usd: float | None = None, model=None, hardware: str = "h100-sxm",
           devices: int | None = None, **options: Any):
    """`planner budget`: with a model and devices, the job the budget buys (an Estimate);
    without a model, the compute-optimal allocations (a BudgetAnswer)."""
    from planner.planning.budget import budget_for_model

    if model is None:
        raise SpecError("planner.budget(...) needs model=...; for compute-optimal allocations "
                        "use planner.planning.budget.answer_budget")
    return budget_for_model(usd, model, hardware, devices, **options)


def backtest(ids: tuple[str, ...] = ()):
    """`planner backtest`: predictions against published runs -> BacktestResult."""
    from planner.checks.backtest import run_backtest

    return run_backtest(None, ids)
