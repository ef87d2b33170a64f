"""ModelSpec: the architecture of a decoder-only transformer (dense or mixture-of-experts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from planner.specs.base import Name, PositiveWhole, Spec, Whole

# Per-layer attention, as transformers' ``layer_types`` spells it (Gemma 3, gpt-oss, Llama 4).
ATTENTION_KINDS = ("full_attention", "sliding_attention", "chunked_attention")
AttentionKind = Literal[ATTENTION_KINDS]


class MoESpec(Spec):
    """Mixture-of-experts FFN settings (Mixtral, DeepSeek-V3 style)."""

    num_experts: PositiveWhole = Field(description="Routed experts per MoE layer (E).")
    experts_per_token: PositiveWhole = Field(
        description="Routed experts chosen per token (top-k).")
    expert_ffn_hidden_size: PositiveWhole = Field(
        description="FFN width of one routed expert (f_e).")
    num_shared_experts: Whole = Field(0, description="Always-active shared experts (E_s).")
    shared_expert_ffn_hidden_size: PositiveWhole | None = Field(
        None, description="Total width of the shared-expert MLP; default E_s * f_e (DeepSeek)."
    )
    num_dense_layers: Whole = Field(
        0, description="Leading layers with a dense FFN of width ffn_hidden_size."
    )
    router_bias: bool = Field(False, description="Router has a per-expert bias (DeepSeek-V3).")
    moe_layers: tuple[Whole, ...] | None = Field(
        None, description="0-based indices of the MoE layers when dense and MoE layers "
        "interleave (Llama 4 moe_layers, Qwen3-MoE mlp_only_layers); None = every layer after "
        "the num_dense_layers leading ones.")

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token={self.experts_per_token} exceeds "
                f"num_experts={self.num_experts}"
            )
        if self.moe_layers is not None:
            if self.num_dense_layers:
                raise ValueError("give moe_layers or num_dense_layers, not both")
            if list(self.moe_layers) != sorted(set(self.moe_layers)) or not self.moe_layers:
                raise ValueError("moe_layers must list distinct layer indices in increasing "
                                 f"order (got {list(self.moe_layers)[:8]})")
        return self

    @property
    def shared_width(self) -> int:
        """Width of the shared-expert MLP (0 when there are none)."""
        if self.num_shared_experts == 0:
            return 0
        if self.shared_expert_ffn_hidden_size is not None:
            return self.shared_expert_ffn_hidden_size
        return self.num_shared_experts * self.expert_ffn_hidden_size


class MLASpec(Spec):
    """DeepSeek multi-head latent attention (DeepSeek-V2 §2.1; V3 inference/model.py)."""

    q_lora_rank: Whole = Field(description="Query low-rank dim r_q; 0 = no q compression.")
    kv_lora_rank: PositiveWhole = Field(description="KV latent dim r_kv.")
    qk_nope_head_dim: PositiveWhole = Field(description="Per-head q/k dim without RoPE.")
    qk_rope_head_dim: PositiveWhole = Field(description="Per-head decoupled RoPE q/k dim.")
    v_head_dim: PositiveWhole = Field(description="Per-head value dim.")


class ModelSpec(Spec):
    """A decoder-only transformer. Shapes are those of the real config (padded vocab etc.)."""

    name: Name = Field(description="Short name, e.g. llama3-8b.")
    source_url: str | None = Field(None, description="Where the config comes from.")
    num_layers: PositiveWhole = Field(description="Transformer blocks (L).")
    d_model: PositiveWhole = Field(description="Hidden width (h).")
    num_heads: PositiveWhole = Field(description="Query heads (a).")
    num_kv_heads: PositiveWhole | None = Field(
        None, description="Key/value heads (g); default = num_heads (MHA). 1 = MQA."
    )
    head_dim: PositiveWhole | None = Field(
        None, description="Per-head dim; default d_model/heads.")
    ffn_hidden_size: PositiveWhole = Field(description="FFN intermediate width (f).")
    ffn_type: Literal["gated", "plain"] = Field(
        "gated", description="gated = SwiGLU/GeGLU (3 matrices); plain = 2 matrices."
    )
    activation: Literal["silu", "gelu", "gelu_tanh", "relu"] = Field("silu")
    norm_type: Literal["rmsnorm", "layernorm"] = Field("rmsnorm")
    norm_bias: bool = Field(False, description="LayerNorm has a bias (2h per norm).")
    norms_per_layer: Whole = Field(2, le=4, description="2 pre-norm; 4 Gemma-2; 1 parallel.")
    parallel_block: bool = Field(False, description="Attention and MLP read the same input.")
    qkv_bias: bool = Field(False, description="Bias on q, k, v projections (GPT-2, Qwen2).")
    attn_out_bias: bool = Field(False, description="Bias on the attention output projection.")
    mlp_bias: bool = Field(False, description="Biases on the FFN matrices.")
    lm_head_bias: bool = Field(False)
    qk_norm: Literal["none", "per_head", "full"] = Field(
        "none", description="per_head: RMSNorm of d_h (Qwen3); full: of a*d_h and g*d_h (OLMo-2)."
    )
    position_embedding: Literal["rope", "learned", "none"] = Field("rope")
    max_seq_len: PositiveWhole = Field(description="Context length the model was built for.")
    tie_embeddings: bool = Field(False, description="LM head shares the input embedding.")
    vocab_size: PositiveWhole = Field(description="Rows of the embedding matrix (padded).")
    layer_types: tuple[AttentionKind, ...] | None = Field(
        None, description="Attention of each layer (full_attention, sliding_attention, "
        "chunked_attention); None = full attention everywhere.")
    sliding_window: PositiveWhole | None = Field(
        None, description="Keys a sliding_attention layer sees (the query's own included).")
    attention_chunk_size: PositiveWhole | None = Field(
        None, description="Tokens per chunk of a chunked_attention layer (Llama 4).")
    attention_sinks: bool = Field(False, description="A learned sink logit per head "
                                  "(gpt-oss): num_heads parameters per layer.")
    moe: MoESpec | None = None
    mla: MLASpec | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        g = self.kv_heads
        if self.num_heads % g:
            raise ValueError(f"num_heads={self.num_heads} is not divisible by num_kv_heads={g}")
        if self.head_dim is None and self.mla is None and self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
                "set head_dim explicitly"
            )
        if self.moe and self.moe.num_dense_layers > self.num_layers:
            raise ValueError(
                f"moe.num_dense_layers={self.moe.num_dense_layers} exceeds "
                f"num_layers={self.num_layers}"
            )
        if self.moe and self.moe.moe_layers and self.moe.moe_layers[-1] >= self.num_layers:
            raise ValueError(f"moe.moe_layers has layer {self.moe.moe_layers[-1]}; layers are "
                             f"0..{self.num_layers - 1}")
        self._check_layer_types()
        return self

    def _check_layer_types(self) -> None:
        kinds = self.layer_types
        if kinds is None:
            return
        if len(kinds) != self.num_layers:
            raise ValueError(f"layer_types has {len(kinds)} entries; num_layers={self.num_layers}"
                             " needs one per layer")
        if "sliding_attention" in kinds and self.sliding_window is None:
            raise ValueError("sliding_attention layers need sliding_window (tokens)")
        if "chunked_attention" in kinds and self.attention_chunk_size is None:
            raise ValueError("chunked_attention layers need attention_chunk_size (tokens)")

    def layer_attention_windows(self) -> tuple[int | None, ...]:
        """Per layer: None = full (causal) attention; an int = the sliding window or the
        chunk size, in tokens, that bounds the keys a query attends to."""
        kinds = self.layer_types or ("full_attention",) * self.num_layers
        size = {"full_attention": None, "sliding_attention": self.sliding_window,
                "chunked_attention": self.attention_chunk_size}
        return tuple(size[k] for k in kinds)

    def layer_is_moe(self) -> tuple[bool, ...]:
        """Per layer: whether its FFN is a mixture of experts."""
        if not self.moe:
            return (False,) * self.num_layers
        if self.moe.moe_layers is not None:
            moe = set(self.moe.moe_layers)
            return tuple(i in moe for i in range(self.num_layers))
        k = self.moe.num_dense_layers
        return tuple(i >= k for i in range(self.num_layers))

    # -- derived shape -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        """Key/value heads g (equals num_heads for MHA)."""
        return self.num_kv_heads or self.num_heads

    @property
    def d_head(self) -> int:
        """Per-head dim d_h used by q, k and v (non-MLA)."""
        return self.head_dim or self.d_model // self.num_heads

    @property
    def num_moe_layers(self) -> int:
        """Layers whose FFN is a mixture of experts."""
        if self.moe and self.moe.moe_layers is not None:
            return len(self.moe.moe_layers)
        return self.num_layers - self.moe.num_dense_layers if self.moe else 0

    @property
    def num_dense_ffn_layers(self) -> int:
        """Layers with a dense FFN."""
        return self.num_layers - self.num_moe_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_kind(self) -> str:
        """MHA, GQA, MQA or MLA."""
        if self.mla:
            return "MLA"
        g = self.kv_heads
        return "MHA" if g == self.num_heads else ("MQA" if g == 1 else "GQA")

    @property
    def qk_dim(self) -> int:
        """Per-head dim of queries/keys in the score matmul."""
        if self.mla:
            return self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim
        return self.d_head

    @property
    def v_dim(self) -> int:
        """Per-head dim of values."""
        return self.mla.v_head_dim if self.mla else self.d_head
