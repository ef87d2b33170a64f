"""A calibration from a measured multi-device run: the compute speed at which the model's step
time for the run's own layout equals the measured one (docs/performance-model.md).

`planner validate --calibrate` times one device, so the ratio of measured to predicted
throughput is the compute correction. A run of many devices also spends time in
communication and the pipeline bubble, which the model keeps as they are: the correction is
the factor ``s`` on the compute constants (``step_time.calibrated``) that makes

    step_seconds(calibrated(perf, s)) = measured seconds per optimizer step

for the run's layout. The step time falls as ``s`` grows, so ``s`` is found by bisection; a
run faster than the model's communication alone has no such ``s`` and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import SpecError
from planner.estimators.flops import training_flops
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    DEFAULT_PERF, calibrated, flops_inputs, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning.resolve import Request
from planner.vocab import DEGREE_FLAGS

SCALE_RANGE = (1e-3, 1e3)  # compute speed factors searched; outside them the run is refused


@dataclass(frozen=True)
class RunCalibration:
    """What a measured run says about the model: the compute factor and the figures behind it."""

    compute_scale: float  # x the model's compute speed (step_time.calibrated)
    measured_step_s: float
    predicted_step_s: float  # the uncalibrated model's, for this layout
    measured_mfu: float
    measured_hfu: float
    predicted_mfu: float
    layout: str  # "dp 8 x tp 2 x pp 1 x cp 1, ZeRO-1, micro-batch 2, recompute none"
    devices: int
    kernels: str


def calibrate_from_run(req: Request, devices: int, measured_step_s: float) -> RunCalibration:
    """The compute factor that makes the model's step time for ``req``'s complete layout on
    ``devices`` equal ``measured_step_s`` (SpecError if the layout is not complete or no
    factor in SCALE_RANGE does)."""
    from planner.planning.answer import complete_row, specs_at

    if not (math.isfinite(measured_step_s) and measured_step_s > 0):
        raise SpecError(f"the measured step time must be a positive number of seconds, got "
                        f"{measured_step_s}")
    fixed = req.fixed_degrees()
    if not req.layout_complete(fixed):
        missing = [flag for name, flag in DEGREE_FLAGS.items() if name not in fixed]
        raise SpecError("a calibration needs the run's own layout, not a searched one: give "
                        + ", ".join(missing))
    train, par = specs_at(req, complete_row(req, fixed, devices))
    lay = Degrees.from_specs(train, par)
    params = count_params(req.model)
    fl = flops_inputs(req.model, train, params)

    def step(scale: float) -> float:
        perf = calibrated(DEFAULT_PERF, scale)
        return float(step_seconds(step_time_terms(req.model, train, lay, req.hw, params, fl,
                                                  perf)))

    lo, hi = SCALE_RANGE
    fastest, slowest = step(hi), step(lo)
    if not fastest <= measured_step_s <= slowest:
        which, bound, at = (("faster", fastest, hi) if measured_step_s < fastest else
                            ("slower", slowest, lo))
        raise SpecError(f"the measured step ({measured_step_s:.4g} s) is {which} than the "
                        f"model's {bound:.4g} s for this layout even at {at:g}x its compute "
                        "speed; check --steps, --devices and the layout flags")
    for _ in range(60):  # bisection on log(scale): the step time falls as scale grows
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if step(mid) > measured_step_s else (lo, mid)
    scale = math.sqrt(lo * hi)
    flops = training_flops(req.model, train, params)
    peak = req.hw.peak_flops_per_s(train.precision)
    tokens = train.global_batch_size * train.seq_len
    predicted = step(1.0)

    def util(per_token: float, seconds: float) -> float:
        return per_token * tokens / (seconds * par.devices * peak)

    layout = (f"dp {lay.dp} x tp {par.tp} x pp {par.pp} x cp {par.cp}, ZeRO-{par.zero_stage}, "
              f"micro-batch {train.micro_batch_size}, recompute {train.recompute}")
    return RunCalibration(scale, measured_step_s, predicted,
                          util(flops.model_per_token, measured_step_s),
                          util(flops.hardware_per_token, measured_step_s),
                          util(flops.model_per_token, predicted), layout, par.devices,
                          train.kernels)

