"""FLOP counts (docs/formulas.md §2). One multiply-accumulate = 2 FLOPs.

Training model FLOPs per token = 6 * N_mm(active) + 6 * L * a * s_eff * (d_qk + d_v)
  (= 6 N_mm + 12 L a d_h s for standard attention; PaLM App. B, Megatron Eq. 7 generalised).
Hardware FLOPs add recomputation (§2.8): selective re-runs the attention core forward;
full re-runs every block's forward (the LM head is not recomputed).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.estimators.finetune_flops import finetune_flops
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


def attention_forward_flops_per_token(model: ModelSpec, seq_len: int,
                                      convention: str = "full") -> float:
    """QK^T and (softmax)V FLOPs per token per forward over all layers:
    2*a*(d_qk + d_v) * sum over layers of the keys a query attends to (each layer's window)."""
    if model.layer_types is None:  # full attention everywhere (the common case, fast)
        keys = effective_context(seq_len, convention) * model.num_layers
    else:
        keys = sum(keys_per_query(seq_len, kind, window, convention)
                   for kind, window in zip(model.layer_types, model.layer_attention_windows()))
    return 2.0 * model.num_heads * (model.qk_dim + model.v_dim) * keys


def executed_attention_fraction(model: ModelSpec, training: TrainingSpec) -> float:
    """Attention FLOPs the kernels execute per FLOP counted under ``training.attention_flops``.
    A fused (FlashAttention-style) kernel skips the fully masked blocks, so it executes the
    causal count of each layer's keys (its window or chunk included), whatever the counting
    convention (Dao 2023 §3.1); an unfused implementation computes every score of the s x s
    matrix and masks it after, so it executes s keys per query in every layer, windowed or not.
    The step-time model's time therefore does not depend on the counting convention (a flat
    --efficiency, defined against the count, does)."""
    counted = attention_forward_flops_per_token(model, training.seq_len, training.attention_flops)
    if counted == 0:
        return 1.0
    if training.flash_attention:
        executed = attention_forward_flops_per_token(model, training.seq_len, "causal")
    else:
        keys = effective_context(training.seq_len, "full") * model.num_layers
        executed = 2.0 * model.num_heads * (model.qk_dim + model.v_dim) * keys
    return executed / counted


def flash_backward_recompute_flops_per_token(model: ModelSpec, training: TrainingSpec) -> float:
    """FLOPs a fused (FlashAttention-style) backward adds by recomputing QK^T, per token over
    all layers: 2*a*s*d_qk*L (Dao 2023 §3.1: backward = 2.5x the forward's matmuls). Not in
    hardware_per_token, which counts framework recomputation only (§2.8)."""
    if not training.flash_attention:
        return 0.0
    fwd = attention_forward_flops_per_token(model, training.seq_len, training.attention_flops)
    return fwd * model.qk_dim / (model.qk_dim + model.v_dim)


def effective_context(seq_len: int, convention: str) -> float:
    """Keys each query attends to: s (full convention) or (s+1)/2 (causal average)."""
    return float(seq_len) if convention == "full" else (seq_len + 1) / 2.0


def _kinds(model: ModelSpec) -> tuple[str, ...]:
    return model.layer_types or ("full_attention",) * model.num_layers


def keys_per_query(seq_len: int, kind: str, window: int | None, convention: str) -> float:
    """Keys a query attends to in one layer, averaged over the sequence.

    Full attention: effective_context. A sliding window of w keys: w under the full
    convention (the s of full attention becomes w), and under causal the exact average of
    min(i+1, w) over positions i. A chunk of c tokens (Llama 4 chunked attention): c, or the
    causal average of (i mod c) + 1."""
    if window is None or window >= seq_len:
        return effective_context(seq_len, convention)
    if convention == "full":
        return float(window)
    w, s = window, seq_len
    if kind == "chunked_attention":
        full, rest = divmod(s, w)
        return (full * w * (w + 1) / 2 + rest * (rest + 1) / 2) / s
    return (w * (w + 1) / 2 + (s - w) * w) / s


def training_flops(
    model: ModelSpec, training: TrainingSpec, params: ParamCount | None = None
) -> FlopsEstimate:
    """Model and hardware FLOPs for a training run (docs/formulas.md §2.1, §2.8)."""
    p = params or count_params(model)
    attn_fwd = attention_forward_flops_per_token(model, training.seq_len,
                                                 training.attention_flops)
    if training.finetune is not None and training.finetune.mode != "full":
        ft = finetune_flops(model, training, p, attn_fwd)
        return FlopsEstimate(ft.model_per_token, ft.hardware_per_token,
                             2.0 * p.matmul_active + attn_fwd, ft.attention_per_token,
                             training.tokens)
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
    keys = sum(context_len if w is None else min(context_len, _window_keys(k, w, context_len))
               for k, w in zip(_kinds(model), model.layer_attention_windows()))
    return 2.0 * p.matmul_active + 2.0 * model.num_heads * keys * (model.qk_dim + model.v_dim)


def _window_keys(kind: str, window: int, context_len: int) -> int:
    """Keys the newest token attends to: the window, or its position inside its chunk."""
    if kind == "chunked_attention":
        return context_len % window or window
    return window
