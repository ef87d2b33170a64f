"""config.json builders for the model types people fine-tune today: qwen3_moe, gemma3_text
(and gemma3's text part), llama4_text (and llama4's text part), gpt_oss, granite and
mistral3's text part (phi-4 is model_type phi3, read by hf_config). Each maps its
keys the way transformers builds the module (transformers 5.x ``*Config`` defaults for absent
keys); per-layer attention (``layer_types``) and interleaved MoE layers are read as the
config's ``__init__`` derives them when the file leaves them out."""

from __future__ import annotations

from typing import Any

from planner.catalog.hf_config import _biased, _check_top_k, _Config, _decoder, _gemma
from planner.specs.model import ATTENTION_KINDS


def _layer_types(c: _Config, num_layers: int, default: list[str]) -> list[str] | None:
    """``layer_types`` from the file (checked), else the type's derived default; None when
    every layer is full attention."""
    kinds = c.data.get("layer_types")
    if kinds is None:
        kinds = default
    if not isinstance(kinds, list) or len(kinds) != num_layers or \
            any(k not in ATTENTION_KINDS for k in kinds):
        c.fail(f"layer_types must list one of {', '.join(ATTENTION_KINDS)} per layer "
               f"({num_layers} layers)")
    return None if all(k == "full_attention" for k in kinds) else list(kinds)


def _index_list(c: _Config, key: str, num_layers: int) -> list[int]:
    value = c.data.get(key) or []
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int)
                                          or not 0 <= i < num_layers for i in value):
        c.fail(f"{key} must list layer indices 0..{num_layers - 1}")
    return sorted(set(value))


def _moe_layers(moe: dict[str, Any], pattern: list[int], num_layers: int) -> dict[str, Any]:
    """Attach the MoE layer indices (omitted when every layer is MoE)."""
    if len(pattern) != num_layers:
        moe["moe_layers"] = pattern
    return moe


def qwen3_moe(c: _Config) -> dict[str, Any]:
    """Qwen3-MoE: Qwen3 attention (per-head QK-norm), routed experts without shared ones;
    layer i is MoE unless in mlp_only_layers, every decoder_sparse_step-th layer."""
    spec = _biased(c, kv_default=4, max_pos=32768, head_dim_default=128, qk_norm="per_head")
    L = spec["num_layers"]
    experts = c.integer("num_experts", 128, minimum=0, aliases=("num_local_experts",))
    if experts == 0:
        return spec
    step = c.integer("decoder_sparse_step", 1)
    dense = set(_index_list(c, "mlp_only_layers", L))
    pattern = [i for i in range(L) if i not in dense and (i + 1) % step == 0]
    if not pattern:
        return spec
    spec["moe"] = _moe_layers(_check_top_k(c, {
        "num_experts": experts, "experts_per_token": c.integer("num_experts_per_tok", 8),
        "expert_ffn_hidden_size": c.integer("moe_intermediate_size", 768),
    }, "num_experts"), pattern, L)
    return spec


def gemma3_text(c: _Config) -> dict[str, Any]:
    """Gemma 3 text: Gemma 2's four norms per block + per-head QK-norm, 5 local (sliding
    window) layers to 1 global (sliding_window_pattern 6)."""
    spec = _gemma(c, kv_default=4, norms=4)
    spec["qk_norm"] = "per_head"
    spec["max_seq_len"] = c.integer("max_position_embeddings", 131072)
    L = spec["num_layers"]
    every = c.integer("sliding_window_pattern", 6, aliases=("_sliding_window_pattern",))
    kinds = _layer_types(c, L, ["sliding_attention" if (i + 1) % every else "full_attention"
                                for i in range(L)])
    if kinds:
        spec.update(layer_types=kinds, sliding_window=c.integer("sliding_window", 4096))
    return spec


def llama4_text(c: _Config) -> dict[str, Any]:
    """Llama 4 text: MoE layers every interleave_moe_layer_step (or as moe_layers lists),
    one shared expert of intermediate_size, dense layers of intermediate_size_mlp; chunked
    attention on the RoPE layers, full attention on every no_rope_layer_interval-th; QK L2
    norm without weights."""
    if c.flag("attention_bias", False):
        c.fail("attention_bias=true is not supported for llama4_text; valid: false")
    spec = _decoder(c, kv_default=8, max_pos=4096 * 32, head_dim_default=128)
    L, f_expert = spec["num_layers"], spec["ffn_hidden_size"]
    spec["ffn_hidden_size"] = c.integer("intermediate_size_mlp", 16384)
    step = c.integer("interleave_moe_layer_step", 1)
    pattern = _index_list(c, "moe_layers", L) if c.data.get("moe_layers") is not None \
        else list(range(step - 1, L, step))
    if pattern:
        spec["moe"] = _moe_layers(_check_top_k(c, {
            "num_experts": c.integer("num_local_experts", 16),
            "experts_per_token": c.integer("num_experts_per_tok", 1),
            "expert_ffn_hidden_size": f_expert, "num_shared_experts": 1,
            "shared_expert_ffn_hidden_size": f_expert,
        }, "num_local_experts"), pattern, L)
    chunk = None if c.is_null("attention_chunk_size") else c.integer("attention_chunk_size",
                                                                     8192)
    interval = c.integer("no_rope_layer_interval", 4)
    rope = c.data.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(L)]
    default = ["chunked_attention" if rope[i] and chunk else "full_attention"
               for i in range(L)] if len(rope) == L else []
    kinds = _layer_types(c, L, default) if chunk else None
    if kinds:
        spec.update(layer_types=kinds, attention_chunk_size=chunk)
    return spec


def gpt_oss(c: _Config) -> dict[str, Any]:
    """gpt-oss: every layer MoE (experts with biases, router with bias), q/k/v/o biases, a
    learned attention sink per head, sliding-window (128) and full layers alternating."""
    spec = _biased(c, kv_default=8, max_pos=131072, head_dim_default=64)
    spec["attention_sinks"], spec["mlp_bias"] = True, True  # expert biases: 2f + h each
    L = spec["num_layers"]
    spec["moe"] = _check_top_k(c, {
        "num_experts": c.integer("num_local_experts", 128),
        "experts_per_token": c.integer("num_experts_per_tok", 4, aliases=("experts_per_token",)),
        "expert_ffn_hidden_size": spec["ffn_hidden_size"], "router_bias": True,
    }, "num_local_experts")
    kinds = _layer_types(c, L, ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                for i in range(L)])
    if kinds:
        spec.update(layer_types=kinds, sliding_window=c.integer("sliding_window", 128))
    return spec


def _text_part(builder):
    """A multimodal config's language model: its ``text_config`` (vision tower not counted)."""
    def build(c: _Config) -> dict[str, Any]:
        text = c.data.get("text_config")
        if not isinstance(text, dict):
            c.fail(f"model_type '{c.model_type}' needs a text_config object")
        return builder(_Config(text, c.where))
    return build


def granite(c: _Config) -> dict[str, Any]:
    """IBM Granite 3.x (transformers GraniteForCausalLM): a Llama block whose q/k/v/o take
    attention_bias and whose MLP takes mlp_bias; its embedding, residual, attention and logits
    multipliers scale activations and move no parameter count."""
    return _biased(c, kv_default=None, max_pos=2048, mlp_bias=c.flag("mlp_bias", False))


def _mistral_text(c: _Config) -> dict[str, Any]:
    """Mistral (the text model of Mistral 3): no attention_bias, head_dim from the file."""
    return _decoder(c, kv_default=8, max_pos=4096 * 32)


BUILDERS = {"granite": granite, "mistral3": _text_part(_mistral_text),
            "qwen3_moe": qwen3_moe, "gemma3_text": gemma3_text, "gemma3": _text_part(gemma3_text),
            "llama4_text": llama4_text, "llama4": _text_part(llama4_text), "gpt_oss": gpt_oss}
