"""`planner validate --serve`: time a real torch model's prefill and decode steps and put the
serving estimators' predictions beside them (on this CPU: its measured matmul peak and copy
bandwidth; on a GPU: the profile's).

The decode step is what a serving engine runs per iteration: each layer projects q, k, v for
one new token per sequence, writes k, v into a preallocated cache, attends over the cache
(SDPA, GQA without repeating K/V), and runs the MLP; then the LM head for that token. Prefill
runs the blocks over whole prompts and the LM head for the last token only.

MLA (DeepSeek-V2/V3) decodes as the serving engines do (DeepSeek-V2 §2.1.3; FlashMLA, vLLM,
SGLang): the cache holds the normalised latent c (kv_lora_rank) and the rotary key
(qk_rope_head_dim) per token; W_UK is absorbed into the query and W_UV into the output, so
attention runs in the latent space and K/V are never expanded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from planner.errors import SpecError
from planner.estimators.serving import (
    Layout, ServeConfig, ServePerf, StepLoad, iteration_time, prefill_time_s,
)
from planner.profiling import probes
from planner.profiling.model import build_model, rope
from planner.profiling.report import Quantity, ValidationReport
from planner.specs import HardwareProfile, ModelSpec

TOLERANCE_PCT = 25.0  # as step_time_s in `planner validate`
# On a CPU the measured copy bandwidth and 90% of the measured matmul peak are what a step
# can reach (cpu_profile.CPU_GEMM_FRACTION); there is no serving engine, so no overhead.
CPU_PERF = ServePerf(hbm_efficiency=(1.0, 1.0, 1.0), gemm_efficiency=(0.9, 0.9, 0.9),
                     step_overhead_s=0.0)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ServeBenchConfig:
    batches: tuple[int, ...] = (1, 8)
    contexts: tuple[int, ...] = (128, 512)
    steps: int = 5
    warmup: int = 1
    device: str = "cpu"
    dtype: str = "fp32"


def _check(spec: ModelSpec) -> None:
    if spec.parallel_block or spec.norms_per_layer != 2:
        raise SpecError(f"validate --serve: {spec.name} is not a pre-norm MHA/GQA/MQA/MLA "
                        "model (parallel and 4-norm blocks are not built for decoding yet); "
                        "use --model llama3-8b, mistral-7b, qwen2-7b, mixtral-8x7b or "
                        "deepseek-v2-lite")


def mla_absorbed_attention(attn, q_nope, q_pe, latent, k_pe):
    """Latent-space attention of queries [b, a, nope] / [b, a, rope] over a cache of
    latents [b, t, r] and rotary keys [b, t, rope]: scores q_nope W_UK c + q_pe k_pe, the
    weighted latents, then W_UV. Returns [b, a * v_head_dim]."""
    m, a = attn.m, attn.a
    nope = m.qk_nope_head_dim
    w = attn.kv_b.weight.view(a, nope + m.v_head_dim, m.kv_lora_rank)
    q_lat = torch.einsum("bhd,hdr->bhr", q_nope, w[:, :nope])
    scores = (torch.einsum("bhr,btr->bht", q_lat, latent)
              + torch.einsum("bhd,btd->bht", q_pe, k_pe)) / (nope + m.qk_rope_head_dim) ** 0.5
    wide = torch.promote_types(scores.dtype, torch.float32)  # softmax in fp32 at least
    o_lat = torch.einsum("bht,btr->bhr", F.softmax(scores.to(wide), -1).to(latent.dtype),
                         latent)
    return torch.einsum("bhr,hvr->bhv", o_lat, w[:, nope:]).reshape(q_nope.shape[0], -1)


def _mla_step(attn, x, latent_cache, rope_cache, pos: int):
    m, a = attn.m, attn.a
    b = x.shape[0]
    q = (attn.q_b(attn.q_norm(attn.q_a(x))) if m.q_lora_rank else attn.q(x)).view(b, 1, a, -1)
    kv = attn.kv_a(x)
    latent_cache[:, pos] = attn.kv_norm(kv[..., : m.kv_lora_rank])[:, 0]
    rope_cache[:, pos] = rope(kv[..., m.kv_lora_rank:].unsqueeze(2))[:, 0, 0]
    out = mla_absorbed_attention(attn, q[:, 0, :, : m.qk_nope_head_dim],
                                 rope(q[..., m.qk_nope_head_dim:])[:, 0], latent_cache,
                                 rope_cache)
    return attn.o(out.unsqueeze(1))


def _attn_step(attn, x, k_cache, v_cache, pos: int):
    b = x.shape[0]
    q, k, v = attn.q(x), attn.k(x), attn.v(x)
    q = q.view(b, 1, attn.a, attn.d)
    k, v = k.view(b, 1, attn.g, attn.d), v.view(b, 1, attn.g, attn.d)
    if attn.rope:
        q, k = rope(q), rope(k)
    k_cache[:, :, pos] = k[:, 0]
    v_cache[:, :, pos] = v[:, 0]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k_cache, v_cache,
                                         enable_gqa=attn.g != attn.a)
    return attn.o(out.transpose(1, 2).reshape(b, 1, attn.a * attn.d))


def _head(lm, x):
    x = lm.norm(x)
    return lm.head(x) if lm.head is not None else F.linear(x, lm.embed.weight, lm.head_bias)


def kv_caches(spec: ModelSpec, batch: int, context: int, device: str, dtype):
    """One layer's cache: K and V [b, g, t, d_h]; for MLA the latent [b, t, r] and the rotary
    key [b, t, rope]."""
    if spec.mla:
        m = spec.mla
        return (torch.randn(batch, context, m.kv_lora_rank, device=device, dtype=dtype),
                torch.randn(batch, context, m.qk_rope_head_dim, device=device, dtype=dtype))
    shape = (batch, spec.kv_heads, context, spec.d_head)
    return (torch.randn(*shape, device=device, dtype=dtype),
            torch.randn(*shape, device=device, dtype=dtype))


def decode_step_fn(lm, spec: ModelSpec, batch: int, context: int, device: str, dtype):
    """A closure running one decode step for ``batch`` sequences at ``context`` tokens."""
    caches = [kv_caches(spec, batch, context, device, dtype) for _ in lm.blocks]
    tokens = torch.randint(0, spec.vocab_size, (batch, 1), device=device)
    attend_step = _mla_step if spec.mla else _attn_step

    @torch.no_grad()
    def step():
        x = lm.embed(tokens)
        for block, (kc, vc) in zip(lm.blocks, caches):
            x = x + attend_step(block.attn, block.norms[0](x), kc, vc, context - 1)
            x = x + block.mlp(block.norms[1](x))
        _head(lm, x[:, -1:])
    return step


def prefill_fn(lm, spec: ModelSpec, batch: int, prompt: int, device: str):
    """A closure prefilling ``batch`` prompts of ``prompt`` tokens (logits of the last)."""
    tokens = torch.randint(0, spec.vocab_size, (batch, prompt), device=device)

    @torch.no_grad()
    def step():
        x = lm.embed(tokens)
        for block in lm.blocks:
            x = block(x)
        _head(lm, x[:, -1:])
    return step


def _quantity(name, predicted, times, device) -> Quantity:
    spread = f", spread {times.spread_pct:.0f}%" if times.spread_pct else ""
    return Quantity(name, predicted, times.median_s, "s",
                    f"median of {len(times.times_s)} timed steps, torch eager on {device}"
                    f"{spread}", TOLERANCE_PCT)


def run_serve_bench(spec: ModelSpec, hw: HardwareProfile, cfg: ServeBenchConfig,
                    perf: ServePerf, report: ValidationReport) -> ValidationReport:
    """Time prefill and decode at every (batch, context) and add predicted-vs-measured rows."""
    _check(spec)
    dtype = _DTYPES[cfg.dtype]
    lm = build_model(spec, device=cfg.device, dtype=dtype).eval()
    scfg = ServeConfig(cfg.dtype, cfg.dtype, Layout(1, 1))
    for b in cfg.batches:
        for ctx in cfg.contexts:
            step = prefill_fn(lm, spec, b, ctx, cfg.device)
            times = probes.time_steps(step, cfg.steps, cfg.warmup, cfg.device)
            pred = prefill_time_s(spec, hw, scfg, ctx, perf, prompts=b)
            report.quantities.append(_quantity(f"prefill_s b={b} s={ctx}", pred, times,
                                               cfg.device))
    for b in cfg.batches:
        for ctx in cfg.contexts:
            step = decode_step_fn(lm, spec, b, ctx, cfg.device, dtype)
            times = probes.time_steps(step, cfg.steps, cfg.warmup, cfg.device)
            pred = iteration_time(spec, hw, scfg, StepLoad(b, ctx), perf).total_s
            report.quantities.append(_quantity(f"decode_step_s b={b} ctx={ctx}", pred, times,
                                               cfg.device))
    return report
