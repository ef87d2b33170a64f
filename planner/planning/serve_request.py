"""A serving request as given (`ServeRequest`, frozen) and resolved (`ServeQuestion`): specs
loaded, every default filled and listed with its source (no I/O beyond the catalog).

The CLI, the Python API (`serve(...)`), a scenario's `serving:` block and the published-row
checks each build one ServeRequest; `resolve_serve` is the one place its defaults are decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.catalog.catalog import load_hardware, load_model
from planner.catalog.regions import grid_factor
from planner.errors import InfeasibleError, SpecError
from planner.estimators.serving import KV_PRECISIONS, WEIGHT_PRECISIONS, ServePerf
from planner.planning import defaults
from planner.planning.outcome_chain import memory_defaults_for
from planner.planning.resolve import _validate, apply_shape
from planner.planning.serve_point import (
    DRAFT_COST_SOURCE, ENGINE_SOURCES, EngineSettings, Options,
)
from planner.results import Assumption
from planner.specs import Assumptions, HardwareProfile, ModelSpec
from planner.units import MAX_INT, MAX_RATE_PER_S, MAX_TOKENS_PER_DAY

DEFAULT_LENGTHS = (1000, 500)
# the most a load may be (the flags' bounds; a fleet past them would outgrow float precision)
MAX_LOAD = {"rate": MAX_RATE_PER_S, "tokens_per_day": MAX_TOKENS_PER_DAY, "concurrency": MAX_INT}
LENGTHS_SOURCE = ("planner default: a chat turn of 1,000 prompt and 500 generated tokens "
                  "(between TensorRT-LLM's published 1000/1000 and 500/2000 benchmark shapes)")


@dataclass(frozen=True)
class ServeRequest:
    """What `planner serve` is asked, as the user gave it; None is planner's default (each
    listed under Assumptions). ``assumptions`` holds the outcome-chain options (price_tier,
    price_usd_per_device_hour, pue, grid_g_co2e_per_kwh, power_fraction, ...)."""

    model: Any  # a preset name, YAML or HF config path, or a ModelSpec; None with shape flags
    hardware: tuple[str, ...] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    precision: str = "bf16"
    kv_precision: str | None = None
    load: tuple[str, float] | None = None  # (rate | tokens_per_day | concurrency, value)
    ttft_s: float | None = None  # target TTFT p50
    tpot_s: float | None = None  # target time per output token
    devices: int | None = None  # the best deployment on exactly this many
    tp: int | None = None  # layout pins (None: searched)
    pp: int | None = None
    ep: int | None = None
    max_batch: int | None = -1  # -1: the engine default; None: memory alone caps it
    region: str | None = None
    profiles_dirs: tuple[str, ...] = ()
    shape: dict = field(default_factory=dict)  # shape flags of a custom or changed model
    prefix_hit_rate: float | None = None  # stated option
    speculative: tuple[int, float] | None = None  # stated option: (draft tokens, acceptance)
    assumptions: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model, hardware, input_tokens=None, output_tokens=None, **options):
        """From keyword options as `serve(...)` takes them; keywords that are not fields
        are outcome-chain assumptions."""
        names = set(cls.__dataclass_fields__) - {"assumptions"}
        given = {k: v for k, v in options.items() if k in names}
        rest = {k: v for k, v in options.items() if k not in names}
        for k in ("shape",):
            given[k] = dict(given.get(k) or {})
        return cls(model, None if hardware is None else tuple(hardware), input_tokens,
                   output_tokens, assumptions=rest, **given)


@dataclass
class ServeQuestion:
    """A serving question, resolved: specs loaded, defaults filled and listed."""

    model: ModelSpec
    hardware: list[HardwareProfile]
    lengths: tuple[int, int]  # (input tokens, output tokens) per request
    precision: str
    kv_precision: str
    load: tuple[str, float] | None
    targets: tuple[float | None, float | None]  # (ttft p50 s, tpot s)
    devices: int | None
    tp: int | None
    pp: int | None
    engine: EngineSettings
    assumptions: Assumptions
    grid: Any
    notes: list[Assumption] = field(default_factory=list)
    perf: ServePerf = ServePerf()
    opts: Options = Options()
    ep: int | None = None  # --ep: expert-parallel groups per stage (None: searched)


def resolve_serve(req: ServeRequest) -> ServeQuestion:
    """Load the model and hardware and fill every default (each recorded in ``notes``).
    The prefix hit rate and speculative decoding are stated options, off unless given."""
    if req.precision not in WEIGHT_PRECISIONS:
        raise SpecError(f"--precision: '{req.precision}' is not a serving precision; use one "
                        f"of {', '.join(WEIGHT_PRECISIONS)}")
    notes: list[Assumption] = []
    spec = _model(req)
    hws = _hardware(req, notes)
    lengths = _lengths(req, spec, notes)
    if req.load is not None and not req.load[1] > 0:
        flag = "--" + req.load[0].replace("_", "-")
        raise SpecError(f"{flag}: {req.load[1]:g} is no load; give a value above 0 (or leave "
                        "it out to size one replica)")
    if req.load is not None and not req.load[1] <= MAX_LOAD[req.load[0]]:
        flag = "--" + req.load[0].replace("_", "-")
        raise SpecError(f"{flag}: {req.load[1]:g} is more than planner sizes; give at most "
                        f"{MAX_LOAD[req.load[0]]:g}")
    kv = _kv_precision(req, notes)
    user = _validate(Assumptions, {k: v for k, v in req.assumptions.items() if v is not None},
                     "assumptions")
    engine = _engine(req, user, notes)
    grid = grid_factor(req.region) if req.region else None
    opts = _options(req.prefix_hit_rate, req.speculative, notes)
    return ServeQuestion(spec, hws, lengths, req.precision, kv, req.load,
                         (req.ttft_s, req.tpot_s), req.devices, req.tp, req.pp, engine, user,
                         grid, notes, opts=opts, ep=req.ep)


def _model(req: ServeRequest) -> ModelSpec:
    if req.model is None and not any(req.shape.values()):
        raise SpecError("planner serve needs --model NAME (a preset, YAML file or HF "
                        "config.json) or the shape flags of a custom model")
    m = req.model
    spec = m if isinstance(m, ModelSpec) else (load_model(m) if m else None)
    return apply_shape(spec, req.shape)


def _hardware(req: ServeRequest, notes: list[Assumption]) -> list[HardwareProfile]:
    names = req.hardware
    if not names:
        name, note = defaults.default_hardware()
        names = (name,)
        notes.append(note)
    return [load_hardware(h, tuple(req.profiles_dirs)) for h in names]


def _lengths(req: ServeRequest, spec: ModelSpec, notes: list[Assumption]) -> tuple[int, int]:
    given = (req.input_tokens, req.output_tokens)
    for i, name in enumerate(("input_tokens", "output_tokens")):
        if given[i] is None:
            notes.append(default_note(name, DEFAULT_LENGTHS[i], "tokens", LENGTHS_SOURCE))
    inp, out = (DEFAULT_LENGTHS[i] if g is None else g for i, g in enumerate(given))
    if inp < 1 or out < 1:
        raise SpecError("--input-tokens and --output-tokens must be at least 1")
    if inp + out > spec.max_seq_len:
        raise InfeasibleError(
            f"--input-tokens {inp} + --output-tokens {out} = {inp + out:,} tokens exceeds "
            f"{spec.name}'s context of {spec.max_seq_len:,}; give at most "
            f"{spec.max_seq_len:,} in all (or a model file with a longer max_seq_len)")
    return inp, out


def _kv_precision(req: ServeRequest, notes: list[Assumption]) -> str:
    kv = req.kv_precision
    if kv is None:
        kv = "bf16" if req.precision in ("fp8", "int8", "int4", "fp4") else req.precision
        notes.append(default_note("kv_precision", kv, "", "engine default: KV cache in the "
                           "activation dtype (vLLM kv_cache_dtype='auto')"))
    if kv not in KV_PRECISIONS:
        raise SpecError(f"--kv-precision: '{kv}' is not one of {', '.join(KV_PRECISIONS)}")
    return kv


def _engine(req: ServeRequest, user: Assumptions, notes: list[Assumption]) -> EngineSettings:
    engine = EngineSettings(runtime_bytes=memory_defaults_for(user).runtime_overhead_bytes)
    if req.max_batch != -1:
        engine = EngineSettings(max_batch=req.max_batch, runtime_bytes=engine.runtime_bytes)
    for name, source in ENGINE_SOURCES.items():
        value = getattr(engine, name)
        notes.append(default_note(name, value, "", source)
                     if name != "max_batch" or req.max_batch == -1
                     else Assumption(name, value, "sequences", "set by user", False))
    return engine


def _options(hit: float | None, spec: tuple[int, float] | None,
             notes: list[Assumption]) -> Options:
    """The stated options, checked and listed (each is the user's)."""
    if hit is not None and not 0.0 <= hit < 1.0:
        raise SpecError(f"--prefix-hit-rate: {hit:g} is not a fraction in [0, 1); give e.g. 0.5")
    if spec is not None and (spec[0] < 1 or not 0.0 <= spec[1] <= 1.0):
        raise SpecError(f"--speculative: {spec[0]}:{spec[1]:g}: give K:ACCEPT with K >= 1 draft "
                        "tokens and an acceptance rate in [0, 1], e.g. 3:0.7")
    opts = Options(prefix_hit_rate=hit or 0.0, draft_tokens=spec[0] if spec else 0,
                   acceptance=spec[1] if spec else 0.0)
    if hit is not None:
        notes.append(Assumption("prefix_hit_rate", hit, "fraction of prompt tokens",
                                "set by user: those tokens skip prefill (their KV blocks "
                                "are still counted per sequence)", False))
    if spec is not None:
        notes.append(Assumption("speculative_draft_tokens", spec[0], "tokens", "set by user",
                                False))
        notes.append(Assumption("speculative_acceptance", spec[1], "per draft token",
                                "set by user; tokens per step (1 - a^(k+1)) / (1 - a), "
                                "Leviathan et al. 2023", False))
        notes.append(default_note("draft_cost", opts.draft_cost, "x target iteration per draft",
                           DRAFT_COST_SOURCE))
    return opts


def default_note(name: str, value, unit: str, source: str) -> Assumption:
    return Assumption(name=name, value=value, unit=unit, source=source, defaulted=True)
