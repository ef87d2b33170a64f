"""Memory per device for a training layout (formulas.md §3).

Model states follow ZeRO's accounting (Rajbhandari et al. 2020 §3); activations are derived per
architecture (Korthikanti et al. 2022 §4, generalised to GQA / gated FFN / MoE / MLA); pipeline
stages hold in-flight micro-batches as in 1F1B (Korthikanti Eq. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimators.params import LayerParams, ParamCount, count_params
from planner.specs.model import ModelSpec
from planner.specs.training import ParallelismSpec, TrainingSpec

GIB = 2**30

# (weights, gradients, optimizer state) bytes per parameter, formulas.md §3.1.
_STATE_BYTES = {
    "adamw": (2, 2, 12),  # bf16/fp16 weights + grads; fp32 master, m, v (ZeRO K=12)
    "adamw_pure_bf16": (2, 2, 8),  # bf16 weights, fp32 m and v, no master copy
    "adamw_all_bf16": (2, 2, 4),  # weights, grads, m, v all bf16
    "adamw_8bit": (2, 2, 6),  # fp32 master + int8 m, v (Dettmers et al. 2022)
    "adamw_fp8": (1, 4, 8),  # DeepSeek-V3 §3.3: fp8 weights, fp32 grads+master, bf16 m, v
    "sgd_momentum": (2, 2, 8),  # fp32 master + fp32 momentum
}
_STATE_BYTES_FP32 = {"adamw": (4, 4, 8), "sgd_momentum": (4, 4, 4)}


@dataclass(frozen=True)
class MemoryDefaults:
    """Heuristic memory terms; each is listed in the plan's assumptions."""

    runtime_overhead_bytes: float = 1.5 * GIB  # CUDA context + NCCL + workspaces (§3.6)
    fragmentation_fraction: float = 0.05  # allocator slack over the accounted bytes
    logits_bytes_per_element: float = 10.0  # bf16 logits + fp32 log-probs + fp32 grad (§3.4)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per device on the most loaded pipeline stage."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    logits_bytes: float
    fsdp_buffer_bytes: float
    runtime_overhead_bytes: float
    fragmentation_bytes: float
    capacity_bytes: float
    stage: str  # "only", "first" or "last": the stage the numbers describe
    in_flight_micro_batches: int
    activations_per_layer_bytes: float

    @property
    def total_bytes(self) -> float:
        return (
            self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
            + self.activations_bytes + self.logits_bytes + self.fsdp_buffer_bytes
            + self.runtime_overhead_bytes + self.fragmentation_bytes
        )

    @property
    def headroom_bytes(self) -> float:
        """Capacity minus need (negative when it does not fit)."""
        return self.capacity_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes


def state_bytes_per_param(optimizer: str, precision: str) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per parameter for a recipe (formulas.md §3.1)."""
    if precision in ("fp32", "tf32") and optimizer in _STATE_BYTES_FP32:
        return _STATE_BYTES_FP32[optimizer]
    return _STATE_BYTES[optimizer]


def model_state_bytes(
    num_params: float, optimizer: str, precision: str, zero_stage: int, shards: int
) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per device for ``num_params`` local parameters.

    ZeRO (Rajbhandari et al. 2020 §3): stage 1 shards optimizer state over ``shards``
    data-parallel ranks, stage 2 also gradients, stage 3 also weights.
    """
    w, g, o = state_bytes_per_param(optimizer, precision)
    return (
        w * num_params / (shards if zero_stage >= 3 else 1),
        g * num_params / (shards if zero_stage >= 2 else 1),
        o * num_params / (shards if zero_stage >= 1 else 1),
    )


def activation_bytes_per_element(precision: str) -> int:
    """Bytes per saved activation element: 4 in fp32/tf32, else 2 (fp8 GEMMs keep bf16 I/O)."""
    return 4 if precision in ("fp32", "tf32") else 2


def layer_activation_bytes(
    model: ModelSpec, training: TrainingSpec, par: ParallelismSpec, moe_layer: bool
) -> float:
    """Bytes one block saves for backward for one micro-batch, per device, no recomputation.

    Llama-style block (formulas.md §3.3): norm inputs + the two block inputs (norm outputs)
    + Q, K, V + attention output + FFN intermediates; fp32 softmax statistics with fused
    attention, or the s^2 score matrix without it. TP divides everything but the norm and
    block inputs; sequence parallelism divides those too; CP divides the sequence.
    """
    beta = activation_bytes_per_element(training.precision)
    tokens = training.micro_batch_size * training.seq_len / par.cp
    h, a, g, t = model.d_model, model.num_heads, model.kv_heads, par.tp
    replicated = (model.norms_per_layer + 2) * h  # norm inputs + 2 block inputs
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        q_path = 2 * m.q_lora_rank if m.q_lora_rank else 0  # q_a out + its norm out
        sharded = q_path + 2 * (m.kv_lora_rank + m.qk_rope_head_dim)  # latent + norm out
        sharded += 2 * a * qk + 2 * a * m.v_head_dim  # Q, K, V, attention output
    else:
        d = model.d_head
        sharded = 2 * a * d + 2 * g * d  # Q, attention output; K, V
        if model.qk_norm != "none":
            sharded += a * d + g * d  # the norms' inputs
    if model.ffn_type == "gated":
        per_width = 4  # gate out, activation out, up out, product
    else:
        per_width = 2  # up out, activation out
    if moe_layer and model.moe:
        k = model.moe.experts_per_token
        sharded += k * (2 * h + per_width * model.moe.expert_ffn_hidden_size)  # in + out
        sharded += per_width * model.moe.shared_width
        fp32_extra = 4 * model.moe.num_experts  # router probabilities, fp32
    else:
        sharded += per_width * model.ffn_hidden_size
        fp32_extra = 0
    if training.flash_attention:
        fp32_extra += 4 * a  # log-sum-exp per head
        score_bytes = 0.0
    else:
        score_bytes = beta * a * training.seq_len  # softmax output per query
        if training.recompute != "none":  # selective/full recompute drops the score matrix
            score_bytes = 0.0
    rep_div = t if par.sp else 1
    per_token = beta * (replicated / rep_div + sharded / t) + (fp32_extra + score_bytes) / t
    return tokens * per_token


def in_flight_micro_batches(par: ParallelismSpec, num_micro_batches: int) -> float:
    """Micro-batches whose activations the first stage holds at its peak (§3.5)."""
    p = par.pp
    if p == 1:
        return 1.0
    if par.pipeline_schedule == "gpipe":
        return float(num_micro_batches)
    held = float(min(p, num_micro_batches))
    if par.pipeline_schedule == "interleaved":
        held *= 1 + (p - 1) / (p * par.virtual_stages)
    return held


def _stage_layers(model: ModelSpec, par: ParallelismSpec, stage: int) -> tuple[int, int]:
    """(dense-FFN layers, MoE layers) on a pipeline stage, layers assigned in order."""
    per = model.num_layers // par.pp
    first, last = stage * per, (stage + 1) * per
    n_dense = model.num_dense_ffn_layers
    dense = max(0, min(last, n_dense) - first)
    return dense, per - dense


def _split_layer(layer: LayerParams, model: ModelSpec) -> tuple[float, float]:
    """(non-expert params, routed-expert params) of one layer."""
    if model.moe and layer.ffn_total != layer.ffn_active:
        per_expert = (layer.ffn_total - layer.ffn_active) / (
            model.moe.num_experts - model.moe.experts_per_token
        )
        experts = per_expert * model.moe.num_experts
        return layer.total - experts, experts
    return float(layer.total), 0.0


def _stage_params(p: ParamCount, model: ModelSpec, par: ParallelismSpec, stage: int):
    """(dense params per device, expert params per device, largest layer per device)."""
    n_dense, n_moe = _stage_layers(model, par, stage)
    dense = experts = largest = 0.0
    for layer, count in ((p.dense_layer, n_dense), (p.moe_layer, n_moe)):
        if layer and count:
            shared, routed = _split_layer(layer, model)
            dense += count * shared / par.tp
            experts += count * routed / (par.tp * par.ep)
            largest = max(largest, shared / par.tp + routed / (par.tp * par.ep))
    if stage == 0:
        dense += (p.embedding + p.positions) / par.tp
    if stage == par.pp - 1:
        head = p.lm_head if p.lm_head else (p.vocab_times_width if par.pp > 1 else 0)
        dense += head / par.tp + p.final_norm
    return dense, experts, largest


def memory_per_device(
    model: ModelSpec,
    training: TrainingSpec,
    par: ParallelismSpec,
    capacity_bytes: float,
    defaults: MemoryDefaults = MemoryDefaults(),
) -> MemoryBreakdown:
    """Peak memory per device on the most loaded pipeline stage (first or last)."""
    stages = [0] if par.pp == 1 else [0, par.pp - 1]
    results = [_stage_memory(model, training, par, capacity_bytes, defaults, s) for s in stages]
    return max(results, key=lambda r: r.total_bytes)


def _stage_memory(model, training, par, capacity_bytes, defaults, stage) -> MemoryBreakdown:
    p = count_params(model)
    dense, experts, largest = _stage_params(p, model, par, stage)
    # Megatron shards optimizer state over dp x cp; expert states over dp x cp / ep.
    states = [
        a + b for a, b in zip(
            model_state_bytes(dense, training.optimizer, training.precision, par.zero_stage,
                              par.dp * par.cp),
            model_state_bytes(experts, training.optimizer, training.precision, par.zero_stage,
                              max(1, par.dp * par.cp // par.ep)),
        )
    ]
    w_bytes = state_bytes_per_param(training.optimizer, training.precision)[0]
    z = par.zero_stage

    m = training.global_batch_size // (par.dp * training.micro_batch_size)
    n_dense, n_moe = _stage_layers(model, par, stage)
    per_dense = layer_activation_bytes(model, training, par, moe_layer=False)
    per_moe = layer_activation_bytes(model, training, par, moe_layer=True) if model.moe else 0.0
    one_mb = n_dense * per_dense + n_moe * per_moe
    if training.recompute == "full":  # keep each block's input; rebuild one block in backward
        beta = activation_bytes_per_element(training.precision)
        block_in = training.micro_batch_size * training.seq_len / par.cp * model.d_model * beta
        block_in /= par.tp if par.sp else 1
        one_mb = (n_dense + n_moe) * block_in
        rebuild = max(per_dense if n_dense else 0.0, per_moe if n_moe else 0.0)
    else:
        rebuild = 0.0
    held = in_flight_micro_batches(par, m) if stage == 0 else 1.0
    activations = one_mb * held + rebuild
    logits = 0.0
    if stage == par.pp - 1:
        tokens = training.micro_batch_size * training.seq_len / par.cp
        logits = defaults.logits_bytes_per_element * tokens * model.vocab_size / par.tp
    sharded_weights = z == 3 and par.dp * par.cp > 1
    fsdp = 2 * largest * w_bytes if sharded_weights else 0.0  # gathered unit + prefetch
    accounted = sum(states) + activations + logits + fsdp
    return MemoryBreakdown(
        weights_bytes=states[0],
        gradients_bytes=states[1],
        optimizer_bytes=states[2],
        activations_bytes=activations,
        logits_bytes=logits,
        fsdp_buffer_bytes=fsdp,
        runtime_overhead_bytes=defaults.runtime_overhead_bytes,
        fragmentation_bytes=defaults.fragmentation_fraction * accounted,
        capacity_bytes=capacity_bytes,
        stage="only" if par.pp == 1 else ("first" if stage == 0 else "last"),
        in_flight_micro_batches=int(round(held)) if stage == 0 else 1,
        activations_per_layer_bytes=max(per_dense, per_moe),
    )
