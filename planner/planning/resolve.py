"""The one resolver: a question's names and plain values -> specs, with every default filled
and recorded. Each command (estimate, plan, compare, run, budget, backtest) asks it, so the same
inputs mean the same job everywhere.

    >>> req = resolve("llama3-70b", "h100-sxm", "15T", seq_len=8192)
    >>> req.tokens, req.training["seq_len"], [n.name for n in req.notes]

What it cannot fill alone are the layout's degrees and the batch rounding: those are answered by
`sizing.answer` (a search) or, when every degree is given, by the layout itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from planner.catalog.catalog import load_hardware, load_model
from planner.catalog.regions import GridFactor, grid_factor
from planner.catalog.yamlio import format_validation_error
from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.planning import defaults, finetune
from planner.planning.applied_calibration import apply_calibration
from planner.results import Assumption
from planner.specs import (
    Assumptions, HardwareProfile, ModelSpec, ParallelismSpec, TrainingSpec,
)
from planner.estimators.model_state import grad_dtype_error
from planner.specs.training import attention_kernel_error
from planner.units import parse_count
from planner.estimators.step_time import DEFAULT_PERF, PerfParams, attention_kernel_fraction
from planner.vocab import (
    ATTENTION_KERNELS, DEGREE_FLAGS, FRAMEWORKS, GRAD_DTYPES, LAYOUT_FLAGS, OPTIMIZERS,
    PRECISIONS, REFINED_FLAGS,
)

__all__ = ["Request", "apply_shape", "resolve", "spec_error"]

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
        "devices": "--devices", **LAYOUT_FLAGS}


def spec_error(e: ValidationError, where: str) -> SpecError:
    """A pydantic error as one line, naming the CLI flag where the field has one."""
    msg = format_validation_error(e, where)
    for name, flag in FLAG.items():
        msg = msg.replace(f"{where}: {name}:", f"{flag}:")
    # the layout's cross-field rules name the flags themselves (specs/training.py)
    return SpecError(msg.replace(f"{where}: --", "--"))


# Validated specs by their input, when every value is a plain str, int, float, bool or None
# (the type is part of the key: True == 1 in Python, but a spec refuses true for a number).
_FLAT = frozenset((str, int, float, bool, type(None)))
_VALIDATED: dict = {}


def _validate(cls, data: dict, where: str):
    """``cls`` validated from ``data``. Identical plain inputs (the API called again, a sweep
    over other options) share one spec: specs are frozen, so sharing is safe, and the caches
    keyed on a spec downstream then find it by identity instead of hashing and comparing its
    fields."""
    values = data.values()
    key = (cls, frozenset(zip(data, map(type, values), values))) if _FLAT.issuperset(
        map(type, values)) else None
    spec = _VALIDATED.get(key) if key is not None else None
    if spec is not None:
        return spec
    try:
        spec = cls.model_validate(data)
    except ValidationError as e:
        raise spec_error(e, where) from None
    if key is not None:
        if len(_VALIDATED) >= 512:
            _VALIDATED.clear()
        _VALIDATED[key] = spec
    return spec


def apply_shape(base: ModelSpec | None, shape: dict[str, Any]) -> ModelSpec:
    """A model with some shape fields replaced (or a Llama-style custom model from scratch)."""
    shape = {k: v for k, v in shape.items() if v is not None}
    if base is not None and not shape:
        return base
    data = base.model_dump() if base else {
        "name": "custom", "ffn_type": "gated", "norm_type": "rmsnorm", "max_seq_len": 8192}
    if base:
        data["name"] = f"{base.name}-custom"
    for flag, name in SHAPE_FIELDS.items():
        if flag in shape:
            data[name] = shape[flag]
    moe = {MOE_FIELDS[k]: v for k, v in shape.items() if k in MOE_FIELDS}
    if moe:
        if "num_experts" not in moe and not data.get("moe"):
            given = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in shape.items()
                              if k in MOE_FIELDS)
            raise SpecError(f"{given}: {data['name']} is a dense model; add --experts N to make "
                            "it a mixture of experts")
        data["moe"] = {**(data.get("moe") or {}), **moe}
        data["moe"].setdefault("expert_ffn_hidden_size", data.get("ffn_hidden_size"))
    if base is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("layers", "d_model", "heads",
                                                        "ffn_hidden", "vocab")
                   if k not in shape]
        if missing:
            raise SpecError(f"a custom model needs {', '.join(missing)} (or --model NAME)")
    return _validate(ModelSpec, data, "model")


_DEGREES = frozenset(DEGREE_FLAGS)


@dataclass
class Request:
    """A question's inputs, resolved: specs loaded, defaults filled and listed in ``notes``.

    ``training`` holds the TrainingSpec fields given or defaulted (``seq_len`` and
    ``global_batch_size`` always; the batch is the rule's target when ``batch_given`` is
    False, and a layout rounds it). ``parallel`` holds the layout fields the user gave: the
    degrees a search must keep (DEGREE_FLAGS) and the switches (schedule, sequence parallel).
    ``perf`` holds the performance model's constants, corrected by a stored calibration when
    one applies (see apply_calibration).
    """

    model: ModelSpec
    hw: HardwareProfile
    tokens: float
    training: dict[str, Any]
    parallel: dict[str, Any]
    assumptions: Assumptions
    grid: GridFactor | None
    notes: list[Assumption] = field(default_factory=list)
    batch_given: bool = True
    perf: PerfParams = DEFAULT_PERF  # the performance model's constants (a calibration's)

    def fixed_degrees(self) -> dict[str, Any]:
        """The layout degrees the user gave, by their one name (vocab.DEGREE_FLAGS)."""
        given = {**self.parallel, **self.training}
        fixed = {k: given[k] for k in DEGREE_FLAGS if given.get(k) is not None}
        if not self.model.is_moe:
            fixed.setdefault("ep", 1)
        schedule = self.parallel.get("pipeline_schedule")
        if schedule in ("1f1b", "gpipe") or fixed.get("pp") == 1:
            fixed.setdefault("virtual_stages", 1)
        for k in REFINED_FLAGS:
            if given.get(k) is not None:
                fixed[k] = given[k]
        return fixed

    def refined_open(self, fixed: dict[str, Any], devices: int) -> bool:
        """Whether a complete layout (``fixed``) leaves a refined degree open that changes
        the answer: the ZeRO shard group (HSDP) with ZeRO >= 1 over dp > 1, resharding after
        forward with ZeRO-3. The search chooses them, as it chooses any degree not given; a
        run described by its layout (calibrate, measure) takes the frameworks' defaults
        instead: shard across all of dp, reshard after forward."""
        mp = fixed["tp"] * fixed["pp"] * fixed["cp"]
        if fixed["zero_stage"] < 1 or devices % mp or devices // mp < 2:
            return False
        return "dp_shard" not in fixed or \
            (fixed["zero_stage"] == 3 and "reshard_after_forward" not in fixed)

    def given_degrees(self) -> dict[str, Any]:
        """The degrees the user gave (fixed_degrees less the ones implied)."""
        given = {**self.parallel, **self.training}
        return {k: v for k, v in self.fixed_degrees().items()
                if k in given and given[k] is not None}

    def layout_complete(self, fixed: dict[str, Any] | None = None) -> bool:
        """Whether every degree is given, so no search is needed (``fixed``: this request's
        fixed_degrees(), when the caller has them)."""
        return (self.fixed_degrees() if fixed is None else fixed).keys() >= _DEGREES


def resolve(
    model: str | ModelSpec | None = None,
    hardware: str | None = None,
    tokens: float | str | None = None,
    region: str | None = None,
    profiles_dirs: tuple[str, ...] = (),
    shape: dict[str, Any] | None = None,
    use_calibration: bool = True,
    **options: Any,
) -> Request:
    """Load the model and hardware and fill every default that does not depend on the layout.

    ``options`` are TrainingSpec / ParallelismSpec fields (seq_len, global_batch_size, tp,
    zero_stage, recompute, ...) and Assumptions fields (pue, price_tier, efficiency, ...).
    With no model and no shape, the built-in plan (`defaults.BUILTIN_PLAN`) fills the rest.
    """
    notes: list[Assumption] = []
    ft_opts = finetune.pop_finetune(options)
    if model is None and not any((shape or {}).values()):
        notes.append(defaults.builtin_plan_note())
        plan = defaults.BUILTIN_PLAN
        model, hardware = plan["model"], hardware or plan["hardware"]
        tokens = tokens or plan["tokens"]
        region = region or plan["region"]
        for key in ("devices", "seq_len", "global_batch_size"):
            if options.get(key) is None:
                options[key] = plan[key]
    spec = model if isinstance(model, ModelSpec) else (load_model(model) if model else None)
    spec = apply_shape(spec, shape or {})
    if hardware is None:
        hardware, note = defaults.default_hardware()
        notes.append(note)
    hw = load_hardware(hardware, tuple(profiles_dirs))
    params = count_params(spec).total
    ft = finetune.finetune_spec(ft_opts)
    if ft is not None:
        finetune.check_layers(ft, spec)
    if tokens is None and ft is None:
        tokens, note = defaults.default_tokens(params)
        notes.append(note)
    elif tokens is not None:
        tokens = _count(tokens)
    split = _split_options(options)
    train = split["training"]
    if ft is not None:  # a fine-tune's own defaults, and its dataset in tokens
        notes += finetune.finetune_defaults(ft, train, spec.max_seq_len)
        data = finetune.data_options(ft_opts)
        tokens, more = finetune.dataset_tokens(tokens, data.pop("samples", None),
                                               data.pop("epochs", None), train["seq_len"],
                                               **data)
        notes += more + finetune.recipe_notes(ft)
    if train.get("seq_len") is None:
        train["seq_len"], note = defaults.default_seq_len(spec.max_seq_len)
        notes.append(note)
    if ft is None and finetune.data_options(ft_opts):
        data = finetune.data_options(ft_opts)
        tokens, more = finetune.dataset_tokens(None if "samples" in ft_opts else tokens,
                                               data.pop("samples", None),
                                               data.pop("epochs", None), train["seq_len"],
                                               **data)
        notes += more
    batch_given = train.get("global_batch_size") is not None
    if not batch_given:
        train["global_batch_size"], note = defaults.default_global_batch(params, train["seq_len"])
        notes.append(note)
    assumptions = _validate(Assumptions, split["assumptions"], "assumptions")
    schedule = split["parallel"].get("pipeline_schedule")
    v = split["parallel"].get("virtual_stages")
    if schedule in ("1f1b", "gpipe") and v is not None and v > 1:  # never silently interleaved
        raise SpecError(f"--virtual-stages {v} needs --pipeline-schedule interleaved, not "
                        f"{schedule} (virtual_stages, pipeline_schedule in the Python API)")
    check_grad_dtype(train, split["parallel"])
    check_attention_kernel(train, hw)
    grid = grid_factor(region) if region else None
    req = Request(spec, hw, tokens, train, split["parallel"], assumptions, grid, notes,
                  batch_given)
    if use_calibration:
        req.perf, more = apply_calibration(req)
        req.notes.extend(more)
    return req


def check_grad_dtype(training: dict[str, Any], parallel: dict[str, Any]) -> None:
    """Refuse a --grad-dtype the recipe and framework cannot have (one line), before any
    layout: `planner measure` checks its flags so before the command runs. Names that are
    not in the vocabularies are left to the specs' own one-line errors."""
    grad = training.get("grad_dtype")
    fields = TrainingSpec.model_fields
    opt = training.get("optimizer", fields["optimizer"].default)
    prec = training.get("precision", fields["precision"].default)
    framework = parallel.get("framework") or "generic"
    if grad is None or grad not in GRAD_DTYPES or opt not in OPTIMIZERS or \
            prec not in PRECISIONS or framework not in FRAMEWORKS:
        return
    why = grad_dtype_error(opt, prec, FRAMEWORKS.index(framework), grad)
    if why:
        raise SpecError(why)


def check_attention_kernel(training: dict[str, Any], hw: HardwareProfile | None) -> None:
    """Refuse a fused attention kernel with unfused attention, or one the profile has no
    figure for (one line), before any layout (`planner measure` checks so before the
    command runs; without a profile, the first only)."""
    kernel = training.get("attention_kernel")
    why = attention_kernel_error(kernel, training.get("flash_attention"))
    if why:
        raise SpecError(why)
    if kernel in ATTENTION_KERNELS and hw is not None:
        attention_kernel_fraction(hw, kernel)


def devices_of(req: Request) -> tuple[int, list[Assumption]]:
    """The device count: given, the built-in plan's, or one node (recorded)."""
    n = req.parallel.pop("devices", None)
    if n is not None:
        return n, []
    n, note = defaults.default_devices(int(req.hw.devices_per_node.value))
    return n, [note]


def training_spec(req: Request, **update: Any) -> TrainingSpec:
    """The TrainingSpec of a request (with the layout's micro-batch, recompute, batch)."""
    return _validate(TrainingSpec, {"tokens": req.tokens, **req.training, **update}, "training")


def parallelism_spec(req: Request, devices: int, **update: Any) -> ParallelismSpec:
    par = {k: v for k, v in req.parallel.items() if k != "devices"}
    return _validate(ParallelismSpec, {"devices": devices, **par, **update}, "layout")


def _count(value: float | str) -> float:
    try:
        return parse_count(value, "--tokens")
    except ValueError as e:
        raise SpecError(str(e)) from None


_TRAINING_ONLY = set(TrainingSpec.model_fields) - {"tokens"}


# option name -> the spec it belongs to (training first, as a name in two specs goes there)
_TARGET = {**{k: "assumptions" for k in Assumptions.model_fields},
           **{k: "parallel" for k in ParallelismSpec.model_fields},
           **{k: "training" for k in _TRAINING_ONLY}}


def _split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"training": {}, "parallel": {}, "assumptions": {}}
    for key, value in options.items():
        name = _TARGET.get(key)
        if name is None:
            raise TypeError(f"unknown option '{key}'")
        if value is not None:
            out[name][key] = value
    return out
