"""Inference estimators: KV-cache bytes, serving weight bytes, prefill and decode step times
(docs/commands/serve.md, "The model"). Pure functions: specs in, numbers out.

Decode is a roofline per engine iteration: the bytes every device must read from HBM (its
share of the weights, the experts the batch touches, the KV cache of every sequence) at an
achieved fraction of HBM bandwidth, against the FLOPs of the batch at a GEMM efficiency;
the larger wins, then the TP all-reduces on the scale-up link and a fixed per-iteration
overhead are added. Prefill tokens an iteration carries (chunked prefill) add their
compute time. Every constant is in `ServePerf`, with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.estimators.params import ParamCount, count_params
from planner.specs.hardware import HardwareProfile
from planner.specs.model import ModelSpec

# Bytes per weight by serving precision. int4 is weight-only (W4A16: GEMMs run in bf16 after
# dequantisation) with one fp16 scale per group of INT4_GROUP_SIZE weights (AWQ, Lin et al.
# 2024 §3; GPTQ, Frantar et al. 2023: group size 128); fp8 and int8 are W8A8.
INT4_GROUP_SIZE = 128
SCALE_BYTES = 2
WEIGHT_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "int4", "fp4", "fp32")
KV_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp32")
_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5,
          "fp32": 4.0}
# The profile peak a precision's GEMMs run at (int4 weight-only dequantises to bf16).
COMPUTE_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8",
                     "int4": "bf16", "fp4": "fp4", "fp32": "fp32"}
FP4_GROUP_SIZE = 16  # NVFP4: one fp8 scale per 16 weights (NVIDIA Blackwell NVFP4 format)


def weight_bytes_per_param(precision: str) -> float:
    """Bytes per quantised weight, group scales included (int4: 0.5 + 2/128 = 0.515625)."""
    if precision == "int4":
        return _BYTES["int4"] + SCALE_BYTES / INT4_GROUP_SIZE
    if precision == "fp4":
        return _BYTES["fp4"] + 1.0 / FP4_GROUP_SIZE
    return _BYTES[precision]


def kv_bytes_per_element(kv_precision: str) -> float:
    """Bytes per cached K/V element (fp8/int8 caches store one byte; per-tensor scales are
    negligible)."""
    return _BYTES[kv_precision]


@dataclass(frozen=True)
class WeightBytes:
    """Serving weight bytes: transformer layers at the serving precision, embedding and LM
    head in 16-bit (AWQ/GPTQ and vLLM's fp8 leave them unquantised), norms in 16-bit
    (everything in 32-bit for an fp32 model, as `planner validate --serve` runs on a CPU)."""

    layers_bytes: float  # all layers' matrices (all experts)
    layers_other_bytes: float  # norms, biases, router: 16-bit
    embedding_bytes: float
    lm_head_bytes: float
    expert_bytes: float  # one routed expert, at the serving precision

    @property
    def total_bytes(self) -> float:
        return (self.layers_bytes + self.layers_other_bytes + self.embedding_bytes
                + self.lm_head_bytes)


def serving_weight_bytes(model: ModelSpec, precision: str,
                         params: ParamCount | None = None) -> WeightBytes:
    """Weight bytes at a serving precision (docs/commands/serve.md, memory)."""
    p = params or count_params(model)
    layer_mm = p.matmul_total - p.vocab_times_width
    other = p.layers_total - layer_mm + p.final_norm
    w = weight_bytes_per_param(precision)
    rest = 4.0 if precision == "fp32" else 2.0
    return WeightBytes(layers_bytes=layer_mm * w, layers_other_bytes=other * rest,
                       embedding_bytes=(p.embedding + p.positions) * rest,
                       lm_head_bytes=p.lm_head * rest, expert_bytes=p.expert_matmul * w)


def kv_elements_per_token_per_layer(model: ModelSpec) -> int:
    """Cached elements per token in one layer: 2 * g * d_h (K and V), or for MLA the
    compressed latent kv_lora_rank + qk_rope_head_dim (DeepSeek-V2, Liu et al. 2024 §2.1.2:
    "(d_c + d_h^R) l" elements per token)."""
    if model.mla:
        return model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
    return 2 * model.kv_heads * model.d_head


def kv_bytes_per_token(model: ModelSpec, kv_precision: str = "bf16") -> float:
    """KV-cache bytes one token adds over all layers (no window cap)."""
    return (kv_elements_per_token_per_layer(model) * model.num_layers
            * kv_bytes_per_element(kv_precision))


def kv_cache_bytes(model: ModelSpec, context_tokens: float, kv_precision: str = "bf16") -> float:
    """KV-cache bytes of one sequence at a context length: every layer holds
    min(context, its window) tokens (`ModelSpec.layer_attention_windows`)."""
    per_layer = kv_elements_per_token_per_layer(model) * kv_bytes_per_element(kv_precision)
    held = sum(context_tokens if w is None else min(context_tokens, w)
               for w in model.layer_attention_windows())
    return per_layer * held


def max_context_tokens(model: ModelSpec, free_bytes: float, kv_precision: str) -> float:
    """The longest context (tokens, whole) whose KV cache fits in ``free_bytes``; inf when
    every layer is windowed and the full windows fit."""
    windows = model.layer_attention_windows()
    if all(w is not None for w in windows):
        if kv_cache_bytes(model, max(windows), kv_precision) <= free_bytes:
            return math.inf
    per_layer = kv_elements_per_token_per_layer(model) * kv_bytes_per_element(kv_precision)
    lo, hi = 0, max(0, int(free_bytes // per_layer)) + 1  # a full layer holds every token
    while hi - lo > 1:  # kv_cache_bytes is non-decreasing in the context
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if kv_cache_bytes(model, mid, kv_precision) <= free_bytes else (lo, mid)
    return float(lo)


@dataclass(frozen=True)
class ServePerf:
    """Serving performance constants (low case = the optimistic end). Set on the rows of
    planner/data/validation/serving_trtllm.yaml marked `role: fit`; see docs/validation.md."""

    hbm_efficiency: tuple[float, float, float] = (0.90, 0.80, 0.70)  # best, expected, worst
    gemm_efficiency: tuple[float, float, float] = (0.70, 0.55, 0.40)  # decode/prefill GEMMs
    allreduce_latency_s: float = 8e-6  # per all-reduce, small messages on NVLink
    link_efficiency: float = 0.7  # achieved fraction of the scale-up bandwidth
    step_overhead_s: float = 2e-3  # scheduler, sampling, launch per iteration
    p2p_latency_s: float = 20e-6  # per pipeline-stage hand-off

    SOURCE = ("expected values fitted on TensorRT-LLM's published Llama 3.1 8B rows "
              "(planner/data/validation/serving_trtllm.yaml, role: fit): a grid search, the "
              "lowest mean error among fits within 0.5 points of the best median (7.6%); "
              "best/worst cases +-0.10 (HBM) and +-0.15 (GEMM)")


@dataclass(frozen=True)
class Layout:
    """A serving replica's layout: pp stages of ep x tp devices. Attention and the dense
    layers are tensor-parallel over tp and data-parallel over the ep groups (each group
    serves batch / ep of the sequences); the routed experts of every MoE layer are spread
    over all ep x tp devices of a stage, E / ep experts per group, each split tp ways
    (SGLang's DP attention with --ep; vLLM's --enable-expert-parallel puts E / (dp x tp)
    whole experts on a device, the same bytes per device). ep = 1: plain TP (x PP)."""

    tp: int
    pp: int
    ep: int = 1

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.ep


@dataclass(frozen=True)
class ServeConfig:
    """What a step-time estimate needs besides the model and hardware."""

    precision: str
    kv_precision: str
    layout: Layout


def kv_shards(model: ModelSpec, tp: int) -> int:
    """Devices the KV cache is split over: min(tp, g) for GQA/MHA (KV heads replicate when
    tp > g, as vLLM does); 1 for MLA (the latent is replicated on every TP rank)."""
    return 1 if model.mla else min(tp, model.kv_heads)


def experts_touched(num_experts: int, top_k: int, tokens: float) -> float:
    """Expected distinct experts a batch of tokens routes to (uniform routing):
    E * (1 - (1 - k/E)^T)."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def routed_expert_bytes(model: ModelSpec, wb: WeightBytes) -> float:
    """Bytes of every routed expert of every MoE layer (0 for a dense model)."""
    return wb.expert_bytes * model.moe.num_experts * model.num_moe_layers if model.moe else 0.0


def weight_bytes_read_per_device(model: ModelSpec, wb: WeightBytes, tp: int,
                                 tokens: float, ep: int = 1) -> float:
    """Weight bytes one device reads in one forward over ``tokens`` tokens (the whole
    replica's): its 1/tp share of every non-expert matrix, and of the experts the batch
    touches its 1/(ep tp) share (a device holds E/ep experts' 1/tp slices; the expected
    distinct experts touched is the same share of its local ones)."""
    experts = routed_expert_bytes(model, wb)
    dense = wb.total_bytes - experts
    if experts:
        touched = experts_touched(model.moe.num_experts, model.moe.experts_per_token, tokens)
        experts = touched * wb.expert_bytes * model.num_moe_layers
    return dense / tp + experts / (tp * ep)


def peak_for(hw: HardwareProfile, precision: str) -> float | None:
    """Dense FLOP/s the serving precision's GEMMs run at, or None without that path."""
    compute = COMPUTE_PRECISION[precision]
    if compute == "int8":
        fig = hw.peak_dense_int8_tops
        return fig.value * 1e12 if fig else None
    if compute == "fp4":
        fig = hw.peak_dense_fp4_tflops
        return fig.value * 1e12 if fig else None
    return hw.peak_flops_per_s(compute)


def forward_flops(model: ModelSpec, params: ParamCount, tokens: float,
                  context_tokens: float, decode: bool = False) -> float:
    """Forward FLOPs of ``tokens`` tokens each attending over ``context_tokens`` keys:
    2 N_mm(active) per token + 2 a (d_qk + d_v) L per key (docs/formulas.md §2.11). MLA
    decodes in the latent space (W_UK absorbed into the query, W_UV into the output: the
    same 2 N_mm per token), so a decode token costs 2 a (2 d_c + d_R) L per key: scores
    over the latent and the rotary key, then the weighted latent (DeepSeek-V2 §2.1.3)."""
    if decode and model.mla:
        per_key = 2 * model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
    else:
        per_key = model.qk_dim + model.v_dim
    attn = 2.0 * model.num_heads * per_key * model.num_layers
    return tokens * (2.0 * params.matmul_active + attn * context_tokens)


def expert_forward_flops(model: ModelSpec, params: ParamCount, tokens: float) -> float:
    """The routed experts' share of forward_flops: 2 k N_expert per token per MoE layer."""
    if not model.moe:
        return 0.0
    return 2.0 * tokens * model.moe.experts_per_token * params.expert_matmul * \
        model.num_moe_layers


def allreduce_s(message_bytes: float, tp: int, hw: HardwareProfile, perf: ServePerf) -> float:
    """Ring all-reduce time: latency + 2 (tp-1)/tp x bytes / achieved link bandwidth."""
    if tp == 1:
        return 0.0
    bw = hw.scale_up_bandwidth_gb_per_s_one_way.value * 1e9 * perf.link_efficiency
    return perf.allreduce_latency_s + 2.0 * (tp - 1) / tp * message_bytes / bw


def alltoall_s(send_bytes: float, ranks: int, hw: HardwareProfile, perf: ServePerf) -> float:
    """All-to-all time (docs/formulas.md §4.2): latency + (n-1)/n x one rank's send buffer
    / achieved link bandwidth; the same small-message latency as an all-reduce."""
    if ranks == 1:
        return 0.0
    bw = hw.scale_up_bandwidth_gb_per_s_one_way.value * 1e9 * perf.link_efficiency
    return perf.allreduce_latency_s + (ranks - 1) / ranks * send_bytes / bw


def comm_s(model: ModelSpec, hw: HardwareProfile, lay: Layout, tokens: float,
           perf: ServePerf) -> float:
    """A forward's communication over ``tokens`` tokens of the replica: 2 TP all-reduces per
    layer of each ep group's tokens (attention output, FFN/MoE output: Megatron), with
    ep > 1 a dispatch and a combine all-to-all per MoE layer over the stage's ep x tp
    devices (each sends its 1/(ep tp) of the tokens to k experts, h x 2 bytes each), and
    the pp - 1 stage hand-offs."""
    act = tokens / lay.ep * model.d_model * 2.0  # bf16 activations of one group
    out = 2 * model.num_layers * allreduce_s(act, lay.tp, hw, perf)
    if lay.ep > 1 and model.moe:
        send = tokens / (lay.ep * lay.tp) * model.moe.experts_per_token * model.d_model * 2.0
        out += 2 * model.num_moe_layers * alltoall_s(send, lay.ep * lay.tp, hw, perf)
    return out + (lay.pp - 1) * perf.p2p_latency_s


@dataclass(frozen=True)
class IterationTime:
    """One engine iteration of a replica, in seconds, and its parts."""

    weights_s: float  # weight read time (memory side of the roofline)
    kv_s: float  # KV read time
    decode_compute_s: float  # decode GEMM + attention compute (compute side)
    prefill_s: float  # compute of the prefill tokens the iteration carries
    comm_s: float  # TP all-reduces and PP hand-offs
    overhead_s: float
    draft_s: float = 0.0  # speculative decoding: the draft model's steps

    @property
    def decode_s(self) -> float:
        """The decode part: roofline max + communication + overhead (+ drafting)."""
        return max(self.weights_s + self.kv_s, self.decode_compute_s) + self.comm_s + \
            self.overhead_s + self.draft_s

    @property
    def total_s(self) -> float:
        return self.decode_s + self.prefill_s


@dataclass(frozen=True)
class StepLoad:
    """What one engine iteration carries: ``batch`` sequences decoding at a mean context,
    each running ``query_tokens`` tokens (k + 1 when speculative decoding verifies k drafts),
    and ``prefill_tokens`` of chunked prefill attending over ``prefill_context_tokens`` keys
    on average (default: a causal prompt of that many tokens, (n + 1) / 2)."""

    batch: float
    context_tokens: float
    prefill_tokens: float = 0.0
    prefill_context_tokens: float | None = None
    query_tokens: int = 1


def iteration_time(model: ModelSpec, hw: HardwareProfile, cfg: ServeConfig, load: StepLoad,
                   perf: ServePerf = ServePerf(), case: int = 1) -> IterationTime:
    """Time of one engine iteration (case 0 best, 1 expected, 2 worst): the time in which
    every sequence in flight gains one step.

    With pp stages the scheduler keeps pp micro-batches of batch / pp sequences in flight,
    one on each stage (Orca, Yu et al. 2022 §4.3; vLLM's one batch per pipeline stage), so
    every stage stays busy: a micro-batch's iteration passes the pp stages in turn, each
    reading its 1/pp of the weights and of its sequences' KV, while the other stages run
    the other micro-batches. The iteration is pp stage steps of one micro-batch, which is
    the whole model's reads and FLOPs for batch / pp sequences on one stage's devices, plus
    the hand-offs: PP buys memory and keeps the throughput of pp replicas at batch / pp;
    latency gains the stage hops."""
    params = count_params(model)
    tp, ep, pp = cfg.layout.tp, cfg.layout.ep, cfg.layout.pp
    load = StepLoad(load.batch / pp, load.context_tokens, load.prefill_tokens / pp,
                    load.prefill_context_tokens, load.query_tokens)
    wb = serving_weight_bytes(model, cfg.precision, params)
    peak = peak_for(hw, cfg.precision)
    assert peak is not None, "caller checks the precision path"
    bw = hw.hbm_bandwidth_tb_per_s.value * 1e12 * perf.hbm_efficiency[case]
    eff = perf.gemm_efficiency[case]
    decode_tokens = load.batch * load.query_tokens
    pf, pf_ctx = load.prefill_tokens, load.prefill_context_tokens
    pf_ctx = (pf + 1) / 2 if pf_ctx is None else pf_ctx
    w_read = weight_bytes_read_per_device(model, wb, tp, decode_tokens + pf, ep)
    # each ep group holds and reads the KV of its batch / ep sequences
    kv_read = load.batch / ep * kv_cache_bytes(model, load.context_tokens,
                                               cfg.kv_precision) / kv_shards(model, tp)
    # the batch's FLOPs spread evenly over the stage's ep x tp devices (expected routing)
    dec_flops = forward_flops(model, params, decode_tokens, load.context_tokens,
                              decode=True) / (tp * ep)
    pf_flops = forward_flops(model, params, pf, pf_ctx) / (tp * ep)
    comm = comm_s(model, hw, cfg.layout, decode_tokens + pf, perf)
    return IterationTime(weights_s=w_read / bw, kv_s=kv_read / bw,
                         decode_compute_s=dec_flops / (peak * eff),
                         prefill_s=pf_flops / (peak * eff), comm_s=comm,
                         overhead_s=perf.step_overhead_s)


def accepted_tokens_per_step(draft_tokens: int, acceptance: float) -> float:
    """Expected tokens a speculative step yields with k drafts each accepted with
    probability a: (1 - a^(k+1)) / (1 - a) (Leviathan et al. 2023, Eq. 1)."""
    if acceptance >= 1.0:
        return draft_tokens + 1.0
    return (1.0 - acceptance ** (draft_tokens + 1)) / (1.0 - acceptance)


def prefill_time_s(model: ModelSpec, hw: HardwareProfile, cfg: ServeConfig,
                   prompt_tokens: float, perf: ServePerf = ServePerf(), case: int = 1,
                   prompts: int = 1) -> float:
    """Seconds to prefill ``prompts`` prompts together (one alone by default): compute
    (causal attention over each prompt) or the weight read, whichever is larger, plus the
    TP all-reduces of the prompts' activations."""
    params = count_params(model)
    lay = cfg.layout
    tp, ep = lay.tp, lay.ep
    wb = serving_weight_bytes(model, cfg.precision, params)
    peak = peak_for(hw, cfg.precision)
    assert peak is not None, "caller checks the precision path"
    tokens = prompts * prompt_tokens
    # the prompts sit in one ep group (its tp devices run their attention and dense layers);
    # their routed tokens spread over all ep x tp devices of the stage
    flops = forward_flops(model, params, tokens, (prompt_tokens + 1) / 2)
    experts = expert_forward_flops(model, params, tokens)
    compute = ((flops - experts) / tp + experts / (tp * ep)) / (peak * perf.gemm_efficiency[case])
    bw = hw.hbm_bandwidth_tb_per_s.value * 1e12 * perf.hbm_efficiency[case]
    memory = weight_bytes_read_per_device(model, wb, tp, tokens, ep) / bw
    one_group = Layout(tp, lay.pp, 1)  # the prompts' tokens are one group's
    comm = comm_s(model, hw, one_group, tokens, perf)
    if ep > 1 and model.moe:
        send = tokens / tp * model.moe.experts_per_token * model.d_model * 2.0
        comm += 2 * model.num_moe_layers * alltoall_s(send, ep * tp, hw, perf)
    return max(compute, memory) + comm + perf.step_overhead_s


def min_bytes_per_decode_step(model: ModelSpec, cfg: ServeConfig, batch: float,
                              context_tokens: float) -> float:
    """The least bytes one device must read from HBM in a decode iteration (every sequence
    gains a token): for each of the pp micro-batches of batch / pp sequences, its 1/pp stage
    of the weights they touch and of their KV cache; every iteration takes at least this
    over the device's peak HBM bandwidth."""
    wb = serving_weight_bytes(model, cfg.precision)
    tp, pp, ep = cfg.layout.tp, cfg.layout.pp, cfg.layout.ep
    mb = batch / pp
    return (weight_bytes_read_per_device(model, wb, tp, mb, ep)
            + mb / ep * kv_cache_bytes(model, context_tokens, cfg.kv_precision)
            / kv_shards(model, tp))
