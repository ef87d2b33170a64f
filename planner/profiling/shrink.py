"""Shrink a model spec to about N parameters while keeping its character.

Kept: head dim, query/KV head ratio (GQA/MQA), FFN width / d_model, gated or plain MLP,
norms, biases, tying, expert count and top-k, the share of leading dense layers, MLA head
dims. Changed: layers, heads (so d_model), latent ranks in proportion, vocab capped.
Pure Python (no torch).
"""

from __future__ import annotations

import math

from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.specs.model import ModelSpec

VOCAB_CAP = 32768


def _candidate(spec: ModelSpec, heads: int, layers: int, vocab: int) -> ModelSpec:
    scale = heads / spec.num_heads
    h = heads * spec.d_head if spec.head_dim or not spec.mla else \
        max(64, int(round(spec.d_model * scale / 64)) * 64)
    width = lambda f: max(8, int(round(f * h / spec.d_model / 8)) * 8)  # noqa: E731
    data = spec.model_dump()
    data.update(name=f"{spec.name}-shrunk", num_layers=layers, num_heads=heads, d_model=h,
                ffn_hidden_size=width(spec.ffn_hidden_size), vocab_size=vocab,
                max_seq_len=min(spec.max_seq_len, 4096) if spec.position_embedding ==
                "learned" else spec.max_seq_len)
    if spec.num_kv_heads:
        data["num_kv_heads"] = max(1, heads * spec.kv_heads // spec.num_heads)
    # The torch model attends to every key and has no sink logits: a shrunk model is built
    # with full attention, so its analytic counts and FLOPs describe what runs.
    data.update(layer_types=None, sliding_window=None, attention_chunk_size=None,
                attention_sinks=False)
    if spec.moe:
        e = spec.moe
        dense_share = e.num_dense_layers / spec.num_layers
        data["moe"] = {**data["moe"],
                       "expert_ffn_hidden_size": width(e.expert_ffn_hidden_size),
                       "shared_expert_ffn_hidden_size": (
                           width(e.shared_expert_ffn_hidden_size)
                           if e.shared_expert_ffn_hidden_size else None),
                       "num_dense_layers": min(layers - 1, round(dense_share * layers))}
        if e.moe_layers is not None:  # the interleaving, sampled at the new depth
            was = spec.layer_is_moe()
            pattern = [i for i in range(layers) if was[i * spec.num_layers // layers]]
            data["moe"].update(num_dense_layers=0, moe_layers=pattern or [layers - 1])
    if spec.mla:
        m = spec.mla
        rank = lambda r: max(16, int(round(r * scale / 16)) * 16) if r else 0  # noqa: E731
        data["mla"] = {**data["mla"], "q_lora_rank": rank(m.q_lora_rank),
                       "kv_lora_rank": rank(m.kv_lora_rank)}
    return ModelSpec.model_validate(data)


def shrink(spec: ModelSpec, target_params: float, vocab_cap: int = VOCAB_CAP) -> ModelSpec:
    """The shape closest to ``target_params`` (log distance, then aspect ratio)."""
    if target_params <= 0:
        raise SpecError(f"--scale-to must be positive, got {target_params}")
    total = count_params(spec).total
    if target_params >= total:
        return spec
    vocabs = sorted({min(spec.vocab_size, v) for v in (vocab_cap, vocab_cap // 2,
                                                       vocab_cap // 4)}, reverse=True)
    group = spec.num_heads // spec.kv_heads if spec.num_kv_heads else 1
    min_heads = max(group, min(4, spec.num_heads))
    aspect = spec.d_model / spec.num_layers
    best, best_key = None, None
    for vocab_rank, vocab in enumerate(vocabs):
        for heads in range(min_heads - min_heads % group or group, spec.num_heads + 1, group):
            for layers in range(2, spec.num_layers + 1):
                try:
                    cand = _candidate(spec, heads, layers, vocab)
                except ValueError:
                    continue
                n = count_params(cand).total
                key = (round(abs(math.log(n / target_params)) / 0.05), vocab_rank,
                       abs(math.log(cand.d_model / cand.num_layers / aspect)))
                if best_key is None or key < best_key:
                    best, best_key = cand, key
    if best is None:
        raise SpecError(f"cannot shrink {spec.name} to {target_params:.3g} parameters")
    return best


CPU_MAX_PARAMS = 300e6  # more than this is not trained on a CPU by `planner validate`


def check_cpu_size(spec: ModelSpec, device: str, scale_to: float | None = None) -> int:
    """The parameter count of the model that will be built; SpecError, before anything is
    allocated, when it is too large to train on a CPU. Applies to the model actually built:
    ``shrink`` never grows a model, so --scale-to above its size leaves it full-size."""
    n = count_params(spec).total
    if device != "cpu" or n <= CPU_MAX_PARAMS:
        return n
    if scale_to is not None and scale_to >= n:
        why = (f"--scale-to {scale_to:.3g} keeps {spec.name} at {n / 1e9:.1f}B parameters "
               "(it only shrinks a model)")
    elif scale_to is not None:
        why = f"--scale-to {scale_to:.3g} gives {spec.name} {n / 1e9:.2f}B parameters"
    else:
        why = f"{spec.name} has {n / 1e9:.1f}B parameters"
    raise SpecError(f"{why}, too many to train on a CPU (at most {CPU_MAX_PARAMS / 1e6:.0f}M); "
                    "use --scale-to 50M (keeps its shape, shrinks it)")
