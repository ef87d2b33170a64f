"""Typed results. ``Estimate.to_dict()`` is the stable JSON output contract.

Plain frozen dataclasses (not pydantic): results are built by our own code, never parsed
from user input, and dataclasses keep `planner estimate`'s start-up fast. They are declared
with `@frozen` (below), which behaves as ``@dataclass(frozen=True)`` without compiling code
per class at import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, FrozenInstanceError, dataclass
from operator import itemgetter
from typing import Any

try:
    from typing import dataclass_transform
except ImportError:  # Python 3.10: type checkers read the stub; at run time it does nothing
    def dataclass_transform(**_kwargs):
        return lambda f: f


class Result:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


# `@frozen`: ``@dataclass(frozen=True)``'s behaviour (fields(), asdict, replace, the keyword
# or positional __init__ with defaults, field-by-field ==, hash and repr, FrozenInstanceError
# on assignment) from shared methods. ``dataclass`` compiles six methods per class with exec,
# ~1 ms a class here, and a cold `planner estimate` creates ~35 of them; these methods read
# the field names the decorator stores on the class. The instance dict is the __init__'s
# keyword dict itself (defaults merged in when some are left out), so construction costs no
# more than the generated __init__, whose object.__setattr__ per field it replaces.
def _init(self, *args, **kwargs):
    cls = self.__class__
    if args:
        kwargs = _bind(cls, args, kwargs)
    if len(kwargs) != cls.__frozen_count__:
        kwargs = {**cls.__frozen_defaults__, **kwargs}
    if kwargs.keys() != cls.__frozen_nameset__:
        _bad_arguments(cls, kwargs)
    object.__setattr__(self, "__dict__", kwargs)


def _bind(cls, args: tuple, kwargs: dict) -> dict:
    names = cls.__frozen_names__
    if len(args) > len(names):
        raise TypeError(f"{cls.__qualname__}.__init__() takes {len(names) + 1} positional "
                        f"arguments but {len(args) + 1} were given")
    for name in names[:len(args)]:
        if name in kwargs:
            raise TypeError(f"{cls.__qualname__}.__init__() got multiple values for "
                            f"argument '{name}'")
    return {**dict(zip(names, args)), **kwargs}


def _bad_arguments(cls, given: dict):
    names = cls.__frozen_names__
    unknown = [k for k in given if k not in cls.__frozen_nameset__]
    if unknown:
        raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument "
                        f"'{unknown[0]}'")
    missing = [f"'{n}'" for n in names if n not in given]
    listed = (missing[0] if len(missing) == 1 else
              ", ".join(missing[:-1]) + (", and " if len(missing) > 2 else " and ") + missing[-1])
    raise TypeError(f"{cls.__qualname__}.__init__() missing {len(missing)} required "
                    f"positional argument{'s' if len(missing) > 1 else ''}: {listed}")


def _repr(self) -> str:
    d = self.__dict__
    return (f"{self.__class__.__qualname__}("
            f"{', '.join(f'{n}={d[n]!r}' for n in self.__frozen_names__)})")


def _eq(self, other):
    if other.__class__ is self.__class__:
        return self.__frozen_values__(self.__dict__) == self.__frozen_values__(other.__dict__)
    return NotImplemented


def _hash(self) -> int:
    return hash(self.__frozen_values__(self.__dict__))


def _setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class _Signature:
    """The class's signature as dataclass's generated __init__ gives it (help(), inspect,
    IDEs), built on first use."""

    def __get__(self, obj, cls):
        import inspect

        p = inspect.Parameter
        return inspect.Signature(
            [p(f.name, p.POSITIONAL_OR_KEYWORD, annotation=f.type,
               default=p.empty if f.default is MISSING else f.default)
             for f in dataclasses.fields(cls)], return_annotation=None)


_METHODS = {"__signature__": _Signature(), "__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash,
            "__setattr__": _setattr, "__delattr__": _delattr}


@dataclass_transform(frozen_default=True)
def frozen(cls):
    """``@dataclass(frozen=True)`` for a class of plain fields (defaults allowed; no
    ``field()`` options, no __post_init__), without code generated per class."""
    doc = cls.__dict__.get("__doc__")
    cls.__doc__ = doc or "-"  # dataclass would build one from inspect.signature: below
    cls = dataclass(init=False, repr=False, eq=False)(cls)
    fields = dataclasses.fields(cls)
    for f in fields:
        if (f.default_factory is not MISSING or not f.init or not f.repr or not f.compare
                or f.hash is not None or f.kw_only):
            raise TypeError(f"@frozen: {cls.__qualname__}.{f.name} uses field() options")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"@frozen: {cls.__qualname__} has __post_init__")
    names = tuple(f.name for f in fields)
    cls.__frozen_names__ = names
    cls.__frozen_count__ = len(names)
    cls.__frozen_nameset__ = frozenset(names)
    cls.__frozen_defaults__ = {f.name: f.default for f in fields if f.default is not MISSING}
    cls.__frozen_values__ = staticmethod(  # the field values as a tuple, in field order
        itemgetter(*names) if len(names) > 1 else lambda d: tuple(d[n] for n in names))
    for name, method in _METHODS.items():
        if name not in cls.__dict__:
            setattr(cls, name, method)
    if not doc:  # as dataclass writes it: "Name(field: 'type', other: 'type' = default)"
        cls.__doc__ = cls.__name__ + "(" + ", ".join(
            f"{f.name}: {f.type!r}" + ("" if f.default is MISSING else f" = {f.default!r}")
            for f in fields) + ")"
    return cls


@frozen
class Assumption(Result):
    """One input the numbers depend on, with where its value came from."""

    name: str
    value: float | str | None
    unit: str
    source: str
    defaulted: bool  # True when the planner filled it in (the user did not set it)


@frozen
class ModelSummary(Result):
    name: str
    params_total: int
    params_active: int
    matmul_params_active: int
    num_layers: int
    d_model: int
    attention: str
    moe: bool
    source_url: str | None
    # fine-tuning: what trains and what is frozen (None when every weight trains from scratch)
    finetune: str | None = None  # e.g. "lora r16 on q_proj,v_proj"
    params_trainable: int | None = None  # peft's "trainable params"
    params_frozen: int | None = None  # base parameters that do not train


@frozen
class HardwareSummary(Result):
    name: str
    display_name: str
    precision: str
    peak_tflops: float
    memory_bytes: float
    validation: str = "scaled"  # measured | published runs | scaled (from published figures)


@frozen
class Layout(Result):
    devices: int
    dp: int
    tp: int
    pp: int
    cp: int
    ep: int
    zero_stage: int
    sequence_parallel: bool
    pipeline_schedule: str
    micro_batch_size: int
    global_batch_size: int
    num_micro_batches: int
    seq_len: int
    recompute: str
    dp_shard: int = 0  # ZeRO/FSDP shard group within dp (= dp unless HSDP); 0 when not set
    reshard_after_forward: bool = True
    tp_comm_overlap: bool = False
    dp_comm_overlap: bool = True
    framework: str = "generic"
    offload: str = "none"
    dropout: bool = False
    kernels: str = "fused"  # fused or eager elementwise kernels (vocab.KERNELS)
    grad_dtype: str = "bf16"  # gradients accumulate and reduce in it (given or the framework's)
    adapter_grad_dtype: str | None = None  # LoRA/QLoRA: the adapters' gradients (their dtype)
    base_grads: bool = True  # any of the model's own weights train (LoRA: only its biases)
    attention_kernel: str = "native"  # the fused attention kernel (vocab.ATTENTION_KERNELS)
    virtual_stages: int = 1  # model chunks per pipeline rank (interleaving depth v)


@frozen
class Flops(Result):
    per_token: float  # model FLOPs (fwd + bwd, no recompute) per token
    total: float
    hardware_per_token: float  # with recomputation
    hardware_total: float
    inference_per_token: float  # forward only, at seq_len context
    attention_fraction: float  # share of model FLOPs in QK^T and AV
    convention: str


@frozen
class Memory(Result):
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    logits_bytes: float
    fsdp_buffer_bytes: float
    runtime_overhead_bytes: float
    fragmentation_bytes: float
    total_bytes: float
    capacity_bytes: float
    headroom_bytes: float
    fits: bool
    stage: str
    in_flight_micro_batches: int
    dequant_workspace_bytes: float = 0.0  # QLoRA: one weight dequantised at a time


@frozen
class Throughput(Result):
    tflops_per_device: float  # executed (hardware) FLOP/s achieved, in TFLOP/s
    model_tflops_per_device: float
    mfu: float
    hfu: float
    tokens_per_s_per_device: float
    tokens_per_s: float


@frozen
class StepBreakdown(Result):
    """Seconds per optimizer step by component, from the performance model."""

    method: str  # what set the time: "performance model" or "flat efficiency"
    step_time_s: float  # the performance model's step (before goodput)
    compute_s: float
    tp_comm_s: float
    cp_comm_s: float
    ep_comm_s: float
    pp_comm_s: float
    bubble_s: float
    dp_comm_s: float
    optimizer_s: float
    gemm_efficiency: float  # achieved fraction of peak for the layout's GEMM shapes
    predicted_mfu: float
    predicted_hfu: float
    overlapped_comm_s: float = 0.0  # communication hidden under compute, charged as free


@frozen
class Time(Result):
    wall_clock_days: float
    wall_clock_hours: float
    device_hours: float
    compute_hours: float  # wall-clock without goodput losses
    goodput: float
    steps: float
    step_time_s: float


@frozen
class Cost(Result):
    total_usd: float
    usd_per_device_hour: float
    tier: str
    provider: str


@frozen
class Energy(Result):
    kwh: float  # energy in `scope` (facility by default: server x PUE)
    it_kwh: float  # server scope: accelerators + hosts, before PUE
    power_per_device_w: float  # W per device in `scope`, before PUE
    pue: float
    scope: str = "facility"  # accelerator | server | facility (docs/assumptions.md)
    accelerator_kwh: float | None = None  # the accelerators alone (TDP x measured fraction)
    facility_kwh: float | None = None  # server x PUE: what a provider meters


@frozen
class Reliability(Result):
    """The goodput model's expected case: checkpoints, interruptions, restarts, stalls."""

    checkpoint_bytes: float  # what trains: its weights + optimizer state, one copy
    checkpoint_write_s: float  # bytes / storage bandwidth: the stall per checkpoint
    storage_gb_per_s: float  # aggregate write bandwidth
    checkpoint_interval_s: float  # Young/Daly optimum
    interruptions_per_device_hour: float
    mean_time_between_interruptions_h: float  # for the whole job
    restart_s: float  # from interruption to training again
    interruptions: float  # expected over the run
    model_goodput: float  # what the failure model gives (interruptions and checkpoints)
    stall_fraction: float  # the expected share of wall clock lost outside failures
    stall_range: list[float]  # [best, worst] case shares (equal when the user set one)
    goodput: float  # model_goodput x (1 - stall_fraction): the goodput model's (the user may
    # fix goodput with --goodput; then Time.goodput is the user's)


@frozen
class Carbon(Result):
    kg_co2e: float  # operational, location-based
    grid_g_co2e_per_kwh: float
    pue: float
    region: str
    embodied_kg_co2e: float | None  # amortised manufacturing carbon, reported separately
    scope: str = "facility"  # the energy scope it counts (Energy.scope)


@frozen
class Outcome(Result):
    """Time, cost, energy and carbon for one efficiency/goodput case."""

    efficiency: float
    goodput: float
    wall_clock_days: float
    device_hours: float
    cost_usd: float
    energy_kwh: float
    kg_co2e: float


@frozen
class Range(Result):
    low: Outcome  # optimistic: high efficiency and goodput
    expected: Outcome
    high: Outcome  # pessimistic: low efficiency and goodput


@frozen
class QuantityRanges(Result):
    """Best / expected / worst of the per-step quantities (the range's efficiency cases)."""

    mfu: list[float]  # [best, expected, worst] model FLOPs utilisation
    step_time_s: list[float]  # [best, expected, worst]
    memory_bytes: list[float]  # [low, expected, high] per device
    memory_source: str


@frozen
class LayoutChoice(Result):
    """How the layout was decided: which degrees the user gave and which a search chose."""

    given: dict[str, Any]  # degree -> value the user fixed
    chosen: list[str]  # degrees the search chose
    question: str  # e.g. "the best layout on 64 devices"
    objective: str  # what ranked the layouts: time, cost or carbon
    searched: int  # layouts enumerated
    fitting: int  # layouts that fit in memory and answered the question
    alternatives: list[dict[str, Any]]  # the next-best layouts (on request)


@frozen
class Estimate(Result):
    model: ModelSummary
    hardware: HardwareSummary
    tokens: float  # training tokens D
    layout: Layout
    flops: Flops
    memory_per_device: Memory
    throughput: Throughput
    step: StepBreakdown
    time: Time
    cost: Cost
    energy: Energy
    carbon: Carbon
    range: Range
    assumptions: list[Assumption]
    warnings: list[str]
    layout_choice: LayoutChoice | None = None  # None: every degree was given
    reliability: Reliability | None = None  # checkpoints and interruptions (expected case)
    ranges: QuantityRanges | None = None  # MFU, step time and memory, low to high
