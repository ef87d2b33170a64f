"""What ``planner estimate`` predicts for the full run, to put beside the extrapolation."""

from __future__ import annotations

from planner.errors import PlannerError
from planner.measurement.context import MeasureOptions, RunContext
from planner.measurement.results import EstimateComparison


def _unavailable(reason: str, o: MeasureOptions, devices: int | None) -> EstimateComparison:
    return EstimateComparison(False, reason, o.model, o.hardware, devices, None, None, None,
                              None, None, None)


def planner_estimate(o: MeasureOptions, ctx: RunContext,
                     devices: int | None) -> EstimateComparison | None:
    """The expected-case estimate for ``o.extrapolate_to`` tokens, or why there is none.

    None when neither --model nor --hardware was given. The estimate uses the same region,
    grid intensity, PUE and price as the measurement, so the two are comparable.
    """
    if not (o.model or o.hardware) or o.extrapolate_to is None:
        return None
    if not (o.model and o.hardware):
        missing = "--hardware" if o.model else "--model"
        return _unavailable(f"the planner's estimate needs --model and --hardware "
                            f"({missing} missing)", o, devices)
    training = o.training or {}
    per_step = (training.get("seq_len") or 0) * (training.get("global_batch") or 0)
    if o.tokens is None and not per_step:
        return _unavailable("the planner's estimate needs tokens: --steps are turned into "
                            "tokens only with --seq-len and --global-batch", o, devices)
    target = o.extrapolate_to if o.tokens is not None else o.extrapolate_to * per_step
    return estimate_for(o, ctx.pue, devices, target)


def estimate_for(o: MeasureOptions, pue: float, devices: int | None,
                 tokens: float | None = None) -> EstimateComparison:
    """``planner estimate`` for ``tokens`` (default ``o.extrapolate_to``) on ``devices`` at
    ``pue``, with the training and layout flags the run was given (``o.training``)."""
    from planner.vocab import api_training_options

    given = {k: v for k, v in (o.training or {}).items() if k not in ("model", "steps", "tokens")}
    try:
        from planner.planning.answer import estimate_plan
        est = estimate_plan(
            model=o.model, hardware=o.hardware, devices=devices or None,
            tokens=o.extrapolate_to if tokens is None else tokens,
            region=o.region, profiles_dirs=o.profiles_dirs, pue=pue,
            grid_g_co2e_per_kwh=o.grid_g_co2e_per_kwh, price_tier=o.price_tier,
            price_usd_per_device_hour=o.price_per_hour, **api_training_options(given))
    except PlannerError as e:
        return _unavailable(f"planner estimate failed: {e}", o, devices)
    return EstimateComparison(
        available=True, reason=None, model=est.model.name, hardware=est.hardware.name,
        devices=est.layout.devices, wall_clock_days=est.time.wall_clock_days,
        device_hours=est.time.device_hours, energy_kwh=est.energy.kwh,
        kg_co2e=est.carbon.kg_co2e, cost_usd=est.cost.total_usd, mfu=est.throughput.mfu)
