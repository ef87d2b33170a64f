"""Typed results of `planner serve` (``ServeAnswer.to_dict()`` is its JSON contract).

Frozen dataclasses, as in results.py. Times are seconds, memory bytes, rates per second.
"""

from __future__ import annotations

from planner.results import Assumption, ModelSummary, Result, frozen


@frozen
class Spread(Result):
    """A latency as best case / expected / worst case (low = best, as every range)."""

    low: float
    expected: float
    high: float


@frozen
class ServeMemory(Result):
    """Memory per device of one replica (the most loaded pipeline stage)."""

    capacity_bytes: float
    usable_bytes: float  # capacity x the engine's memory-utilisation fraction
    weights_bytes: float
    workspace_bytes: float  # activations of the largest forward + fp32 logits
    runtime_bytes: float  # CUDA context, graphs, communicators
    kv_free_bytes: float  # what is left for the paged KV cache
    kv_bytes_per_token: float  # one token over all layers (before sharding, no window)
    kv_bytes_per_sequence: float  # per device, one sequence at input + output tokens
    max_sequences: int  # sequences whose KV fits at once
    max_context_tokens: float | None  # longest single context that fits (None: no limit,
    # every layer windowed)


@frozen
class ServeCost(Result):
    """Dollars per million tokens at one price tier."""

    tier: str
    usd_per_device_hour: float
    usd_per_m_input_tokens: float
    usd_per_m_output_tokens: float
    usd_per_m_tokens: float  # input + output together


@frozen
class StepParts(Result):
    """One steady-state engine iteration at the chosen batch (expected case), seconds."""

    iteration_s: float
    weights_s: float
    kv_s: float
    decode_compute_s: float
    prefill_s: float
    comm_s: float
    overhead_s: float
    draft_s: float  # speculative decoding's draft steps (0 when off)
    tokens_per_step: float  # output tokens a sequence gains per iteration (1 without drafts)
    bound: str  # "memory" or "compute": which side of the decode roofline wins


@frozen
class ServeOption(Result):
    """The answer on one hardware: a replica layout, its batch, latency, rates, money."""

    hardware: str
    precision: str
    kv_precision: str
    tp: int
    pp: int
    ep: int
    devices_per_replica: int
    replicas: int
    devices: int
    batch: int  # concurrent sequences per replica (continuous batching)
    limited_by: str  # what capped the batch: memory, max_batch, tpot, ttft
    ttft_s: Spread  # slot wait p50 (with an arrival rate) + prefill + half an iteration
    tpot_s: Spread
    ttft_queue_s: float  # the expected case's median wait for a batch slot (0: no rate)
    worst_case_replicas: int | None  # replicas the worst case needs when fewer than given
    output_tokens_per_s_per_replica: float
    output_tokens_per_s_per_device: float
    input_tokens_per_s_per_replica: float
    requests_per_s_per_replica: float
    utilization: float  # the load's share of the fleet's capacity (1 with no load)
    memory: ServeMemory
    step: StepParts
    costs: list[ServeCost]  # the chosen tier first, then every other tier in the profile
    energy_wh_per_m_tokens: float  # facility energy (x PUE) per million input+output tokens
    g_co2e_per_m_tokens: float
    power_per_device_w: float
    layouts_searched: int
    layouts_fitting: int


@frozen
class ServeAnswer(Result):
    model: ModelSummary
    input_tokens: int
    output_tokens: int
    load: dict  # {"kind": rate|tokens_per_day|concurrency|devices|none, "value": ...}
    targets: dict  # {"ttft_p50_s": ..., "tpot_s": ...} (None where not given)
    question: str
    options: list[ServeOption]  # one per hardware, in the order given
    assumptions: list[Assumption]
    warnings: list[str]
