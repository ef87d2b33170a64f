"""The answer to `planner estimate`'s question: one job on one device count.

Every degree given: that layout, estimated directly (no search, no numpy). Any degree left
open: the best layout `sizing.answer` finds for the devices question, so `estimate` and
`plan --devices N` give the same plan, to the digit.
"""

from __future__ import annotations

from typing import Any

from planner.errors import InfeasibleError, SpecError
from planner.estimators.layout import check_layout
from planner.planning import defaults
from planner.planning.estimate import estimate
from planner.planning.resolve import (
    Request, devices_of, parallelism_spec, resolve, training_spec,
)
from planner.results import Assumption, Estimate, LayoutChoice
from planner.specs import ParallelismSpec, TrainingSpec
from planner.units import GIB


def specs_at(req: Request, row: dict[str, Any]) -> tuple[TrainingSpec, ParallelismSpec]:
    """The training and parallelism specs of one layout (a search row or the user's
    complete layout)."""
    v = row["virtual_stages"]
    schedule = req.parallel.get("pipeline_schedule")
    schedule = "gpipe" if schedule == "gpipe" else ("interleaved" if v > 1 else
                                                    schedule or "1f1b")
    shard = row.get("dp_shard")
    hsdp = {} if shard is None or shard == row["dp"] else {"dp_shard": shard}
    if "reshard_after_forward" in row:
        hsdp["reshard_after_forward"] = bool(row["reshard_after_forward"])
    par = parallelism_spec(req, row["devices"], **{k: row[k] for k in (
        "tp", "pp", "cp", "ep", "zero_stage", "virtual_stages")}, pipeline_schedule=schedule,
        **hsdp)
    train = training_spec(req, micro_batch_size=row["micro_batch_size"],
                          recompute=row["recompute"], global_batch_size=row["global_batch_size"])
    return train, par


def estimate_at(req: Request, row: dict[str, Any], choice: LayoutChoice | None = None,
                note: Assumption | None = None) -> Estimate:
    """The full estimate of one layout (a search row or the user's complete layout)."""
    train, par = specs_at(req, row)
    warnings = () if req.batch_given else (
        defaults.batch_warning(train.global_batch_size, train.seq_len),)
    notes = [*req.notes, *([note] if note else [])]
    if not req.batch_given:
        notes = [n if n.name != "global_batch_size" else Assumption(
            name="global_batch_size", value=train.global_batch_size, unit="sequences",
            defaulted=True, source=f"{n.value} sequences by the rule, rounded to a multiple of "
                                   f"dp x micro-batch: {n.source}") for n in notes]
    return estimate(req.model, req.hw, train, par, req.assumptions, req.grid, tuple(notes),
                    warnings, choice, req.perf)


def estimate_on(req: Request, devices: int, top: int = 0,
                show_unfit: bool = False) -> Estimate:
    """The estimate on ``devices``: the user's layout when every degree is given (the HSDP
    shard group and resharding too, where they matter), else the best layout the search
    finds for the rest (the same answer as `plan --devices N`).
    ``show_unfit``: when nothing fits, the smallest-memory layout (to see why)."""
    fixed, choice = req.fixed_degrees(), None
    if req.layout_complete(fixed) and req.refined_open(fixed, devices):
        refined, choice = _searched_refinement(req, devices)
        fixed = {**fixed, **refined}
    if not req.layout_complete(fixed):
        from planner.planning.sizing import Question, answer, closest_row

        try:
            return answer(req, Question("devices", devices), top=top + 1).best
        except InfeasibleError:
            if not show_unfit:
                raise
            return estimate_at(req, closest_row(req, devices))
    row = complete_row(req, fixed, devices)
    est = estimate_at(req, row, choice)
    if not req.batch_given:  # the rule's batch is an uncertain input: its spread (spread.py)
        from planner.planning import spread
        target = req.training["global_batch_size"]
        unit = row["dp"] * fixed["micro_batch_size"]
        factors = spread.fixed_layout_batch_factors(
            target, unit, est.range.expected.device_hours, lambda b: estimate_at(
                req, {**row, "global_batch_size": b}).range.expected.device_hours)
        est = spread.widen(est, factors, (1.0, 1.0))
    return est


def layout_specs(req: Request, devices: int) -> tuple[TrainingSpec, ParallelismSpec]:
    """The specs of the user's complete layout on ``devices``, checked as an estimate checks
    it (the estimate's one-line SpecErrors)."""
    train, par = specs_at(req, complete_row(req, req.fixed_degrees(), devices))
    check_layout(req.model, train, par, req.hw)
    return train, par


def _searched_refinement(req: Request, devices: int) -> tuple[dict[str, Any], Any]:
    """The ZeRO shard group and resharding the search picks for a layout given without them
    (as `plan --devices N` would), and how they were chosen: the rest is that complete
    layout's estimate, its range too, as with the flags given."""
    from planner.planning.sizing import Question, answer

    best = answer(req, Question("devices", devices), top=1).best
    lay = best.layout
    return ({"dp_shard": lay.dp_shard, "reshard_after_forward": lay.reshard_after_forward},
            best.layout_choice)


def complete_row(req: Request, fixed: dict[str, Any], devices: int) -> dict[str, Any]:
    """The layout row of a complete user layout on ``devices`` (dp and the global batch
    filled in: the given batch, or the rule's rounded to a multiple of dp x micro-batch)."""
    mp = fixed["tp"] * fixed["pp"] * fixed["cp"]
    if devices % mp:  # the spec's one-line error, before any batch arithmetic
        parallelism_spec(req, devices, **{k: fixed[k] for k in ("tp", "pp", "cp", "ep")})
    dp = devices // mp
    batch = req.training["global_batch_size"]
    if not req.batch_given:
        unit = dp * fixed["micro_batch_size"]
        target, batch = batch, defaults.round_batch(batch, unit)
        if batch > 2 * target:
            raise SpecError(f"dp x micro-batch = {unit} sequences is more than twice the "
                            f"default global batch ({target}); give --global-batch")
    return {**fixed, "devices": devices, "dp": dp, "global_batch_size": batch}


def estimate_plan(
    model=None, hardware: str | None = None, devices: int | None = None, tokens=None,
    region: str | None = None, profiles_dirs: tuple[str, ...] = (), shape=None,
    use_calibration: bool = True, top: int = 0, require_fit: bool = False, **options: Any,
) -> Estimate:
    """`planner estimate` from names and plain values: resolve, then `estimate_on` the
    device count (given, the built-in plan's, or one node). ``require_fit``: a complete
    layout that does not fit raises InfeasibleError naming what would."""
    req = resolve(model, hardware, tokens, region, profiles_dirs, shape, use_calibration,
                  devices=devices, **options)
    n, notes = devices_of(req)
    req.notes += notes
    est = estimate_on(req, n, top, show_unfit=not require_fit)
    if require_fit and not est.memory_per_device.fits:
        mem = est.memory_per_device
        head = (f"layout does not fit: needs {mem.total_bytes / GIB:.1f} GiB per device "
                f"({mem.stage} stage) of {mem.capacity_bytes / GIB:.1f} GiB")
        from planner.planning.no_fit import fit_hints
        from planner.planning.sizing import Question

        rest = fit_hints(req, Question("devices", n), [n])
        raise InfeasibleError(head + rest + " (or --no-fit-check to see it)")
    return est
