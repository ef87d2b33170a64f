"""One serving replica's memory and its continuous-batching steady state (no I/O).

Steady state (Orca / vLLM-style continuous batching with chunked prefill): ``batch``
sequences decode together, one token each per iteration, at a mean context of
input + output/2; each iteration also carries the prefill of the requests that replace the
finished ones, batch x input/output prompt tokens on average. So

    TPOT = iteration time,  output tokens/s = batch / TPOT,  requests/s = batch / (output x TPOT)
    TTFT (p50, requests admitted on arrival) = prefill of one prompt + half an iteration

(the request waits on average for half of the iteration in flight, then its prefill runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from planner.estimators.params import count_params
from planner.estimators.serving import (
    IterationTime, ServeConfig, ServePerf, StepLoad, accepted_tokens_per_step, iteration_time,
    kv_bytes_per_token, kv_cache_bytes, kv_shards, max_context_tokens, prefill_time_s,
    routed_expert_bytes, serving_weight_bytes,
)
from planner.results_serving import ServeMemory
from planner.specs.hardware import HardwareProfile
from planner.specs.model import ModelSpec


@dataclass(frozen=True)
class EngineSettings:
    """The serving engine's memory settings (vLLM's names; TensorRT-LLM has the same)."""

    gpu_memory_utilization: float = 0.90  # vLLM default; TRT-LLM kv_cache_free_gpu_mem 0.90
    block_size_tokens: int = 16  # vLLM paged-attention block (default 16)
    max_num_batched_tokens: int = 8192  # tokens in the largest forward (profiled peak)
    max_batch: int | None = 256  # vLLM max_num_seqs default; None = memory only
    runtime_bytes: float = 1.5 * 2**30  # CUDA context + graphs + communicators


ENGINE_SOURCES = {
    "gpu_memory_utilization": "vLLM EngineArgs default gpu_memory_utilization=0.9; "
                              "TensorRT-LLM kv_cache_free_gpu_mem_fraction default 0.9",
    "block_size_tokens": "vLLM paged attention default block_size=16 (Kwon et al. 2023 §4)",
    "max_num_batched_tokens": "largest forward the engine profiles for activation memory "
                              "(vLLM max_num_batched_tokens; 8192 for offline use)",
    "max_batch": "vLLM default max_num_seqs=256 sequences per replica",
    "runtime_bytes": "planner's runtime-overhead default (docs/formulas.md §3.6)",
}


def _ffn_width(model: ModelSpec) -> int:
    if model.moe:
        return model.moe.experts_per_token * model.moe.expert_ffn_hidden_size + \
            model.moe.shared_width
    return model.ffn_hidden_size


def workspace_bytes(model: ModelSpec, tp: int, engine: EngineSettings, batch: int) -> float:
    """Activation peak of the largest forward (one layer live, bf16) + fp32 logits of a
    decode batch: T (4h + (2f + (a + 2g) d_h)/tp) x 2 bytes + batch x V/tp x 4 bytes."""
    t = engine.max_num_batched_tokens
    per_token = 4 * model.d_model + (2 * _ffn_width(model) + (
        model.num_heads + 2 * model.kv_heads) * model.qk_dim) / tp
    return t * per_token * 2.0 + batch * model.vocab_size / tp * 4.0


def replica_memory(model: ModelSpec, hw: HardwareProfile, cfg: ServeConfig,
                   context_tokens: int, engine: EngineSettings) -> ServeMemory:
    """Memory per device on the most loaded stage, and how many sequences of
    ``context_tokens`` (rounded up to whole KV blocks) fit in what is left. With ep > 1
    the routed experts divide by ep x tp, everything else by tp (replicated over the ep
    groups), and each group caches its own sequences: the replica holds ep times a
    device's sequences."""
    tp, pp, ep = cfg.layout.tp, cfg.layout.pp, cfg.layout.ep
    wb = serving_weight_bytes(model, cfg.precision)
    ends = wb.embedding_bytes + wb.lm_head_bytes if pp == 1 else \
        max(wb.embedding_bytes, wb.lm_head_bytes)
    experts = routed_expert_bytes(model, wb)
    layers = wb.layers_bytes + wb.layers_other_bytes - experts + experts / ep
    weights = (layers / pp + ends) / tp
    cap_batch = engine.max_batch or 1024
    work = workspace_bytes(model, tp, engine, cap_batch)
    usable = hw.memory_bytes * engine.gpu_memory_utilization
    free = usable - weights - work - engine.runtime_bytes
    block = engine.block_size_tokens
    ctx = math.ceil(context_tokens / block) * block
    shards = kv_shards(model, tp) * pp
    per_seq = kv_cache_bytes(model, ctx, cfg.kv_precision) / shards
    max_seqs = int(free // per_seq) * ep if free > 0 else 0
    max_ctx = max_context_tokens(model, max(free, 0.0) * shards, cfg.kv_precision)
    return ServeMemory(
        capacity_bytes=hw.memory_bytes, usable_bytes=usable, weights_bytes=weights,
        workspace_bytes=work, runtime_bytes=engine.runtime_bytes, kv_free_bytes=free,
        kv_bytes_per_token=kv_bytes_per_token(model, cfg.kv_precision),
        kv_bytes_per_sequence=per_seq, max_sequences=max_seqs,
        max_context_tokens=None if math.isinf(max_ctx) else max_ctx)


@dataclass(frozen=True)
class Options:
    """Stated serving options, off by default: prefix caching and speculative decoding."""

    prefix_hit_rate: float = 0.0  # fraction of prompt tokens found in the prefix cache
    draft_tokens: int = 0  # speculative decoding: k drafts verified per step (0 = off)
    acceptance: float = 0.0  # probability each draft token is accepted
    draft_cost: float = 0.05  # one draft token's time / one target decode iteration


DRAFT_COST_SOURCE = ("a one-layer draft head (EAGLE, Li et al. 2024; DeepSeek-V3 MTP) costs "
                     "about 1/L of the target's step; 0.05 of an iteration per draft token")


@dataclass(frozen=True)
class Point:
    """The steady state of one replica at one batch, in one case (0 best, 1, 2 worst)."""

    batch: int
    iteration: IterationTime
    ttft_s: float
    tokens_per_step: float = 1.0  # output tokens each sequence gains per iteration

    @property
    def tpot_s(self) -> float:
        return self.iteration.total_s / self.tokens_per_step

    @property
    def output_tokens_per_s(self) -> float:
        return self.batch * self.tokens_per_step / self.iteration.total_s


def steady_state(model: ModelSpec, hw: HardwareProfile, cfg: ServeConfig, lengths: tuple,
                 batch: int, perf: ServePerf = ServePerf(), case: int = 1,
                 opts: Options = Options()) -> Point:
    """The replica's iteration, TPOT and TTFT with ``batch`` sequences in flight; lengths =
    (input tokens, output tokens). Prefix-cache hits skip that share of each prompt's
    prefill; speculative decoding verifies k drafts per step and yields
    accepted_tokens_per_step of them."""
    inp, out = lengths
    ctx = inp + out / 2.0
    fresh = inp * (1.0 - opts.prefix_hit_rate)
    k = opts.draft_tokens
    gain = accepted_tokens_per_step(k, opts.acceptance) if k else 1.0
    # each fresh prompt token attends over the cached prefix and, causally, its own part
    pf_ctx = inp - fresh + (fresh + 1) / 2.0
    load = StepLoad(batch, ctx, batch * fresh * gain / out, pf_ctx, k + 1)
    it = iteration_time(model, hw, cfg, load, perf, case)
    if k:
        plain = iteration_time(model, hw, cfg, StepLoad(batch, ctx), perf, case)
        it = replace(it, draft_s=k * opts.draft_cost * plain.decode_s)
    ttft = prefill_time_s(model, hw, cfg, max(fresh, 1.0), perf, case) + it.total_s / 2.0
    return Point(batch, it, ttft, gain)


def largest_batch(model: ModelSpec, hw: HardwareProfile, cfg: ServeConfig, lengths: tuple,
                  cap: int, targets: tuple[float | None, float | None],
                  perf: ServePerf = ServePerf(), opts: Options = Options()) -> tuple[int, str]:
    """(largest batch <= cap meeting (ttft, tpot) in the expected case, what limits it);
    batch 0 when even one sequence misses a target. TPOT and TTFT grow with the batch, so
    a bisection finds it."""
    ttft_max, tpot_max = targets

    def meets(b: int) -> str | None:
        p = steady_state(model, hw, cfg, lengths, b, perf, opts=opts)
        if tpot_max is not None and p.tpot_s > tpot_max:
            return "tpot"
        if ttft_max is not None and p.ttft_s > ttft_max:
            return "ttft"
        return None

    first = meets(1)
    if first:
        return 0, first
    miss = meets(cap)
    if miss is None:
        return cap, "cap"
    lo, hi = 1, cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m = meets(mid)
        lo, hi, miss = (mid, hi, miss) if m is None else (lo, mid, m)
    return lo, miss


def params_active(model: ModelSpec) -> int:
    return count_params(model).active
