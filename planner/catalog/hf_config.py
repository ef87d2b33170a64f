"""Read a local Hugging Face ``config.json`` into a planner ModelSpec (no torch/transformers).

Each ``model_type`` is mapped the way transformers builds it; an absent key takes the default of
that type's transformers ``*Config`` (Gemma is tied, Mistral has 8 KV heads, Falcon inherits
``tie_word_embeddings=True``...). Run-time keys (RoPE, dropout, token ids) are ignored; attention windows are read where the type
has them per layer (gemma3_text, llama4_text, gpt_oss: planner/catalog/hf_models_recent.py).
Shape keys (width, depth, heads, FFN width, vocabulary) are required, never silently defaulted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from planner.errors import SpecError
from planner.specs.base import MAX_INT
from planner.specs.model import ModelSpec

_REQUIRED = object()  # marker: the key has no default and must be present
MAX_DIGITS = 30  # as for YAML (planner.catalog.yamlio)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."

# transformers ACT2FN names -> ModelSpec.activation
_ACTIVATIONS = {
    "silu": "silu", "swish": "silu", "relu": "relu", "gelu": "gelu", "gelu_python": "gelu",
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
}

# ModelSpec field -> the config key it usually comes from (for validation messages)
_FIELD_KEYS = {
    "num_layers": "num_hidden_layers", "d_model": "hidden_size", "head_dim": "head_dim",
    "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
    "moe.num_dense_layers": "first_k_dense_replace", "moe": "MoE keys", "mla": "MLA keys",
}


class _Config:
    """Typed access to one config dict; every problem is a one-line SpecError."""

    def __init__(self, data: dict[str, Any], where: str):
        self.data, self.where = data, where
        self.model_type = data.get("model_type")

    def fail(self, message: str) -> NoReturn:
        """Raise a SpecError that names the file."""
        raise SpecError(f"{self.where}: {message}")

    def is_null(self, key: str) -> bool:
        """True when the key is present with the value null."""
        return key in self.data and self.data[key] is None

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int = 1,
                aliases: tuple[str, ...] = ()) -> Any:
        """A whole number >= ``minimum``; ``default`` when absent or null."""
        for k in (key, *aliases):
            value = self.data.get(k)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not \
                    minimum <= value <= MAX_INT:
                self.fail(f"{k} must be a whole number from {minimum} to {MAX_INT:,} "
                          f"(got {_short(value)})")
            return value
        if default is _REQUIRED:
            self.fail(f"missing required key '{key}' (model_type '{self.model_type}')")
        return default

    def flag(self, key: str, default: bool) -> bool:
        """A JSON boolean; ``default`` when absent or null."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false (got {_short(value)})")
        return value

    def activation(self, key: str, default: str) -> str:
        """The ModelSpec activation for a transformers activation name."""
        name = self.data.get(key)
        name = default if name is None else name
        if not isinstance(name, str) or name not in _ACTIVATIONS:
            self.fail(f"{key} {_short(name)} is not supported; supported: "
                      f"{', '.join(sorted(_ACTIVATIONS))}")
        return _ACTIVATIONS[name]


def _kv_heads(c: _Config, heads: int, default: int | None, key: str) -> int | None:
    """KV heads (None = MHA): absent -> the type's default; null -> MHA, as in transformers."""
    kv = heads if c.is_null(key) else c.integer(key, heads if default is None else default)
    if heads % kv:
        c.fail(f"num_attention_heads={heads} is not divisible by {key}={kv}; "
               f"{key} must divide num_attention_heads")
    return None if kv == heads else kv


def _head_dim(h: int, heads: int, head_dim: int | None) -> int | None:
    """Explicit head dim only when it differs from h / heads (transformers floors h // heads)."""
    d = h // heads if head_dim is None else head_dim
    return None if d * heads == h else d


def _divisible_heads(c: _Config, h: int, heads: int, h_key: str, a_key: str) -> None:
    """GPT-2, GPT-NeoX and Falcon reject hidden % heads != 0, as transformers does."""
    if h % heads:
        c.fail(f"{h_key}={h} is not divisible by {a_key}={heads}")


def _check_top_k(c: _Config, moe: dict[str, Any], experts_key: str) -> dict[str, Any]:
    """Top-k routing cannot pick more experts than exist."""
    k, e = moe["experts_per_token"], moe["num_experts"]
    if k > e:
        c.fail(f"num_experts_per_tok={k} exceeds {experts_key}={e}; valid: 1..{e}")
    return moe


def _vocab_context(c: _Config, max_pos: int, tie: bool, pos_key: str = "max_position_embeddings",
                   ) -> dict[str, Any]:
    """Vocabulary, context length and embedding tying, with the type's defaults."""
    return {"vocab_size": c.integer("vocab_size"), "max_seq_len": c.integer(pos_key, max_pos),
            "tie_embeddings": c.flag("tie_word_embeddings", tie)}


def _decoder(c: _Config, *, kv_default: int | None, max_pos: int, tie: bool = False,
             head_dim_default: int | None = None, act_key: str = "hidden_act",
             act_default: str = "silu", qkv_bias: bool = False, out_bias: bool = False,
             mlp_bias: bool = False, qk_norm: str = "none", norms: int = 2) -> dict[str, Any]:
    """Fields of a Llama-style decoder (RMSNorm, gated FFN, RoPE) with one type's defaults."""
    h, heads = c.integer("hidden_size"), c.integer("num_attention_heads")
    return {
        "num_layers": c.integer("num_hidden_layers"), "d_model": h, "num_heads": heads,
        "num_kv_heads": _kv_heads(c, heads, kv_default, "num_key_value_heads"),
        "head_dim": _head_dim(h, heads, c.integer("head_dim", head_dim_default)),
        "ffn_hidden_size": c.integer("intermediate_size"), "ffn_type": "gated",
        "activation": c.activation(act_key, act_default), "norm_type": "rmsnorm",
        "norms_per_layer": norms, "qkv_bias": qkv_bias, "attn_out_bias": out_bias,
        "mlp_bias": mlp_bias, "qk_norm": qk_norm, "position_embedding": "rope",
        **_vocab_context(c, max_pos, tie),
    }


def _biased(c: _Config, **kwargs: Any) -> dict[str, Any]:
    """A decoder whose ``attention_bias`` puts biases on q, k, v and o together."""
    bias = c.flag("attention_bias", False)
    return _decoder(c, qkv_bias=bias, out_bias=bias, **kwargs)


def _gemma(c: _Config, *, kv_default: int, norms: int) -> dict[str, Any]:
    """Gemma 1/2: GeGLU from hidden_activation (hidden_act is legacy), tied, head_dim 256."""
    return _biased(c, kv_default=kv_default, max_pos=8192, tie=True, head_dim_default=256,
                   act_key="hidden_activation", act_default="gelu_pytorch_tanh", norms=norms)


def _mixtral(c: _Config) -> dict[str, Any]:
    spec = _decoder(c, kv_default=8, max_pos=4096 * 32)
    spec["moe"] = _check_top_k(c, {  # all layers MoE; router h*E, no bias; f is per expert
        "num_experts": c.integer("num_local_experts", 8),
        "experts_per_token": c.integer("num_experts_per_tok", 2),
        "expert_ffn_hidden_size": spec["ffn_hidden_size"],
    }, "num_local_experts")
    return spec


def _gpt2(c: _Config) -> dict[str, Any]:
    h, heads = c.integer("n_embd", aliases=("hidden_size",)), c.integer("n_head")
    _divisible_heads(c, h, heads, "n_embd", "n_head")
    return {
        "num_layers": c.integer("n_layer"), "d_model": h, "num_heads": heads,
        "ffn_hidden_size": c.integer("n_inner", 4 * h), "ffn_type": "plain",
        "activation": c.activation("activation_function", "gelu_new"),
        "norm_type": "layernorm", "norm_bias": True, "qkv_bias": True, "attn_out_bias": True,
        "mlp_bias": True, "position_embedding": "learned",
        **_vocab_context(c, 1024, True, pos_key="n_positions"),
    }


def _gpt_neox(c: _Config) -> dict[str, Any]:
    h, heads = c.integer("hidden_size"), c.integer("num_attention_heads")
    _divisible_heads(c, h, heads, "hidden_size", "num_attention_heads")
    bias = c.flag("attention_bias", True)  # the MLP always has biases
    return {
        "num_layers": c.integer("num_hidden_layers"), "d_model": h, "num_heads": heads,
        "ffn_hidden_size": c.integer("intermediate_size"), "ffn_type": "plain",
        "activation": c.activation("hidden_act", "gelu"), "norm_type": "layernorm",
        "norm_bias": True, "parallel_block": c.flag("use_parallel_residual", True),
        "qkv_bias": bias, "attn_out_bias": bias, "mlp_bias": True, "position_embedding": "rope",
        **_vocab_context(c, 2048, False),
    }


def _falcon(c: _Config) -> dict[str, Any]:
    h = c.integer("hidden_size", aliases=("n_embed",))
    heads = c.integer("num_attention_heads", aliases=("n_head",))
    _divisible_heads(c, h, heads, "hidden_size", "num_attention_heads")
    new_arch, parallel = c.flag("new_decoder_architecture", False), c.flag("parallel_attn", True)
    if new_arch:
        legacy = "n_head_kv" in c.data and "num_kv_heads" not in c.data  # RW-era key name
        kv = _kv_heads(c, heads, None, "n_head_kv" if legacy else "num_kv_heads")
    else:
        kv = 1 if c.flag("multi_query", True) else None
    n_ln = c.integer("num_ln_in_parallel_attn", 2 if new_arch else None)
    bias = c.flag("bias", False)  # query_key_value, dense and both MLP matrices
    return {
        "num_layers": c.integer("num_hidden_layers", aliases=("n_layer",)), "d_model": h,
        "num_heads": heads, "num_kv_heads": kv,
        "ffn_hidden_size": c.integer("ffn_hidden_size", 4 * h), "ffn_type": "plain",
        "activation": c.activation("activation", "gelu"), "norm_type": "layernorm",
        "norm_bias": True, "norms_per_layer": 2 if not parallel or n_ln == 2 else 1,
        "parallel_block": parallel, "qkv_bias": bias, "attn_out_bias": bias, "mlp_bias": bias,
        "position_embedding": "none" if c.flag("alibi", False) else "rope",
        **_vocab_context(c, 2048, True),  # tied: FalconConfig keeps PretrainedConfig's default
    }


def _deepseek(c: _Config, *, v3: bool) -> dict[str, Any]:
    for key in ("attention_bias", "mlp_bias"):
        if c.flag(key, False):
            c.fail(f"{key}=true is not supported for {c.model_type}; valid: false")
    if c.integer("moe_layer_freq", 1) != 1:
        c.fail("moe_layer_freq must be 1 (interleaved dense/MoE layers are not supported)")
    spec: dict[str, Any] = {
        "num_layers": c.integer("num_hidden_layers"), "d_model": c.integer("hidden_size"),
        "num_heads": c.integer("num_attention_heads"),
        "ffn_hidden_size": c.integer("intermediate_size"), "ffn_type": "gated",
        "activation": c.activation("hidden_act", "silu"), "norm_type": "rmsnorm",
        "position_embedding": "rope", **_vocab_context(c, 4096 if v3 else 2048, False),
        "mla": {  # q_lora_rank null = no query compression (V2-Lite)
            "q_lora_rank": 0 if c.is_null("q_lora_rank")
            else c.integer("q_lora_rank", 1536, minimum=0),
            "kv_lora_rank": c.integer("kv_lora_rank", 512),
            "qk_nope_head_dim": c.integer("qk_nope_head_dim", 128),
            "qk_rope_head_dim": c.integer("qk_rope_head_dim", 64),
            "v_head_dim": c.integer("v_head_dim", 128),
        },
    }
    if not c.is_null("n_routed_experts"):  # null routed experts = a dense model
        spec["moe"] = _check_top_k(c, {
            "num_experts": c.integer("n_routed_experts", 256 if v3 else 64),
            "experts_per_token": c.integer("num_experts_per_tok", 8 if v3 else _REQUIRED),
            "expert_ffn_hidden_size": c.integer("moe_intermediate_size", 2048 if v3 else 1407),
            "num_shared_experts": c.integer("n_shared_experts", 1 if v3 else 2, minimum=0),
            "num_dense_layers": c.integer("first_k_dense_replace", 3 if v3 else 0, minimum=0),
            "router_bias": v3,  # V3's e_score_correction_bias; V2's gate has none
        }, "n_routed_experts")
        if spec["moe"]["num_dense_layers"] > spec["num_layers"]:
            c.fail(f"first_k_dense_replace={spec['moe']['num_dense_layers']} exceeds "
                   f"num_hidden_layers={spec['num_layers']}")
    return spec


# model_type -> builder; the keyword values are that type's transformers defaults
_BUILDERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "deepseek_v2": lambda c: _deepseek(c, v3=False),
    "deepseek_v3": lambda c: _deepseek(c, v3=True),
    "falcon": _falcon,
    "gemma": lambda c: _gemma(c, kv_default=16, norms=2),
    "gemma2": lambda c: _gemma(c, kv_default=4, norms=4),  # pre- and post-norms
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "llama": lambda c: _biased(c, kv_default=None, max_pos=2048,
                               mlp_bias=c.flag("mlp_bias", False)),
    "mistral": lambda c: _decoder(c, kv_default=8, max_pos=4096 * 32),  # no attention_bias
    "mixtral": _mixtral,
    "olmo2": lambda c: _biased(c, kv_default=None, max_pos=2048, qk_norm="full"),
    "phi3": lambda c: _decoder(c, kv_default=None, max_pos=4096),  # fused qkv/gate_up
    "qwen2": lambda c: _decoder(c, kv_default=32, max_pos=32768, qkv_bias=True),  # o: no bias
    "qwen3": lambda c: _biased(c, kv_default=32, max_pos=32768, head_dim_default=128,
                               qk_norm="per_head"),
}
from planner.catalog.hf_models_recent import BUILDERS as _RECENT  # noqa: E402 (uses the above)

_BUILDERS.update(_RECENT)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def _explain(err: ValidationError, where: str) -> str:
    """One line naming each failing field by its config key and ModelSpec field."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        key = _FIELD_KEYS.get(field)
        label = f"{key} ({field})" if key else (field or "model")
        got = e.get("input")
        shown = "" if got is None or isinstance(got, (dict, list)) else f" (got {_short(got)})"
        parts.append(f"{label}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return f"{where}: " + "; ".join(parts)


def model_from_hf_config(cfg: dict, name: str, source: str | None = None) -> ModelSpec:
    """Convert a parsed Hugging Face config dict into a ModelSpec named ``name``.

    ``source`` (a path or URL) is stored as ``source_url`` and names the config in errors.
    Raises SpecError (one line: where, which key, what is valid) for anything unusable.
    """
    where = source or name
    if not isinstance(cfg, dict):
        raise SpecError(f"{where}: expected a JSON object of config keys "
                        f"(got {type(cfg).__name__})")
    c = _Config(cfg, where)
    model_type = cfg.get("model_type")
    builder = _BUILDERS.get(model_type) if isinstance(model_type, str) else None
    if builder is None:
        what = "missing key 'model_type'" if model_type is None else (
            f"model_type {_short(model_type)} is not supported")
        c.fail(f"{what}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    try:
        fields = builder(c)
    except SpecError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:  # defensive: stay one line
        raise SpecError(f"{where}: cannot read model_type '{model_type}' config ({e})") from None
    try:
        return ModelSpec.model_validate({"name": name, "source_url": source, **fields})
    except ValidationError as e:
        raise SpecError(_explain(e, where).replace("\n", " ")) from None


def _name_for(path: Path) -> str:
    """Model name: the folder of a ``config.json``, otherwise the file stem; lowercased."""
    if path.name == "config.json":
        folder = path.parent.name or path.resolve().parent.name
        if folder:
            return folder.lower()
    return path.stem.lower()


def load_hf_config(path: Path) -> ModelSpec:
    """Read a Hugging Face ``config.json`` file into a ModelSpec (source_url = the path)."""
    from planner.catalog.yamlio import read_text

    path = Path(path)
    text = read_text(path, kind="JSON config")

    def number(digits: str) -> int:
        if sum(ch.isdigit() for ch in digits) > MAX_DIGITS:
            raise SpecError(f"{path}: an integer with {len(digits)} digits is too large; "
                            f"planner reads integers of at most {MAX_DIGITS} digits")
        return int(digits)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise SpecError(f"{path}: duplicate key '{k}'; give each key once")
            out[k] = v
        return out

    try:
        data = json.loads(text, parse_int=number, object_pairs_hook=unique)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") \
            from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a config.json") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a JSON object of config keys at the top level "
                        f"(got a JSON {type(data).__name__})")
    return model_from_hf_config(data, _name_for(path), source=str(path))
