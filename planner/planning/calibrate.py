"""A calibration from a measured multi-device run: the compute speed at which the model's step
time for the run's own layout equals the measured one (docs/performance-model.md).

`planner validate --calibrate` times one device, so the ratio of measured to predicted
throughput is the compute correction. A run of many devices also spends time in
communication and the pipeline bubble, which the model keeps as they are: the correction is
the factor ``s`` on the compute constants (``step_time.calibrated``) that makes

    step_seconds(calibrated(perf, s)) = measured seconds per optimizer step

for the run's layout, with the links this hardware's link calibrations measured (`planner
calibration link`; the model's defaults otherwise), so a measured network is not read as slow
compute. The step time falls as ``s`` grows, so ``s`` is found by bisection, up
to the factor at which the last efficiency reaches the peak (GEMMs on this hardware, then
attention); a run faster than that has no such ``s`` and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from planner.catalog.calibrations import MIN_SCALE, Calibration
from planner.errors import SpecError
from planner.estimators.flops import training_flops
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    DEFAULT_PERF, PERF_MODEL_VERSION, calibrated, flops_inputs, gemm_efficiency_max,
    step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning.applied_calibration import links_used, with_links
from planner.planning.resolve import Request
from planner.vocab import DEGREE_FLAGS

# compute speed factors are searched from MIN_SCALE (calibrations.py) up to where the last cap is
LEAST_PLAUSIBLE = 0.3  # below this (or past the GEMM cap) a wrong --steps is likelier


@dataclass(frozen=True)
class RunCalibration:
    """What a measured run says about the model: the compute factor and the figures behind it."""

    compute_scale: float  # x the model's compute speed (step_time.calibrated)
    plausible: bool  # from LEAST_PLAUSIBLE to the GEMM cap (else stored with a warning)
    measured_step_s: float
    predicted_step_s: float  # the uncalibrated model's, for this layout
    measured_mfu: float
    measured_hfu: float
    predicted_mfu: float
    layout: str  # "dp 8 x tp 2 x pp 1 x cp 1, ZeRO-1, micro-batch 2, recompute none"
    devices: int
    kernels: str


def calibrate_from_run(req: Request, devices: int, measured_step_s: float,
                       links_path: Path | None = None) -> RunCalibration:
    """The compute factor that makes the model's step time for ``req``'s complete layout on
    ``devices`` equal ``measured_step_s`` (SpecError if the layout is not complete or no
    factor up to the efficiency caps does)."""
    from planner.planning.answer import layout_specs

    if not (math.isfinite(measured_step_s) and measured_step_s > 0):
        raise SpecError(f"the measured step time must be a positive number of seconds, got "
                        f"{measured_step_s}")
    fixed = req.fixed_degrees()
    if not req.layout_complete(fixed):
        missing = [flag for name, flag in DEGREE_FLAGS.items() if name not in fixed]
        raise SpecError("a calibration needs the run's own layout, not a searched one: give "
                        + ", ".join(missing))
    train, par = layout_specs(req, devices)
    lay = Degrees.from_specs(train, par)
    params = count_params(req.model)
    fl = flops_inputs(req.model, train, params)
    base, _ = with_links(DEFAULT_PERF, req.hw, links_path)

    def step(scale: float) -> float:
        perf = calibrated(base, scale)
        return float(step_seconds(step_time_terms(req.model, train, lay, req.hw, params, fl,
                                                  perf)))

    # At 1 / (this hardware's GEMM efficiency) the GEMMs reach the peak, at 1 / (attention
    # efficiency) attention does; past the last only memory-bound terms would still speed
    # up, and no factor there means anything, so the search stops at it.
    gemm_cap = 1 / gemm_efficiency_max(req.hw, DEFAULT_PERF)
    lo, hi = MIN_SCALE, max(gemm_cap, 1 / DEFAULT_PERF.attention_efficiency)
    fastest, slowest = step(hi), step(lo)
    if measured_step_s < fastest:
        raise SpecError(f"the measured step ({measured_step_s:.4g} s) is faster than the "
                        f"model's {fastest:.4g} s for this layout with its GEMMs and attention "
                        "at peak; check --steps, --devices and the layout flags")
    if measured_step_s > slowest:
        raise SpecError(f"the measured step ({measured_step_s:.4g} s) is slower than the "
                        f"model's {slowest:.4g} s for this layout even at {lo:g}x its compute "
                        "speed; check --steps, --exclude-seconds and the layout flags")
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
    return RunCalibration(scale, LEAST_PLAUSIBLE <= scale <= gemm_cap, measured_step_s,
                          predicted,
                          util(flops.model_per_token, measured_step_s),
                          util(flops.hardware_per_token, measured_step_s),
                          util(flops.model_per_token, predicted), layout, par.devices,
                          train.kernels)



@dataclass(frozen=True)
class MeasuredRun:
    """What a ledger record says about a run that a calibration needs."""

    run_id: str
    hardware: str
    devices: int
    seconds: float  # of training steps: the run's duration less what the user excluded
    date: str  # ISO date it started
    device_name: str | None  # the first GPU the meter saw


def measured_run(record: dict, hardware: str | None, devices: int | None,
                 exclude_seconds: float) -> MeasuredRun:
    """The run of a `planner measure` ledger record (``hardware``/``devices``: the user's,
    else the record's); SpecError naming the flag when the record cannot calibrate."""
    rid = record["id"]
    if not record.get("complete") or record.get("exit_code") != 0:
        state = "complete" if record.get("complete") else "incomplete"
        raise SpecError(f"run {rid} did not finish cleanly (exit code "
                        f"{record.get('exit_code')}, {state}): a calibration needs a complete, "
                        "successful run")
    cost = record.get("cost") or {}
    job = record.get("job") or {}
    if devices is None and (job.get("num_nodes") or 1) > 1:
        raise SpecError(f"run {rid} is one node's record of job {job.get('id')} "
                        f"({job.get('num_nodes')} nodes, {job.get('world_size')} ranks), which "
                        "bills that node's devices only: give --devices, the job's total")
    hardware, devices = hardware or cost.get("hardware"), devices or cost.get("devices")
    if not hardware or not devices:
        missing = " and ".join(f for f, v in (("--hardware", hardware), ("--devices", devices))
                               if not v)
        raise SpecError(f"run {rid} does not record its {missing}; give {missing}")
    seconds = record["duration_s"] - exclude_seconds
    if seconds <= 0:
        raise SpecError(f"--exclude-seconds {exclude_seconds:g} is not less than the run's "
                        f"{record['duration_s']:.1f} s")
    gpus = (record.get("energy") or {}).get("gpus") or []
    name = gpus[0].get("name") if gpus and isinstance(gpus[0], dict) else None
    return MeasuredRun(rid, hardware, devices, seconds, record["started_at"][:10], name)


def calibration_entry(req: Request, run: MeasuredRun, steps: int, rc: RunCalibration,
                      links_path: Path | None = None) -> Calibration:
    """The stored calibration of ``rc``, naming the run it came from."""
    spec = req.model
    return Calibration(
        hardware=req.hw.name, precision=req.training.get("precision") or "bf16",
        params=count_params(spec).total,
        shape=f"{spec.name} ({spec.num_layers} layers, d_model {spec.d_model}; {rc.layout})",
        seq_len=req.training["seq_len"], micro_batch_size=req.training["micro_batch_size"],
        measured_mfu=rc.measured_mfu, measured_hfu=rc.measured_hfu,
        predicted_mfu=rc.predicted_mfu, date=run.date,
        device_name=run.device_name or req.hw.name, model_version=PERF_MODEL_VERSION,
        kernels=rc.kernels, compute_scale=rc.compute_scale, links=links_used(req.hw.name, links_path),
        attention_kernel=req.training.get("attention_kernel") or "native",
        source=f"planner measure run {run.run_id}, {rc.devices} devices, {steps} steps in "
               f"{run.seconds:.1f} s")
