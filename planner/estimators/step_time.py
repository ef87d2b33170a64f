"""Step time: compute + exposed communication + pipeline bubble (docs/formulas.md §4).

One optimizer step on the critical-path device (the first pipeline stage):

  compute   m micro-batches x (GEMM FLOPs at a shape-dependent efficiency + attention FLOPs
            at the fused-attention efficiency + memory-bound elementwise traffic over HBM)
  tp        4 all-reduces per layer per micro-batch (6 with full recompute), scale-up link
            (Shoeybi et al. 2019 §3; Korthikanti §4.2.2; SP's RS+AG has the same volume).
            Megatron-LM runs the column-parallel layers' backward collectives under their
            own weight-gradient GEMMs, and its SP re-gathers the saved input in backward
  cp        ring exchange of K/V, hidden behind attention compute where it can be
  ep        4 all-to-alls per MoE layer per micro-batch (docs/formulas.md §4.6)
  pp        point-to-point activations (2 per micro-batch per virtual stage), and the bubble
            (p-1)/(v m) of the busy time (Narayanan et al. 2021 §2.2)
  dp        gradient all-reduce, or reduce-scatter + all-gather (ZeRO 1/2), plus parameter
            all-gathers per micro-batch (ZeRO-3), hidden layer by layer (data_parallel.py)
  optimizer the optimizer step reads and writes the local states once (memory-bound)
  accumulate  outside Megatron-LM (its fused weight-gradient GEMM accumulates in place), each
            micro-batch after the first adds its gradients into the accumulated ones

Collectives use NCCL's bus-bandwidth factors (ring all-reduce 2(n-1)/n, RS/AG/A2A (n-1)/n;
nccl-tests PERFORMANCE.md) on the slowest link the group crosses: a group whose ranks sit in
one scale-up domain (ranks ordered tp, cp, dp, pp as in Megatron) uses the scale-up bandwidth,
otherwise the per-device scale-out bandwidth. Branch-free: works on numbers or numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from planner.errors import SpecError
from planner.estimators.finetune_memory import dequant_bytes_per_pass, trainable_params_local
from planner.estimators.flops import (
    executed_attention_fraction, flash_backward_recompute_flops_per_token, training_flops,
)
from planner.estimators.memory import activation_bytes_per_element, routed_params, stage_layers
from planner.estimators.data_parallel import (
    accumulation_bytes, collective_seconds, data_parallel, group_link,
)
from planner.estimators.model_state import framework_state_bytes, state_bytes_per_param
from planner.estimators.offload import cpu_optimizer_s, offload_transfer_s
from planner.estimators.params import ParamCount, attention_matmul_params
from planner.estimators.vec import Degrees, vmax, vmin
from planner.specs.hardware import HardwareProfile
from planner.specs.model import ModelSpec
from planner.specs.training import TrainingSpec


@dataclass(frozen=True)
class PerfParams:
    """Global constants of the performance model; each is an assumption with a source."""

    gemm_efficiency_max: float = 0.74
    gemm_half_dim: float = 176.0
    gemm_half_tokens: float = 80.0
    attention_efficiency: float = 0.45
    elementwise_bytes_per_h: float = 40.0
    eager_elementwise_bytes_per_h: float = 400.0
    scale_up_efficiency: float = 0.80
    scale_out_efficiency: float = 0.80
    latency_intra_s: float = 5e-6
    latency_inter_s: float = 15e-6
    cp_overlap: float = 1.0
    tp_overlap_fraction: float = 0.9
    replicated_elementwise_fraction: float = 10 / 34
    score_passes: float = 16.0
    reference_efficiency: float = 0.45
    fp8_gemm_ratio: float = 0.81

    SOURCES = {
        "gemm_efficiency_max": "large dense GEMMs reach ~75-85% of the dense peak (cuBLAS on "
        "A100/H100; Calculon's gflops_efficiency tables); calibrated on Megatron-LM Table 1 "
        "and Korthikanti et al. 2022 Table 5 (docs/validation.md)",
        "gemm_half_dim": "per-device hidden width (d_model / tp) at which GEMM efficiency "
        "halves (narrow shards run less efficiently); calibrated on Megatron-LM Table 1 and "
        "Korthikanti et al. 2022 Table 5",
        "gemm_half_tokens": "heuristic: tokens per micro-batch at which GEMM efficiency halves",
        "attention_efficiency": "FlashAttention-2 (Dao 2023): 50-73% of peak forward, lower "
        "backward, on A100, counting the backward as 2.5x the forward (its QK^T recompute), "
        "as the model charges it; the kernel written for each device (FlashAttention-3 on "
        "H100: up to 75%, Shah et al. 2024) taken to reach the same share; --attention-kernel "
        "fa2 scales it by the profile's fa2_attention_fraction",
        "elementwise_bytes_per_h": "heuristic: HBM traffic of norms, activations, residuals, "
        "dropout and softmax per token per layer, in units of d_model elements; calibrated on "
        "Megatron-LM Table 1 and Korthikanti et al. 2022 Table 5",
        "eager_elementwise_bytes_per_h": "the same traffic with kernels: eager (one PyTorch "
        "kernel per op, fp32 norm upcasts, unfused RoPE and SwiGLU): set on planner's own "
        "eager runs on one H100 and one H200 (docs/validation.md); their kernel breakdown "
        "measured ~12x the fused figure in memory-bound kernels",
        "scale_up_efficiency": "achieved bus bandwidth / link rate inside a scale-up domain: "
        "DeepSeek-V3 §3.2.2 reports 160 GB/s usable of 200 GB/s NVLink; nccl-tests busbw "
        "~80-90% of link; `planner calibration link` measures it",
        "scale_out_efficiency": "achieved bus bandwidth / the NICs' line rate across domains: "
        "nccl-tests busbw ~80-90% of the NICs' rate (nccl-tests PERFORMANCE.md); "
        "`planner calibration link` measures it",
        "latency_intra_s": "heuristic NCCL per-hop latency inside a node (docs/formulas.md §4.2)",
        "latency_inter_s": "heuristic NCCL per-hop latency across nodes (docs/formulas.md §4.2)",
        "tp_overlap_fraction": "with tp_comm_overlap, the share of TP collective time hidden "
        "under GEMMs (Megatron --tp-comm-overlap, Wang et al. 2023 'Overlap communication with "
        "dependent computation'); heuristic, no published row checks it",
        "replicated_elementwise_fraction": "share of the elementwise traffic outside the "
        "tensor-parallel regions (norms, dropouts), replicated on every TP rank without "
        "sequence parallelism: Korthikanti et al. 2022 §4.2.2, 10 of 34 sbh bytes per layer",
        "cp_overlap": "ring attention overlaps the K/V exchange with attention compute",
        "reference_efficiency": "expected efficiency of the a100-80gb profile, the hardware the "
        "GEMM constant was calibrated on; other hardware scales gemm_efficiency_max by its "
        "own profile's expected efficiency / this (a TPU or MI300X profile with a lower "
        "published MFU gets slower GEMMs)",
        "fp8_gemm_ratio": "FP8 block GEMMs' share of the FP8 peak over BF16 GEMMs' share of "
        "theirs, casts and scaling folded in; set on NVIDIA dgxc-benchmarking's Llama 3.1 70B "
        "FP8 on 64 H100 (NeMo v25.04; the other FP8 rows held out, docs/validation.md); "
        "attention and the output layer stay BF16 (Transformer Engine's defaults)",
        "score_passes": "unfused attention: softmax, mask and dropout read/write the s^2 "
        "score matrix ~16 times per layer over forward and backward (Korthikanti §4.1's "
        "5 a s^2 b bytes saved); calibrated on Megatron-LM Table 1 and Korthikanti Table 5",
    }


def calibrated(perf: PerfParams, scale: float) -> PerfParams:
    """The constants a single-device measurement can see, scaled so that the model's compute
    runs ``scale`` x as fast (measured / predicted throughput of that run): GEMM and attention
    efficiency up, memory-bound traffic down. Communication, bubble and layout terms stay the
    model's, since one device cannot measure them."""
    return replace(perf, gemm_efficiency_max=perf.gemm_efficiency_max * scale,  # capped where
                   # the hardware's scaled value is (gemm_efficiency_max)
                   attention_efficiency=min(1.0, perf.attention_efficiency * scale),
                   elementwise_bytes_per_h=perf.elementwise_bytes_per_h / scale,
                   eager_elementwise_bytes_per_h=perf.eager_elementwise_bytes_per_h / scale,
                   score_passes=perf.score_passes / scale)


DEFAULT_PERF = PerfParams()  # the constants as calibrated (docs/validation.md)
# Bumped when a change moves predicted step times: a stored calibration (measured / predicted)
# made against another version is not applied (calibrations from multi-device runs,
# `planner calibration add`, depend on every term). 2: attention as executed, --kernels
# (2026-12-01). 3: Megatron's async TP backward and fused gradient accumulation (into fp32
# gradients only), the unfused accumulation pass elsewhere (2026-12-01, later). 4: ZeRO-2
# reduce-scatters every micro-batch, column-parallel shares of active weights (2026-12-01).
# 5: FP8 attention and output layer at the 16-bit peak, fp8_gemm_ratio; HSDP's replica
# all-reduce shares the backward with the shard group's collectives (2026-12-02).
PERF_MODEL_VERSION = 5
CALIBRATED = ("gemm_efficiency_max", "attention_efficiency", "elementwise_bytes_per_h",
              "eager_elementwise_bytes_per_h", "score_passes")


def gemm_efficiency_max(hw: HardwareProfile, perf: PerfParams) -> float:
    """Large-GEMM efficiency on this hardware: the calibrated constant scaled by the profile's
    expected efficiency relative to the calibration hardware's, at most the peak."""
    return min(1.0, perf.gemm_efficiency_max * hw.efficiency.expected / perf.reference_efficiency)


def attention_kernel_fraction(hw: HardwareProfile, kernel: str) -> float:
    """The fused attention kernel's speed relative to the one written for the device: 1 for
    native, the profile's fa2_attention_fraction for FlashAttention-2 (0.57 on Hopper:
    FlashAttention-3 is 1.5-2x as fast there, Shah et al. 2024)."""
    if kernel == "native":
        return 1.0
    fig = hw.fa2_attention_fraction
    if fig is None:
        raise SpecError(f"--attention-kernel {kernel}: {hw.name} has no fa2_attention_fraction "
                        "figure (FlashAttention-2 does not run there, or its speed there is not "
                        "published); use --attention-kernel native (attention_kernel in the "
                        "Python API)")
    return fig.value


def _sat(x: Any, half: float) -> Any:
    return x / (x + half)


def step_time_terms(model: ModelSpec, training: TrainingSpec, lay: Degrees,
                    hw: HardwareProfile, params: ParamCount, flops: dict[str, float],
                    perf: PerfParams = PerfParams()) -> dict[str, Any]:
    """Seconds per optimizer step, by component, for one layout or arrays of layouts.

    ``flops`` holds per-token totals over all layers: 'model', 'attention_fwd' (forward
    score+value FLOPs), 'attention_recompute' (a fused backward's QK^T recompute),
    'attention_executed' (FLOPs the attention kernels execute per counted FLOP),
    'layers_matmul' (active matmul params in the blocks) and 'expert_matmul'.
    """
    peak = hw.peak_flops_per_s(training.precision)
    beta = activation_bytes_per_element(training.precision)
    s, h, L = training.seq_len, model.d_model, model.num_layers
    t, p, c, d, e = lay.tp, lay.pp, lay.cp, lay.dp, lay.ep
    m = lay.micro_batches
    per_stage = stage_layers(L, lay)  # the busiest (first) stage sets the pace
    tokens_mb = lay.micro_batch_size * s / c  # tokens one device group handles per micro-batch
    rc_any, rc_full = lay.recompute >= 1, lay.recompute == 2
    sp = lay.sequence_parallel

    attn_fwd = flops["attention_fwd"]
    # forward + backward (2x), fused backward's QK^T recompute, framework recompute; as the
    # kernels execute them (a fused kernel skips causal attention's masked half)
    attn_hw = (3 * attn_fwd + flops["attention_recompute"] + attn_fwd * rc_any) * \
        flops["attention_executed"]
    gemm_hw = flops["model"] - 3 * attn_fwd + 2 * flops["layers_matmul"] * rc_full
    e_max, half, half_t = gemm_efficiency_max(hw, perf), perf.gemm_half_dim, perf.gemm_half_tokens
    e_gemm = e_max * _sat(tokens_mb, half_t) * _sat(h / t, half)
    # FP8 training (Transformer Engine, Megatron-Core) runs the block linears in FP8, at a
    # smaller share of the FP8 peak than BF16 GEMMs reach of theirs (fp8_gemm_ratio, with
    # the casts and scaling folded in), and keeps the attention core and the output layer
    # in BF16: TE's FP8 attention is opt-in (NVTE_FP8_DPA), Megatron's output layer is not a
    # TE module (DeepSeek-V3 §3.3.1 keeps both in BF16 too). Those run at the 16-bit peak.
    # Where FP8 at that ratio is no faster than the 16-bit path (TPU v5p/v6e, Gaudi 3 and
    # Trainium 1 list the same peak for both), the linears are taken to run at the 16-bit rate.
    fp8 = training.precision == "fp8"
    peak16 = (hw.peak_flops_per_s("bf16") or hw.peak_flops_per_s("fp16") or peak) if fp8 \
        else peak
    block_peak = vmax(peak * perf.fp8_gemm_ratio, peak16) if fp8 else peak
    share = tokens_mb / t * per_stage / L  # this device's share of per-token FLOPs
    # Routed experts multiply small matrices: each sees tokens x k x ep / E rows.
    expert_hw = 6 * flops["expert_matmul"] * (1 + rc_full / 3)
    e_expert = e_gemm
    if model.moe:
        rows = tokens_mb * model.moe.experts_per_token * e / model.moe.num_experts
        e_expert = e_max * _sat(rows, half_t) * _sat(h / t, half)
    # the output layer (LM head), in BF16 under FP8 (its FLOPs are not recomputed)
    head_hw = vmin(flops["head_flops"], gemm_hw - expert_hw) * fp8
    gemm_s = ((gemm_hw - expert_hw - head_hw) / e_gemm + expert_hw / e_expert) * share / \
        block_peak + head_hw / e_gemm * share / peak16
    attn_s = attn_hw * share / (peak16 * perf.attention_efficiency *
                                attention_kernel_fraction(hw, training.attention_kernel))
    hbm = hw.hbm_bandwidth_tb_per_s.value * 1e12
    # Memory-bound traffic per token per layer: norms/activations/residuals (~k * h), and
    # without fused attention the s^2 softmax/dropout passes (~10 a s); plus the loss over
    # the vocabulary (fp32 softmax and its gradient), charged to the critical path. Without
    # sequence parallelism the norms and dropouts outside the TP regions run on every TP
    # rank (Korthikanti et al. 2022 §4.2.2: 10 of the 34 sbh bytes per layer). Eager
    # kernels move several times the fused traffic (kernels: eager).
    per_h = perf.elementwise_bytes_per_h if training.kernels == "fused" else \
        perf.eager_elementwise_bytes_per_h
    per_layer = per_h * h * beta
    replicated = perf.replicated_elementwise_fraction * per_layer * (1 - sp) * (t > 1)
    per_layer_tp = (per_layer - replicated) / t + replicated
    if not training.flash_attention:
        per_layer_tp = per_layer_tp + perf.score_passes * model.num_heads * s * beta / t
    ew_bytes = per_layer_tp * tokens_mb * per_stage * (1 + rc_full / 3)
    ew_bytes = ew_bytes + 16 * model.vocab_size * tokens_mb / t
    # QLoRA: each forward and backward (and a full recompute) dequantises every NF4 weight
    ew_bytes = ew_bytes + (2 + rc_full) * dequant_bytes_per_pass(model, training.finetune) * \
        per_stage / (L * t)
    # Gradient accumulation outside the GEMMs: PyTorch's AccumulateGrad (and Megatron-LM
    # before its gradient-accumulation fusion, 2022-02) adds each later micro-batch's weight
    # gradients into the accumulated ones in their own pass, reading both and writing one
    # (3 x the gradient dtype per parameter), on the shards where gradients are
    # reduce-scattered every micro-batch (ZeRO-3). Megatron's fused weight-gradient GEMM
    # accumulates into the fp32 main_grad in its epilogue, so it pays nothing here.
    routed = routed_params(params, model)
    dense_local = (params.total - routed) / (t * p)  # owned before ZeRO sharding
    expert_local = routed / (t * p * e)
    # gradients and optimizer: trainable parameters only (all of them but when fine-tuning)
    grad_dense, grad_expert = trainable_params_local(model, training, dense_local,
                                                     expert_local, t * p)
    meg = lay.framework == 1
    g_acc = framework_state_bytes(training.optimizer, training.precision, lay.framework,
                                  training.grad_dtype)[1]
    # Megatron fuses only into fp32 gradients (--bf16, or --accumulate-allreduce-grads-in-fp32;
    # its arguments.py turned gradient_accumulation_fusion off otherwise from 2022-02 until
    # 07916bf245, 2022-09-27, which fuses into fp16 too: planner follows the 2022 code its
    # validation rows ran, so fp16 gradients pay the pass). bf16 gradients exist only in the
    # later code (Megatron-core --grad-reduce-in-bf16), which fuses into them. With offload the
    # gradients accumulate on the host instead.
    fp16_grads = (training.grad_dtype or training.precision) == "fp16"
    fused = meg * (1 - (g_acc != 4) * fp16_grads)
    accum_bytes = accumulation_bytes(training, lay, grad_dense, grad_expert) * (1 - fused) * \
        (lay.offload == 0)
    ew_bytes = ew_bytes + accum_bytes * (m - 1) / m
    compute_mb = gemm_s + attn_s + ew_bytes / hbm

    domain = hw.scale_up_domain_devices.value
    up = hw.scale_up_bandwidth_gb_per_s_one_way.value * 1e9 * perf.scale_up_efficiency
    out = hw.scale_out_bandwidth_gb_per_s.value * 1e9 * perf.scale_out_efficiency
    lat = (perf.latency_intra_s, perf.latency_inter_s)

    bw, la = group_link(1, t, domain, up, out, *lat)
    tp_bytes = tokens_mb * h * beta
    tp_one = per_stage * collective_seconds(tp_bytes, 2 * (t - 1) / t, t, bw, la, 2 * (t - 1))
    # Megatron-LM's SP saves the sequence-sharded input of QKV and FC1 and all-gathers it
    # again in backward for the weight gradients: two all-gathers, one all-reduce's volume
    tp_raw = (4 + 2 * rc_full + sp * meg) * tp_one
    # Megatron-LM issues the column-parallel layers' (QKV, FC1) backward collectives
    # asynchronously under their own GEMMs: without SP the input-gradient all-reduce under
    # the weight-gradient GEMM (async tensor-model-parallel all-reduce, 2021-09); with SP the
    # input re-gather under the input-gradient GEMM and the reduce-scatter under the
    # weight-gradient one (LinearWithGradAccumulationAndAsyncCommunication, 2022-03). Two
    # all-reduces' worth per layer, each hidden only under its own layer's GEMMs: without SP
    # the weight-gradient half of that layer's backward GEMM time, with SP both halves.
    bwd_s = gemm_s * 2 / (3 + rc_full) * (1 + sp) / 2  # the GEMMs each collective can use
    qkv_share, up_share = column_parallel_shares(model, params)
    async_hidden = meg * (vmin(tp_one, bwd_s * qkv_share) + vmin(tp_one, bwd_s * up_share))
    # --tp-comm-overlap (userbuffers) / async TP: the collectives run under the GEMMs
    overlap_hidden = lay.tp_comm_overlap * vmin(perf.tp_overlap_fraction * tp_raw,
                                                perf.tp_overlap_fraction * gemm_s)
    tp_mb = tp_raw - vmax(async_hidden, overlap_hidden)

    kv_width = ((model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) if model.mla
                else 2 * model.kv_heads * model.d_head)
    bw, la = group_link(t, c, domain, up, out, *lat)
    cp_mb = per_stage * 3 * collective_seconds(tokens_mb * kv_width * beta / t, c - 1, c, bw,
                                               la, c - 1)
    cp_exposed_mb = vmax(0, cp_mb - perf.cp_overlap * attn_s)

    ep_mb = 0.0
    if model.moe:
        k = model.moe.experts_per_token
        bw, la = group_link(t * c, e, domain, up, out, *lat)
        a2a = collective_seconds(tokens_mb / t * k * h * beta, (e - 1) / e, e, bw, la, e - 1)
        ep_mb = 4 * (model.num_moe_layers * per_stage / L) * a2a

    bw, la = group_link(t * c * d, p, domain, up, out, *lat)
    pp_mb = 2 * lay.virtual_stages * collective_seconds(tokens_mb * h * beta / t, 1, p, bw, la,
                                                        1)

    busy_mb = compute_mb + tp_mb + ep_mb + cp_exposed_mb
    bubble_frac = (p - 1) / (lay.virtual_stages * m) * (lay.pipeline_schedule != 2) + \
        (p - 1) / m * (lay.pipeline_schedule == 2)

    dp_total, dp_exposed = data_parallel(
        model, training, lay, ((dense_local, grad_dense), (expert_local, grad_expert)),
        compute_mb, per_stage, domain, up, out, lat)

    w_b, g_b, o_b = state_bytes_per_param(training.optimizer, training.precision)
    z = lay.zero_stage
    opt_params = 0.0
    for local, n in ((grad_dense, lay.shard * c), (grad_expert, vmax(1, lay.shard * c / e))):
        opt_params = opt_params + local / (1 + (n - 1) * (z >= 1))
    optimizer_s = 2 * opt_params * (w_b + g_b + o_b) / hbm
    # Offload (ZeRO-Offload, FSDP CPUOffload): the step runs on the host's CPUs and the
    # gradients and parameters cross the host link instead (estimators/offload.py)
    off = lay.offload
    host_s = offload_transfer_s(opt_params, m, off, grad_bytes=g_b, param_bytes=w_b) + \
        cpu_optimizer_s(opt_params, hw.devices_per_node.value, off)
    optimizer_s = optimizer_s + (host_s - optimizer_s) * (off >= 1)

    return {
        "compute": m * compute_mb, "tp_comm": m * tp_mb, "cp_comm": m * cp_exposed_mb,
        "ep_comm": m * ep_mb, "pp_comm": m * pp_mb, "bubble": bubble_frac * m * busy_mb,
        "dp_comm": dp_exposed, "optimizer": optimizer_s,
        "gemm_efficiency": e_gemm,
        # the compute term's parts, for comparing with a kernel-level profile
        "compute_gemm": m * gemm_s, "compute_attention": m * attn_s,
        "compute_memory": m * ew_bytes / hbm,
        # communication before overlap, for checking volumes by hand
        "tp_comm_total": m * tp_raw, "dp_comm_total": dp_total, "cp_comm_total": m * cp_mb,
    }


def overlapped_comm_s(terms: dict[str, Any]) -> Any:
    """Communication the model runs under compute and charges nothing for: the DP, TP and
    CP collectives before overlap less what is left exposed. Kernels that share a GPU slow
    each other (SMs, HBM), which the model does not charge; this is how much it assumes
    away (docs/performance-model.md, "Overlap")."""
    return sum(terms[f"{k}_comm_total"] - terms[f"{k}_comm"] for k in ("dp", "tp", "cp"))


def column_parallel_shares(model: ModelSpec, params: ParamCount) -> tuple[float, float]:
    """Shares of the step's GEMM FLOPs (LM head included) in the two column-parallel layers
    whose backward collectives Megatron-LM overlaps, QKV (or MLA's input projections) and the
    dense FFN's first projection(s): each hides only under its own layer's GEMMs (it is
    waited for before the next layer's backward starts). Routed experts are left out: their
    tensor-parallel traffic goes through the token dispatcher, not these layers."""
    h = model.d_model
    qkv = attention_matmul_params(model) - model.num_heads * model.v_dim * h
    dense = model.num_dense_ffn_layers / model.num_layers
    up = h * model.ffn_hidden_size * (2 if model.ffn_type == "gated" else 1) * dense
    per_layer = params.matmul_active / model.num_layers
    return qkv / per_layer, up / per_layer


def flops_inputs(model: ModelSpec, training: TrainingSpec, params: ParamCount) -> dict:
    """Per-token FLOP totals the step-time model needs (see step_time_terms), taken from
    flops.training_flops so both models count the same FLOPs."""
    fl = training_flops(model, training, params)
    k = model.moe.experts_per_token if model.moe else 0
    expert = params.expert_matmul * k * params.num_moe_layers  # routed-expert weights used
    ft = training.finetune
    grad = 1.0 if ft is None or ft.mode != "partial" else \
        min(ft.trainable_layers or 0, model.num_layers) / model.num_layers
    return {"model": fl.model_per_token, "attention_fwd": fl.attention_per_token / 3,
            "attention_recompute": flash_backward_recompute_flops_per_token(model, training),
            "attention_executed": executed_attention_fraction(model, training),
            "layers_matmul": params.layers_matmul_active * grad, "expert_matmul": expert,
            "head_flops": _head_flops_per_token(training, params)}


def _head_flops_per_token(training: TrainingSpec, params: ParamCount) -> float:
    """The output layer's FLOPs a token: forward, input gradient and weight gradient (6 V h),
    or without the weight gradient where a fine-tune freezes it (4 V h)."""
    ft = training.finetune
    frozen = ft is not None and ft.mode != "full" and not ft.train_lm_head
    return (4.0 if frozen else 6.0) * params.vocab_times_width


COMPONENTS = ("compute", "tp_comm", "cp_comm", "ep_comm", "pp_comm", "bubble", "dp_comm",
              "optimizer")


def step_seconds(terms: dict[str, Any]) -> Any:
    """Total step time from its components."""
    return sum(terms[k] for k in COMPONENTS)
