"""Parameter counts from a ModelSpec (docs/formulas.md §1; exact against published counts).

N = V*h [+ s_max*h] + sum over layers (attention + FFN + norms) + final norm [+ V*h head]
"""

from __future__ import annotations

from functools import lru_cache

from planner.results import frozen
from planner.specs.model import ModelSpec


@frozen
class LayerParams:
    """Parameters of one transformer block, split by what they do."""

    attention: int  # projections, their biases, QK-norm weights
    attention_matmul: int  # only the weight matrices (what FLOPs scale with)
    ffn_total: int  # all experts for MoE
    ffn_active: int  # k routed + shared experts + router
    ffn_matmul_total: int
    ffn_matmul_active: int
    norms: int

    @property
    def total(self) -> int:
        return self.attention + self.ffn_total + self.norms

    @property
    def active(self) -> int:
        return self.attention + self.ffn_active + self.norms


@frozen
class ParamCount:
    """Parameter counts of a model (exact integers)."""

    embedding: int
    positions: int
    lm_head: int  # 0 when tied
    final_norm: int
    dense_layer: LayerParams | None  # one dense-FFN layer (None if every layer is MoE)
    moe_layer: LayerParams | None  # one MoE layer
    num_dense_layers: int
    num_moe_layers: int
    vocab_times_width: int  # V*h, the LM-head matmul whether tied or not
    expert_params: int = 0  # one routed expert (weights and biases)
    expert_matmul: int = 0  # one routed expert's weight matrices

    @property
    def layers_total(self) -> int:
        d = self.dense_layer.total * self.num_dense_layers if self.dense_layer else 0
        m = self.moe_layer.total * self.num_moe_layers if self.moe_layer else 0
        return d + m

    @property
    def layers_active(self) -> int:
        d = self.dense_layer.active * self.num_dense_layers if self.dense_layer else 0
        m = self.moe_layer.active * self.num_moe_layers if self.moe_layer else 0
        return d + m

    @property
    def total(self) -> int:
        """All parameters (N)."""
        return (
            self.embedding + self.positions + self.layers_total + self.final_norm + self.lm_head
        )

    @property
    def active(self) -> int:
        """Parameters used per token (MoE: k routed experts), input embedding included."""
        return (
            self.embedding + self.positions + self.layers_active + self.final_norm + self.lm_head
        )

    def _layer_matmul(self, active: bool) -> int:
        n = 0
        for layer, count in ((self.dense_layer, self.num_dense_layers),
                             (self.moe_layer, self.num_moe_layers)):
            if layer:
                ffn = layer.ffn_matmul_active if active else layer.ffn_matmul_total
                n += (layer.attention_matmul + ffn) * count
        return n

    @property
    def layers_matmul_active(self) -> int:
        """Matmul weights in the blocks, active per token (N_layers,mm)."""
        return self._layer_matmul(active=True)

    @property
    def matmul_active(self) -> int:
        """N_mm for FLOPs: active Linear weights + LM head; no embedding, norms, biases."""
        return self._layer_matmul(active=True) + self.vocab_times_width

    @property
    def matmul_total(self) -> int:
        """All Linear weights + LM head (every expert counted)."""
        return self._layer_matmul(active=False) + self.vocab_times_width


def _norm_params(model: ModelSpec, width: int) -> int:
    """Weights of one norm over ``width`` features: h (RMSNorm), 2h (LayerNorm with bias)."""
    return width * (2 if model.norm_type == "layernorm" and model.norm_bias else 1)


def _attention_params(model: ModelSpec) -> tuple[int, int]:
    """(all attention params, matmul weights only) for one layer."""
    h, a, g, d = model.d_model, model.num_heads, model.kv_heads, model.d_head
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:  # W_q_a, q_norm, W_q_b
            q_mm = h * m.q_lora_rank + m.q_lora_rank * a * qk
            q_norm = m.q_lora_rank
        else:
            q_mm, q_norm = h * a * qk, 0
        kv_mm = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * a * (
            m.qk_nope_head_dim + m.v_head_dim
        )
        o_mm = a * m.v_head_dim * h
        mm = q_mm + kv_mm + o_mm
        return mm + q_norm + m.kv_lora_rank, mm
    mm = h * a * d + 2 * h * g * d + a * d * h
    extra = 0
    if model.qkv_bias:
        extra += a * d + 2 * g * d
    if model.attn_out_bias:
        extra += h
    if model.qk_norm == "per_head":
        extra += 2 * d
    elif model.qk_norm == "full":
        extra += a * d + g * d
    if model.attention_sinks:  # gpt-oss: one learned sink logit per head
        extra += a
    return mm + extra, mm


def attention_matmul_params(model: ModelSpec) -> int:
    """Matmul weights of one attention layer (QKV or MLA's projections, and the output)."""
    return _attention_params(model)[1]


def _ffn_params(model: ModelSpec, width: int) -> tuple[int, int]:
    """(params, matmul weights) of one dense FFN of the given width."""
    h = model.d_model
    if model.ffn_type == "gated":
        mm, bias = 3 * h * width, 2 * width + h
    else:
        mm, bias = 2 * h * width, width + h
    return mm + (bias if model.mlp_bias else 0), mm


@lru_cache(maxsize=512)
def count_params(model: ModelSpec) -> ParamCount:
    """Exact parameter counts (total and active) of a ModelSpec (cached: specs are frozen)."""
    h, V = model.d_model, model.vocab_size
    attn, attn_mm = _attention_params(model)
    norms = model.norms_per_layer * _norm_params(model, h)
    dense_layer = moe_layer = None
    if model.num_dense_ffn_layers:
        f, f_mm = _ffn_params(model, model.ffn_hidden_size)
        dense_layer = LayerParams(attn, attn_mm, f, f, f_mm, f_mm, norms)
    if model.moe:
        moe = model.moe
        e, e_mm = _ffn_params(model, moe.expert_ffn_hidden_size)
        s, s_mm = _ffn_params(model, moe.shared_width) if moe.shared_width else (0, 0)
        router_mm = h * moe.num_experts
        router = router_mm + (moe.num_experts if moe.router_bias else 0)
        moe_layer = LayerParams(
            attention=attn,
            attention_matmul=attn_mm,
            ffn_total=moe.num_experts * e + s + router,
            ffn_active=moe.experts_per_token * e + s + router,
            ffn_matmul_total=moe.num_experts * e_mm + s_mm + router_mm,
            ffn_matmul_active=moe.experts_per_token * e_mm + s_mm + router_mm,
            norms=norms,
        )
    head = 0 if model.tie_embeddings else V * h + (V if model.lm_head_bias else 0)
    return ParamCount(
        embedding=V * h,
        positions=model.max_seq_len * h if model.position_embedding == "learned" else 0,
        lm_head=head,
        final_norm=_norm_params(model, h),
        dense_layer=dense_layer,
        moe_layer=moe_layer,
        num_dense_layers=model.num_dense_ffn_layers,
        num_moe_layers=model.num_moe_layers,
        vocab_times_width=V * h,
        expert_params=e if model.moe else 0,
        expert_matmul=e_mm if model.moe else 0,
    )
