"""Typed results. ``Estimate.to_dict()`` is the stable JSON output contract.

Plain frozen dataclasses (not pydantic): results are built by our own code, never parsed
from user input, and dataclasses keep `planner estimate`'s start-up fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Result:
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Assumption(Result):
    """One input the numbers depend on, with where its value came from."""

    name: str
    value: float | str | None
    unit: str
    source: str
    defaulted: bool  # True when the planner filled it in (the user did not set it)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class HardwareSummary(Result):
    name: str
    display_name: str
    precision: str
    peak_tflops: float
    memory_bytes: float
    validation: str = "scaled"  # measured | published runs | scaled (from published figures)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Flops(Result):
    per_token: float  # model FLOPs (fwd + bwd, no recompute) per token
    total: float
    hardware_per_token: float  # with recomputation
    hardware_total: float
    inference_per_token: float  # forward only, at seq_len context
    attention_fraction: float  # share of model FLOPs in QK^T and AV
    convention: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Throughput(Result):
    tflops_per_device: float  # executed (hardware) FLOP/s achieved, in TFLOP/s
    model_tflops_per_device: float
    mfu: float
    hfu: float
    tokens_per_s_per_device: float
    tokens_per_s: float


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Time(Result):
    wall_clock_days: float
    wall_clock_hours: float
    device_hours: float
    compute_hours: float  # wall-clock without goodput losses
    goodput: float
    steps: float
    step_time_s: float


@dataclass(frozen=True)
class Cost(Result):
    total_usd: float
    usd_per_device_hour: float
    tier: str
    provider: str


@dataclass(frozen=True)
class Energy(Result):
    kwh: float  # energy in `scope` (facility by default: server x PUE)
    it_kwh: float  # server scope: accelerators + hosts, before PUE
    power_per_device_w: float  # W per device in `scope`, before PUE
    pue: float
    scope: str = "facility"  # accelerator | server | facility (docs/assumptions.md)
    accelerator_kwh: float | None = None  # the accelerators alone (TDP x measured fraction)
    facility_kwh: float | None = None  # server x PUE: what a provider meters


@dataclass(frozen=True)
class Reliability(Result):
    """The goodput model's expected case: checkpoints, interruptions, restarts, stalls."""

    checkpoint_bytes: float  # weights + optimizer state, one copy
    checkpoint_write_s: float  # bytes / storage bandwidth: the stall per checkpoint
    storage_gb_per_s: float  # aggregate write bandwidth
    checkpoint_interval_s: float  # Young/Daly optimum
    interruptions_per_device_hour: float
    mean_time_between_interruptions_h: float  # for the whole job
    restart_s: float  # from interruption to training again
    interruptions: float  # expected over the run
    model_goodput: float  # what the failure model gives (interruptions and checkpoints)
    stall_fraction: float  # the expected share of wall clock lost outside failures
    goodput: float  # model_goodput x (1 - stall_fraction): the goodput model's (the user may
    # fix goodput with --goodput; then Time.goodput is the user's)


@dataclass(frozen=True)
class Carbon(Result):
    kg_co2e: float  # operational, location-based
    grid_g_co2e_per_kwh: float
    pue: float
    region: str
    embodied_kg_co2e: float | None  # amortised manufacturing carbon, reported separately
    scope: str = "facility"  # the energy scope it counts (Energy.scope)


@dataclass(frozen=True)
class Outcome(Result):
    """Time, cost, energy and carbon for one efficiency/goodput case."""

    efficiency: float
    goodput: float
    wall_clock_days: float
    device_hours: float
    cost_usd: float
    energy_kwh: float
    kg_co2e: float


@dataclass(frozen=True)
class Range(Result):
    low: Outcome  # optimistic: high efficiency and goodput
    expected: Outcome
    high: Outcome  # pessimistic: low efficiency and goodput


@dataclass(frozen=True)
class QuantityRanges(Result):
    """Best / expected / worst of the per-step quantities (the range's efficiency cases)."""

    mfu: list[float]  # [best, expected, worst] model FLOPs utilisation
    step_time_s: list[float]  # [best, expected, worst]
    memory_bytes: list[float]  # [low, expected, high] per device
    memory_source: str


@dataclass(frozen=True)
class LayoutChoice(Result):
    """How the layout was decided: which degrees the user gave and which a search chose."""

    given: dict[str, Any]  # degree -> value the user fixed
    chosen: list[str]  # degrees the search chose
    question: str  # e.g. "the best layout on 64 devices"
    objective: str  # what ranked the layouts: time, cost or carbon
    searched: int  # layouts enumerated
    fitting: int  # layouts that fit in memory and answered the question
    alternatives: list[dict[str, Any]]  # the next-best layouts (on request)


@dataclass(frozen=True)
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
