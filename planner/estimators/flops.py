"""FLOP counts (docs/formulas.md §2). One multiply-accumulate = 2 FLOPs.

Training model FLOPs per token = 6 * N_mm(active) + 6 * L * a * s_eff * (d_qk + d_v)
  (= 6 N_mm + 12 L a d_h s for standard attention; PaLM App. B, Megatron Eq. 7 generalised).
Hardware FLOPs add recomputation (§2.8): selective re-runs the attention core forward;
full re-runs every block's forward (the LM head is not recomputed).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimators.params import ParamCount, count_params
from planner.specs.model import ModelSpec
from planner.specs.training import TrainingSpec


@dataclass(frozen=True)
class FlopsEstimate:
    """FLOPs of a training run and per token."""

    model_per_token: float  # forward + backward, no recomputation
    hardware_per_token: float  # including recomputation
    inference_per_token: float  # forward only, at the training sequence length
    attention_per_token: float  # the score/value part of model_per_token
    tokens: float

    @property
    def model_total(self) -> float:
        return self.model_per_token * self.tokens

    @property
    def hardware_total(self) -> float:
        return self.hardware_per_token * self.tokens


def attention_forward_flops_per_token(model: ModelSpec, context_len: float) -> float:
    """QK^T and (softmax)V FLOPs per token per forward over all layers: 2*a*s*(d_qk + d_v)*L."""
    return 2.0 * model.num_heads * context_len * (model.qk_dim + model.v_dim) * model.num_layers


def flash_backward_recompute_flops_per_token(model: ModelSpec, training: TrainingSpec) -> float:
    """FLOPs a fused (FlashAttention-style) backward adds by recomputing QK^T, per token over
    all layers: 2*a*s*d_qk*L (Dao 2023 §3.1: backward = 2.5x the forward's matmuls). Not in
    hardware_per_token, which counts framework recomputation only (§2.8)."""
    if not training.flash_attention:
        return 0.0
    s_eff = effective_context(training.seq_len, training.attention_flops)
    return 2.0 * model.num_heads * s_eff * model.qk_dim * model.num_layers


def effective_context(seq_len: int, convention: str) -> float:
    """Keys each query attends to: s (full convention) or (s+1)/2 (causal average)."""
    return float(seq_len) if convention == "full" else (seq_len + 1) / 2.0


def training_flops(
    model: ModelSpec, training: TrainingSpec, params: ParamCount | None = None
) -> FlopsEstimate:
    """Model and hardware FLOPs for a training run (docs/formulas.md §2.1, §2.8)."""
    p = params or count_params(model)
    s_eff = effective_context(training.seq_len, training.attention_flops)
    attn_fwd = attention_forward_flops_per_token(model, s_eff)
    model_tok = 6.0 * p.matmul_active + 3.0 * attn_fwd
    if training.recompute == "none":
        extra = 0.0
    elif training.recompute == "selective":
        extra = attn_fwd  # one more forward of the attention core
    else:  # full: every block's forward runs again; the LM head does not
        extra = 2.0 * p.layers_matmul_active + attn_fwd
    return FlopsEstimate(
        model_per_token=model_tok,
        hardware_per_token=model_tok + extra,
        inference_per_token=2.0 * p.matmul_active + attn_fwd,
        attention_per_token=3.0 * attn_fwd,
        tokens=training.tokens,
    )


def decode_flops_per_token(model: ModelSpec, context_len: int) -> float:
    """Forward FLOPs to generate one token at a given context (docs/formulas.md §2.11)."""
    p = count_params(model)
    return 2.0 * p.matmul_active + 2.0 * model.num_heads * context_len * (
        model.qk_dim + model.v_dim
    ) * model.num_layers
