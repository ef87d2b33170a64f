"""The Python API: load specs by name and run an estimate (the CLI is a thin layer over this).

    >>> import planner
    >>> est = planner.estimate_plan(model="llama3-70b", hardware="h100-sxm", devices=2048,
    ...                             tokens="15T", tp=8, pp=4)
    >>> round(est.time.wall_clock_days)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from planner.planning import defaults
from planner.catalog.catalog import load_hardware, load_model
from planner.catalog.regions import GridFactor, grid_factor
from planner.catalog.yamlio import format_validation_error
from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.planning.estimate import estimate
from planner.results import Assumption, Estimate
from planner.specs import (
    Assumptions, HardwareProfile, ModelSpec, ParallelismSpec, TrainingSpec,
)
from planner.specs.hardware import EfficiencyRange
from planner.units import parse_count

__all__ = ["Request", "apply_shape", "estimate", "estimate_plan", "load_hardware",
           "load_model", "resolve"]

# Shape flags -> ModelSpec fields (top level or in the moe block).
SHAPE_FIELDS = {
    "layers": "num_layers", "d_model": "d_model", "heads": "num_heads",
    "kv_heads": "num_kv_heads", "head_dim": "head_dim", "ffn_hidden": "ffn_hidden_size",
    "vocab": "vocab_size", "max_seq_len": "max_seq_len",
}
MOE_FIELDS = {"experts": "num_experts", "top_k": "experts_per_token",
              "expert_ffn_hidden": "expert_ffn_hidden_size"}
# Option names as the CLI spells them, for error messages.
FLAG = {"tokens": "--tokens", "seq_len": "--seq-len", "global_batch_size": "--global-batch",
        "micro_batch_size": "--micro-batch", "devices": "--devices", "zero_stage": "--zero"}


def _validate(cls, data: dict, where: str):
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(e, where)
        for field, flag in FLAG.items():
            msg = msg.replace(f"{where}: {field}:", f"{flag}:")
        raise SpecError(msg) from None


def apply_shape(base: ModelSpec | None, shape: dict[str, Any]) -> ModelSpec:
    """A model with some shape fields replaced (or a Llama-style custom model from scratch)."""
    shape = {k: v for k, v in shape.items() if v is not None}
    if base is not None and not shape:
        return base
    data = base.model_dump() if base else {
        "name": "custom", "ffn_type": "gated", "norm_type": "rmsnorm", "max_seq_len": 8192}
    if base:
        data["name"] = f"{base.name}-custom"
    for flag, field in SHAPE_FIELDS.items():
        if flag in shape:
            data[field] = shape[flag]
    moe = {MOE_FIELDS[k]: v for k, v in shape.items() if k in MOE_FIELDS}
    if moe:
        data["moe"] = {**(data.get("moe") or {}), **moe}
        data["moe"].setdefault("expert_ffn_hidden_size", data.get("ffn_hidden_size"))
    if base is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("layers", "d_model", "heads",
                                                        "ffn_hidden", "vocab")
                   if k not in shape]
        if missing:
            raise SpecError(f"a custom model needs {', '.join(missing)} (or --model NAME)")
    return _validate(ModelSpec, data, "model")


@dataclass
class Request:
    """Inputs resolved from names and plain values; layout and batch may still be open."""

    model: ModelSpec
    hw: HardwareProfile
    tokens: float
    training: dict[str, Any]  # TrainingSpec fields given (seq_len always filled)
    parallel: dict[str, Any]  # ParallelismSpec fields given (never devices)
    assumptions: Assumptions
    grid: GridFactor | None
    notes: list[Assumption] = field(default_factory=list)


def resolve(
    model: str | ModelSpec | None = None,
    hardware: str | None = None,
    tokens: float | str | None = None,
    region: str | None = None,
    profiles_dirs: tuple[str, ...] = (),
    shape: dict[str, Any] | None = None,
    **options: Any,
) -> Request:
    """Load the model and hardware and fill the defaults that do not depend on the layout."""
    notes: list[Assumption] = []
    spec = model if isinstance(model, ModelSpec) else (load_model(model) if model else None)
    spec = apply_shape(spec, shape or {})
    if hardware is None:
        hardware, note = defaults.default_hardware()
        notes.append(note)
    hw = load_hardware(hardware, tuple(profiles_dirs))
    if tokens is None:
        tokens, note = defaults.default_tokens(count_params(spec).total)
        notes.append(note)
    else:
        tokens = _count(tokens)
    split = _split_options(options)
    if split["training"].get("seq_len") is None:
        split["training"]["seq_len"], note = defaults.default_seq_len(spec.max_seq_len)
        notes.append(note)
    assumptions = _validate(Assumptions, split["assumptions"], "assumptions")
    grid = grid_factor(region) if region else None
    return Request(spec, hw, tokens, split["training"], split["parallel"], assumptions, grid,
                   notes)


def estimate_plan(
    model: str | ModelSpec | None = None,
    hardware: str | None = None,
    devices: int | None = None,
    tokens: float | str | None = None,
    region: str | None = None,
    profiles_dirs: tuple[str, ...] = (),
    shape: dict[str, Any] | None = None,
    use_calibration: bool = True,
    **options: Any,
) -> Estimate:
    """Estimate a plan from names and plain values, filling and recording every default.

    ``options`` are TrainingSpec / ParallelismSpec fields (seq_len, global_batch_size, tp,
    pp, zero_stage, recompute, ...) and Assumptions fields (pue, price_tier, efficiency, ...).
    """
    notes: list[Assumption] = []
    if model is None and not any((shape or {}).values()):
        notes.append(defaults.builtin_plan_note())
        plan = defaults.BUILTIN_PLAN
        model, hardware = plan["model"], hardware or plan["hardware"]
        devices = devices or plan["devices"]
        tokens = tokens or plan["tokens"]
        for key, value in (("seq_len", plan["seq_len"]), ("global_batch_size",
                           plan["global_batch"]), ("zero_stage", int(plan["zero"]))):
            if options.get(key) is None:
                options[key] = value
    req = resolve(model, hardware, tokens, region, profiles_dirs, shape, **options)
    notes += req.notes
    if devices is None:
        devices, note = defaults.default_devices(int(req.hw.devices_per_node.value))
        notes.append(note)
    par = _validate(ParallelismSpec, {"devices": devices, **req.parallel}, "layout")
    train = dict(req.training)
    if train.get("global_batch_size") is None:
        train["global_batch_size"], note = defaults.default_global_batch(
            train["seq_len"], par.dp, train.get("micro_batch_size") or 1)
        notes.append(note)
    training = _validate(TrainingSpec, {"tokens": req.tokens, **train}, "training")
    assumptions = apply_calibration(req, training) if use_calibration else req.assumptions
    return estimate(req.model, req.hw, training, par, assumptions, req.grid, tuple(notes))


def apply_calibration(req: Request, training: TrainingSpec) -> Assumptions:
    """The user's assumptions, with a stored calibration for this hardware as the efficiency
    when the user gave none (see `planner validate --calibrate`); only calibrations of a
    model within 10x of this one's size are used."""
    if req.assumptions.efficiency is not None:
        return req.assumptions
    from planner.profiling.calibration import lookup

    cal = lookup(req.hw.name, training.precision, count_params(req.model).total)
    if cal is None:
        return req.assumptions
    prof = req.hw.efficiency
    eff = {"low": min(cal.measured_hfu, cal.measured_hfu * prof.low / prof.expected),
           "expected": cal.measured_hfu,
           "high": min(1.0, cal.measured_hfu * prof.high / prof.expected),
           "source": cal.describe()}
    return req.assumptions.model_copy(update={"efficiency": EfficiencyRange(**eff)})


def _count(value: float | str) -> float:
    try:
        return parse_count(value, "--tokens")
    except ValueError as e:
        raise SpecError(str(e)) from None


def _split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"training": {}, "parallel": {}, "assumptions": {}}
    targets = (("training", TrainingSpec), ("parallel", ParallelismSpec),
               ("assumptions", Assumptions))
    for key, value in options.items():
        for name, cls in targets:
            if key in cls.model_fields:
                if value is not None:
                    out[name][key] = value
                break
        else:
            raise TypeError(f"unknown option '{key}'")
    return out
