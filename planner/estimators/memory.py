"""Memory per device for a training layout (docs/formulas.md §3).

Model states follow ZeRO's accounting (Rajbhandari et al. 2020 §3); activations are derived per
architecture (Korthikanti et al. 2022 §4, generalised to GQA / gated FFN / MoE / MLA); pipeline
stages hold in-flight micro-batches as in 1F1B (Korthikanti Eq. 5). The core (`memory_terms`)
is branch-free so that it evaluates one layout or a numpy array of layouts (see vec.py).
"""

from __future__ import annotations

from typing import Any

from planner.estimators import finetune_memory as ftm
from planner.estimators.model_state import stage_state_terms
from planner.estimators.params import ParamCount, count_params
from planner.estimators.vec import Degrees, vmax, vmin
from planner.results import frozen
from planner.specs.model import ModelSpec
from planner.specs.training import ParallelismSpec, TrainingSpec

GIB = 2**30

@frozen
class MemoryDefaults:
    """Heuristic memory terms; each is listed in the plan's assumptions."""

    runtime_overhead_bytes: float = 1.5 * GIB  # CUDA context + NCCL + workspaces (§3.6)
    fragmentation_fraction: float = 0.05  # allocator slack over the accounted bytes
    # Loss buffers per logit element at the start of backward: the fp32 log-probs autograd
    # saved + the fp32 gradient of the NLL + the fp32 gradient of the log-softmax, alive
    # together (logits -> .float() -> cross_entropy, in bf16 or fp32). Measured on an H100,
    # docs/validation/2026-11-23-h100.md; docs/formulas.md §3.4 gives 8-16 B as the range.
    logits_bytes_per_element: float = 12.0


@frozen
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
    dequant_workspace_bytes: float = 0.0  # QLoRA: one weight dequantised at a time

    @property
    def total_bytes(self) -> float:
        return (
            self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
            + self.activations_bytes + self.logits_bytes + self.fsdp_buffer_bytes
            + self.runtime_overhead_bytes + self.fragmentation_bytes
            + self.dequant_workspace_bytes
        )

    @property
    def headroom_bytes(self) -> float:
        """Capacity minus need (negative when it does not fit)."""
        return self.capacity_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes


def activation_bytes_per_element(precision: str) -> int:
    """Bytes per saved activation element: 4 in fp32/tf32, else 2 (fp8 GEMMs keep bf16 I/O)."""
    return 4 if precision in ("fp32", "tf32") else 2


def _per_token_widths(model: ModelSpec, moe_layer: bool) -> tuple[float, float, float, float]:
    """(replicated, TP-sharded, fp32 extra, gated FFN width) elements a block saves per token
    (no recompute); the last is the FFN width whose 4 eager SwiGLU tensors a fused kernel
    saves as 3 (0 for a plain FFN)."""
    h, a, g = model.d_model, model.num_heads, model.kv_heads
    if model.parallel_block:  # one block input feeds the norm(s); their outputs feed both
        replicated = h + min(model.norms_per_layer, 2) * h
    else:
        replicated = (model.norms_per_layer + 2) * h  # norm inputs + the 2 block inputs
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        sharded = (2 * m.q_lora_rank if m.q_lora_rank else 0)  # q_a out + its norm out
        sharded += (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank  # latent, norm out
        sharded += 2 * a * qk + 2 * a * m.v_head_dim  # Q, K, V, attention output
    else:
        d = model.d_head
        sharded = 2 * a * d + 2 * g * d  # Q and attention output; K and V
        if model.qk_norm != "none":
            sharded += a * d + g * d  # the QK-norms' inputs
    gated = model.ffn_type == "gated"
    per_width = 4 if gated else 2  # gate, act, up, product | up, act
    fp32 = 4 * a  # log-sum-exp per head of fused attention (bytes)
    if moe_layer and model.moe:
        k = model.moe.experts_per_token
        width = k * model.moe.expert_ffn_hidden_size + model.moe.shared_width
        sharded += k * 2 * h  # expert inputs + outputs
        fp32 += 4 * model.moe.num_experts  # router probabilities
    else:
        width = model.ffn_hidden_size
    return replicated, sharded + per_width * width, fp32, width * gated


def layer_activation_bytes_v(model: ModelSpec, training: TrainingSpec, lay: Degrees,
                             moe_layer: bool) -> Any:
    """Bytes one block saves for backward for one micro-batch, per device, no recomputation.

    Llama-style block (docs/formulas.md §3.3): norm inputs + the two block inputs + Q, K, V +
    attention output + FFN intermediates; fp32 softmax statistics with fused attention, or
    the s^2 score matrix without it (dropped by selective/full recompute). TP divides all
    but the norm and block inputs; sequence parallelism divides those too; CP divides s.
    """
    beta = activation_bytes_per_element(training.precision)
    replicated, sharded, fp32, gated = _per_token_widths(model, moe_layer)
    if training.finetune is not None:
        replicated, sharded = ftm.finetune_widths(model, training.finetune, moe_layer,
                                                  replicated, sharded, beta)
    # Megatron's fused SwiGLU (bias_swiglu_impl) saves its fc1 output (gate and up, 2f) and
    # the fc2 input (f): 3 FFN-width tensors where eager PyTorch saves 4.
    sharded = sharded - gated * (lay.framework == 1)
    # Dropout (Korthikanti §4.1): a 1-byte mask after attention and one after the MLP, in the
    # (sequence-parallel) region TP does not split; without fused attention also the score
    # dropout's mask (1 byte) and output (beta) per score element. Fused attention regenerates
    # its dropout mask from the RNG state in backward and saves none (Dao et al. 2022 §3.1).
    masks = 2 * model.d_model if training.dropout else 0
    if training.flash_attention:
        scores = 0.0
    else:
        fp32 -= 4 * model.num_heads
        per_score = 2 * beta + 1 if training.dropout else beta  # softmax out [+ mask, out]
        scores = per_score * model.num_heads * training.seq_len * (lay.recompute == 0)
    rep_div = 1 + (lay.tp - 1) * lay.sequence_parallel
    per_token = beta * (replicated / rep_div + sharded / lay.tp) + masks / rep_div + \
        (fp32 + scores) / lay.tp
    return lay.micro_batch_size * training.seq_len / lay.cp * per_token + \
        ftm.expert_merge_bytes(model, training, lay, moe_layer)


def layer_activation_bytes(model: ModelSpec, training: TrainingSpec, par: ParallelismSpec,
                           moe_layer: bool) -> float:
    """Scalar form of layer_activation_bytes_v for one layout."""
    return layer_activation_bytes_v(model, training, Degrees.from_specs(training, par), moe_layer)


def stage_layers(num_layers: int, lay: Degrees) -> Any:
    """Layers on the busiest pipeline stage: v chunks of ceil(L / (p v)) layers (uneven
    stages give the extra layers to the first ones, as Llama 3 did for 126 layers)."""
    chunks = lay.pp * lay.virtual_stages
    return -(-num_layers // chunks) * lay.virtual_stages


def in_flight_micro_batches(lay: Degrees) -> Any:
    """Micro-batches whose activations the first stage holds at its peak (§3.5)."""
    m, p = lay.micro_batches, lay.pp
    one_f_one_b = vmin(p, m)
    interleaved = one_f_one_b * (1 + (p - 1) / (p * lay.virtual_stages))
    # one model chunk per rank (v = 1) is plain 1F1B, whatever the schedule is called
    held = one_f_one_b + (interleaved - one_f_one_b) * (lay.pipeline_schedule == 1) * (lay.virtual_stages > 1)
    held = held + (m - held) * (lay.pipeline_schedule == 2)  # GPipe keeps every micro-batch
    return 1 + (held - 1) * (p > 1)


@frozen
class _LayerSplit:
    dense_shared: float  # non-expert params of a dense-FFN layer
    moe_shared: float  # non-expert params of an MoE layer (attention, router, shared experts)
    moe_routed: float  # routed-expert params of an MoE layer


def _layer_split(p: ParamCount, model: ModelSpec) -> _LayerSplit:
    routed = 0.0
    if p.moe_layer and model.moe:
        e = model.moe
        routed = float(p.expert_params * e.num_experts)
    return _LayerSplit(
        dense_shared=float(p.dense_layer.total) if p.dense_layer else 0.0,
        moe_shared=(p.moe_layer.total - routed) if p.moe_layer else 0.0,
        moe_routed=routed,
    )


def saved_activation_bytes(model: ModelSpec, training: TrainingSpec,
                           par: ParallelismSpec) -> float:
    """Bytes autograd keeps for backward for one micro-batch on one device (no pipeline,
    no recompute): every block, the final norm's input and output, and the fp32 log-probs
    the loss saves (docs/formulas.md §3.3-3.4). This is what `planner validate` measures."""
    lay = Degrees.from_specs(training, par)
    p = count_params(model)
    dense = layer_activation_bytes_v(model, training, lay, moe_layer=False)
    moe = layer_activation_bytes_v(model, training, lay, moe_layer=True) if model.moe else 0.0
    tokens = training.micro_batch_size * training.seq_len / par.cp
    beta = activation_bytes_per_element(training.precision)
    final = 2 * tokens * model.d_model * beta / (par.tp if par.sp else 1)
    loss = 4 * tokens * model.vocab_size / par.tp
    grad = ftm.grad_layer_fraction(model, training, lay, model.num_layers, last=False)
    edges = ftm.frozen_edge_activation_bytes(model, training, tokens) if par.tp == 1 else 0.0
    return (p.num_dense_layers * dense + p.num_moe_layers * moe) * grad + final + loss - edges


def routed_params(p: ParamCount, model: ModelSpec) -> float:
    """Routed-expert parameters of the whole model (0 for dense models)."""
    return _layer_split(p, model).moe_routed * p.num_moe_layers


def memory_terms(model: ModelSpec, training: TrainingSpec, lay: Degrees,
                 defaults: MemoryDefaults, params: ParamCount | None = None) -> dict[str, Any]:
    """Every memory term (bytes) of the most loaded stage, for one layout or arrays of them."""
    p = params or count_params(model)
    acts = (layer_activation_bytes_v(model, training, lay, moe_layer=False),
            layer_activation_bytes_v(model, training, lay, moe_layer=True) if model.moe
            else 0.0)
    split = _layer_split(p, model)
    first = _stage_terms(model, training, lay, defaults, p, split, acts, last=False)
    last = _stage_terms(model, training, lay, defaults, p, split, acts, last=True)
    last_binds = (last["total"] > first["total"]) * (lay.pp > 1)
    out = {k: first[k] + (last[k] - first[k]) * last_binds for k in first}
    out["last_binds"] = last_binds
    return out


def _stage_terms(model, training, lay: Degrees, defaults, p: ParamCount, split: _LayerSplit,
                 layer_acts: tuple, last: bool) -> dict:
    """Memory of the first (last=False) or last pipeline stage; pp=1 makes them the same.
    ``layer_acts``: one micro-batch's activation bytes of a dense and of an MoE layer."""
    per = stage_layers(model.num_layers, lay)
    n_dense_all = model.num_dense_ffn_layers
    if last:
        dense = vmax(0, vmin(per, n_dense_all - (lay.pp - 1) * per))
    else:
        dense = vmin(per, n_dense_all)
    moe = per - dense
    shared = (dense * split.dense_shared + moe * split.moe_shared) / lay.tp
    routed = moe * split.moe_routed / (lay.tp * lay.ep)
    largest = vmax(split.dense_shared * (dense > 0),
                   (split.moe_shared + split.moe_routed / lay.ep) * (moe > 0)) / lay.tp
    only_stage = lay.pp == 1
    if last:
        head = p.lm_head if p.lm_head else p.vocab_times_width * (lay.pp > 1)
        shared = shared + head / lay.tp + p.final_norm + (p.embedding + p.positions) / \
            lay.tp * only_stage
    else:
        shared = shared + (p.embedding + p.positions) / lay.tp
        shared = shared + (p.lm_head / lay.tp + p.final_norm) * only_stage
    prec = training.precision
    weights, grads, optim, fsdp = stage_state_terms(training, lay, shared, routed, largest)
    if training.finetune is not None and training.finetune.mode != "full":
        weights, grads, optim = ftm.finetune_states(model, training, lay, p, per,
                                                    shared + routed, last)

    act_dense, act_moe = layer_acts
    grad = ftm.grad_layer_fraction(model, training, lay, per, last)  # 1 but for partial
    one_mb = (dense * act_dense + moe * act_moe) * grad
    # Full recompute keeps each block's input and rebuilds one block during backward.
    beta = activation_bytes_per_element(prec)
    block_in = lay.micro_batch_size * training.seq_len / lay.cp * model.d_model * beta / \
        (1 + (lay.tp - 1) * lay.sequence_parallel)
    rebuild = vmax(act_dense * (dense > 0), act_moe * (moe > 0))
    full = lay.recompute == 2
    stored = one_mb + ((dense + moe) * block_in * grad - one_mb) * full
    held = 1 if last else in_flight_micro_batches(lay)
    acts = stored * held + rebuild * full * (grad > 0)
    if training.dropout and not last:  # the embedding dropout's 1-byte mask per micro-batch
        acts = acts + held * block_in / beta  # held (Korthikanti §4.3: s b h p / t with SP)
    is_last = 1 if last else only_stage
    logits = (defaults.logits_bytes_per_element * lay.micro_batch_size * training.seq_len / lay.cp
              * model.vocab_size / lay.tp) * is_last
    workspace = ftm.dequant_workspace_bytes(model, training, lay)  # QLoRA
    accounted = weights + grads + optim + acts + logits + fsdp + workspace
    frag = defaults.fragmentation_fraction * accounted
    return {
        "weights": weights, "gradients": grads, "optimizer": optim, "activations": acts,
        "logits": logits, "fsdp": fsdp, "fragmentation": frag, "workspace": workspace,
        "total": accounted + frag + defaults.runtime_overhead_bytes,
        "held": held * 1.0, "per_layer": rebuild,
    }


def memory_per_device(
    model: ModelSpec,
    training: TrainingSpec,
    par: ParallelismSpec,
    capacity_bytes: float,
    defaults: MemoryDefaults = MemoryDefaults(),
    lay: Degrees | None = None,
    params: ParamCount | None = None,
) -> MemoryBreakdown:
    """Peak memory per device on the most loaded pipeline stage (first or last).
    ``lay``/``params``: the layout's Degrees and the model's counts, when already built."""
    t = memory_terms(model, training, lay or Degrees.from_specs(training, par), defaults,
                     params)
    stage = "only" if par.pp == 1 else ("last" if t["last_binds"] else "first")
    return MemoryBreakdown(
        weights_bytes=t["weights"], gradients_bytes=t["gradients"],
        optimizer_bytes=t["optimizer"], activations_bytes=t["activations"],
        logits_bytes=t["logits"], fsdp_buffer_bytes=t["fsdp"],
        runtime_overhead_bytes=defaults.runtime_overhead_bytes,
        fragmentation_bytes=t["fragmentation"], capacity_bytes=capacity_bytes, stage=stage,
        in_flight_micro_batches=int(round(t["held"])) if stage != "last" else 1,
        activations_per_layer_bytes=t["per_layer"], dequant_workspace_bytes=t["workspace"],
    )
