"""FLOPs of fine-tuning (docs/formulas.md §2.12). One multiply-accumulate = 2 FLOPs.

A frozen Linear still runs its forward (2 N) and, when anything before it trains, its
input-gradient backward (2 N), but no weight gradient: LoRA = 4 N_mm + 6 N_adapter + 3 A
per token against full training's 6 N_mm + 3 A (A = attention forward FLOPs). Partial
fine-tuning of the last n of L blocks runs no backward through the frozen blocks before
them: 2 N_mm + A forward, then 4 n/L N_layers + 2 n/L A back, plus the head's input gradient
(and weight gradient when it trains). Dequantisation (QLoRA) is memory traffic, not FLOPs.
"""

from __future__ import annotations

from planner.estimators.finetune import resolve_targets, trainable_params
from planner.estimators.params import ParamCount
from planner.results import frozen
from planner.specs.model import ModelSpec
from planner.specs.training import TrainingSpec


@frozen
class FinetuneFlops:
    """Per-token FLOPs of a fine-tuning recipe (no recomputation, then with it)."""

    model_per_token: float
    hardware_per_token: float
    attention_per_token: float  # the score/value part of model_per_token
    grad_fraction: float  # share of the blocks back-propagated through


def adapter_forward_flops_per_token(model: ModelSpec, training: TrainingSpec) -> float:
    """Forward FLOPs of the LoRA branches per token: x A then (x A) B on every targeted Linear
    (2 r (in + out) = 2 x its adapter parameters); an embedding adapter is a lookup of A
    and one r x h matmul."""
    ft = training.finetune
    t = trainable_params(model, ft)
    targets = resolve_targets(model, ft.lora_targets)
    embed = 2 * ft.lora_rank * model.d_model if "embed_tokens" in targets else 0
    emb_adapter = ft.lora_rank * (model.vocab_size + model.d_model) * ("embed_tokens" in targets)
    return 2.0 * (t.adapters - emb_adapter) + embed


def finetune_flops(model: ModelSpec, training: TrainingSpec, p: ParamCount,
                   attn_fwd: float) -> FinetuneFlops:
    """Model and hardware FLOPs per token of a partial, LoRA or QLoRA recipe (``attn_fwd``:
    the attention forward FLOPs per token over all layers)."""
    ft = training.finetune
    n_mm, n_layers, head = p.matmul_active, p.layers_matmul_active, p.vocab_times_width
    rc = training.recompute
    if ft.mode == "partial":
        frac = min(ft.trainable_layers or 0, model.num_layers) / model.num_layers
        head_bwd = 2.0 * head * (frac > 0) + 2.0 * head * ft.train_lm_head
        attention = attn_fwd * (1 + 2 * frac)
        model_tok = 2.0 * n_mm + 4.0 * n_layers * frac + head_bwd + attention
        adapters = 0.0
    else:
        frac = 1.0
        adapters = adapter_forward_flops_per_token(model, training)
        head_w = 2.0 * head * ft.train_lm_head  # the trainable copy's weight gradient
        attention = 3.0 * attn_fwd
        model_tok = 4.0 * n_mm + 3.0 * adapters + head_w + attention
        model_tok += expert_weight_grad_flops_per_token(model, ft)
        model_tok -= leading_frozen_savings_per_token(model, training,
                                                      training.flash_attention)
    extra = 0.0
    if rc == "selective":
        extra = attn_fwd * frac
    elif rc == "full":
        extra = (2.0 * n_layers + attn_fwd) * frac + adapters
    return FinetuneFlops(model_tok, model_tok + extra, attention, frac)


def expert_weight_grad_flops_per_token(model: ModelSpec, ft) -> float:
    """LoRA on fused experts (peft target_parameters): the merged weight requires grad, so
    each routed token's expert GEMMs also run their weight gradient (2 x the targeted
    expert parameters of its top-k experts, per MoE layer). The per-micro-batch merge
    (W + s lhs @ rhs and its two gradients: 6 E in out r) is not counted."""
    from planner.estimators.finetune import expert_parameters

    targeted = sum(n for name, (_, n) in expert_parameters(model).items()
                   if name in ft.expert_targets)
    if not targeted:
        return 0.0
    return 2.0 * model.moe.experts_per_token * targeted * model.num_moe_layers


def leading_frozen_savings_per_token(model: ModelSpec, training: TrainingSpec,
                                     fused_attention: bool) -> float:
    """Backward FLOPs per token that autograd skips before the first trainable module: a
    Linear computes its input gradient only when its input requires grad, so the blocks from
    the (frozen) embedding up to the first adapter skip them (and an adapter's A skips its
    own). Fused attention computes dQ, dK and dV together once any is needed; the unfused
    (math) path only those needed (dP once dQ or dK is). Walks sequential, non-MLA blocks
    with dense FFNs; stops (counting nothing further) at any other block."""
    ft = training.finetune
    if ft is None or not ft.uses_lora or ft.train_embeddings or model.mla or \
            model.parallel_block:
        return 0.0
    targets = set(resolve_targets(model, ft.lora_targets))
    if "embed_tokens" in targets:
        return 0.0
    h, a, g, d, r = model.d_model, model.num_heads, model.kv_heads, model.d_head, ft.lora_rank
    keys = _first_layer_keys(model, training)
    saved = 0.0

    def linear(name: str, n_in: int, n_out: int, grad_in: bool) -> bool:
        nonlocal saved
        if not grad_in:  # no input gradient: the base's, and the adapter A's
            saved += 2.0 * n_in * n_out + (2.0 * r * n_in if name in targets else 0.0)
        return grad_in or name in targets

    for moe in model.layer_is_moe():
        q = linear("q_proj", h, a * d, False)
        k = linear("k_proj", h, g * d, False)
        v = linear("v_proj", h, g * d, False)
        score, value = 2.0 * a * keys * model.qk_dim, 2.0 * a * keys * model.v_dim
        if not (q or k or v):
            saved += 2 * (score + value)  # no backward through attention at all
        elif not fused_attention:
            saved += score * (not q) + score * (not k) + value * (not v) + \
                value * (not (q or k))
        grad = linear("o_proj", a * d, h, q or k or v)
        if grad or moe:
            break
        f = model.ffn_hidden_size
        gate = linear("gate_proj", h, f, False) if model.ffn_type == "gated" else False
        up = linear("up_proj", h, f, False)
        if linear("down_proj", f, h, gate or up):
            break
    return saved


def _first_layer_keys(model: ModelSpec, training: TrainingSpec) -> float:
    from planner.estimators.flops import keys_per_query

    kind = (model.layer_types or ("full_attention",))[0]
    return keys_per_query(training.seq_len, kind, model.layer_attention_windows()[0],
                          training.attention_flops)
