"""Serving estimators: KV-cache bytes against papers, the formula and real torch K/V tensors;
serving weight bytes; the decode roofline against the HBM physical limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog.catalog import load_hardware, load_model, preset_paths
from planner.estimators.params import count_params
from planner.estimators.serving import (
    Layout, ServeConfig, StepLoad, experts_touched, iteration_time, kv_bytes_per_token, kv_cache_bytes,
    kv_elements_per_token_per_layer, max_context_tokens, min_bytes_per_decode_step,
    serving_weight_bytes, weight_bytes_per_param,
)
from planner.specs.model import ModelSpec

PRESETS = sorted(preset_paths())


def _spec(**kw) -> ModelSpec:
    base = dict(name="tiny", num_layers=2, d_model=256, num_heads=8, num_kv_heads=2,
                ffn_hidden_size=512, vocab_size=512, max_seq_len=256)
    return ModelSpec(**{**base, **kw})


class Windowed(ModelSpec):
    """A model whose even layers see a 4096-token sliding window (Gemma-2 style,
    Team Gemma 2024 §2: local 4096 / global 8192 alternating)."""

    def layer_attention_windows(self):
        return tuple(4096 if i % 2 == 0 else None for i in range(self.num_layers))


def test_opt13b_kv_is_800kb_per_token():
    # Kwon et al. 2023 (PagedAttention) §3: "the KV cache of a single token demands 800 KB
    # ... 2 (key and value vectors) x 5120 (hidden state size) x 40 (number of layers) x 2
    # (bytes per FP16)" = 819,200 bytes.
    opt13b = _spec(num_layers=40, d_model=5120, num_heads=40, num_kv_heads=None,
                   ffn_hidden_size=20480, vocab_size=50272, max_seq_len=2048)
    assert kv_bytes_per_token(opt13b, "fp16") == 819_200


@pytest.mark.parametrize("name,expected", [
    ("llama3-70b", 80 * 2 * 8 * 128 * 2),  # GQA: 320 KiB per token
    ("llama3-8b", 32 * 2 * 8 * 128 * 2),  # 128 KiB
    ("llama2-7b", 32 * 2 * 32 * 128 * 2),  # MHA: 512 KiB
    # MLA, DeepSeek-V2 §2.1.2: (d_c + d_h^R) per token per layer = 512 + 64, bf16.
    ("deepseek-v3", 61 * (512 + 64) * 2),
])
def test_kv_bytes_per_token_by_hand(name, expected):
    assert kv_bytes_per_token(load_model(name), "bf16") == expected
    assert kv_bytes_per_token(load_model(name), "fp8") == expected / 2


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_kv_bytes_match_the_formula(name):
    m = load_model(name)
    if m.mla:
        per_layer = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
    else:
        per_layer = 2 * (m.num_kv_heads or m.num_heads) * (m.head_dim or m.d_model // m.num_heads)
    assert kv_bytes_per_token(m, "bf16") == per_layer * m.num_layers * 2
    # a windowed layer caches at most its window of tokens (issue 15's layer_attention_windows)
    per_layer_bytes = per_layer * 2
    assert kv_cache_bytes(m, 1000, "bf16") == sum(
        per_layer_bytes * (1000 if w is None else min(1000, w))
        for w in m.layer_attention_windows())


def test_mqa_stores_one_head():
    m = _spec(num_kv_heads=1)
    assert m.attention_kind == "MQA"
    assert kv_bytes_per_token(m) == 2 * 1 * 32 * 2 * 2  # layers 2, d_h 32


def test_sliding_window_caps_the_cache():
    m = Windowed(**{**load_model("gemma2-9b").model_dump(), "max_seq_len": 8192})
    per_layer = kv_elements_per_token_per_layer(m) * 2
    half = m.num_layers // 2
    assert kv_cache_bytes(m, 8192) == per_layer * (half * 4096 + half * 8192)
    assert kv_cache_bytes(m, 1000) == per_layer * m.num_layers * 1000
    free = kv_cache_bytes(m, 6000)
    assert max_context_tokens(m, free, "bf16") == 6000


def test_max_context_is_the_largest_that_fits():
    m = load_model("llama3-70b")
    free = 10e9
    n = max_context_tokens(m, free, "bf16")
    assert kv_cache_bytes(m, n) <= free < kv_cache_bytes(m, n + 1)
    assert n == 30517  # 10e9 // 327,680


def test_int4_weight_only_carries_group_scales():
    # AWQ / GPTQ group size 128 with one fp16 scale per group: 4 bits + 16/128 bits.
    assert weight_bytes_per_param("int4") == 0.5 + 2 / 128
    m = load_model("llama3-70b")
    p = count_params(m)
    wb = serving_weight_bytes(m, "int4")
    layer_mm = p.matmul_total - p.vocab_times_width
    assert wb.layers_bytes == layer_mm * 0.515625
    assert wb.embedding_bytes == p.embedding * 2 and wb.lm_head_bytes == p.lm_head * 2
    bf16 = serving_weight_bytes(m, "bf16").total_bytes
    assert bf16 == pytest.approx(2 * p.total)  # every parameter in 16-bit


def test_experts_touched():
    assert experts_touched(8, 2, 1) == pytest.approx(2)
    assert experts_touched(256, 8, 1e6) == pytest.approx(256)
    assert 2 < experts_touched(8, 2, 4) < 8


def _kv_tensor_bytes(spec: ModelSpec, batch: int, seq: int) -> int:
    """Bytes of the tensors a KV cache keeps, captured from the real torch model planner
    validates with: K and V projections per layer, or MLA's compressed kv_a output
    (DeepSeek-V3 inference/model.py caches kv_norm(kv) and k_pe: the same elements)."""
    torch = pytest.importorskip("torch")
    from planner.profiling.model import build_model

    lm = build_model(spec, dtype=torch.bfloat16)
    captured: list[int] = []
    hook = lambda mod, args, out: captured.append(out.numel() * out.element_size())  # noqa
    for block in lm.blocks:
        attn = block.attn
        for name in (("kv_a",) if spec.mla else ("k", "v")):
            getattr(attn, name).register_forward_hook(hook)
    tokens = torch.randint(0, spec.vocab_size, (batch, seq))
    with torch.no_grad():
        lm(tokens, tokens)
    return sum(captured)


@pytest.mark.parametrize("spec", [
    _spec(),  # GQA 8 heads / 2 KV heads
    _spec(num_kv_heads=1),  # MQA
    _spec(num_kv_heads=None),  # MHA
    _spec(num_heads=4, num_kv_heads=None, mla={
        "q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8, "v_head_dim": 16}),
], ids=["gqa", "mqa", "mha", "mla"])
def test_kv_bytes_match_torch_tensors(spec):
    batch, seq = 3, 17
    assert _kv_tensor_bytes(spec, batch, seq) == batch * kv_cache_bytes(spec, seq, "bf16")


HW = ["h100-sxm", "h200", "mi300x", "b200", "gaudi3"]  # each has bf16 and fp8 peaks


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["llama3-8b", "llama3-70b", "mixtral-8x7b", "deepseek-v3"]),
       hw=st.sampled_from(HW), tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2]),
       batch=st.integers(1, 1024), ctx=st.integers(1, 8192),
       precision=st.sampled_from(["bf16", "fp8", "int4"]),
       kv=st.sampled_from(["bf16", "fp8"]), prefill=st.integers(0, 4096),
       ep=st.sampled_from([1, 2, 4, 8]))
def test_no_decode_rate_beats_hbm_bandwidth(name, hw, tp, pp, batch, ctx, precision, kv,
                                            prefill, ep):
    model, prof = load_model(name), load_hardware(hw)
    cfg = ServeConfig(precision, kv, Layout(tp, pp, ep if model.moe else 1))
    it = iteration_time(model, prof, cfg, StepLoad(batch, ctx, prefill))
    floor_s = min_bytes_per_decode_step(model, cfg, batch, ctx) / (
        prof.hbm_bandwidth_tb_per_s.value * 1e12)
    assert it.total_s >= floor_s
    # the decode rate a replica is predicted to reach is at most what HBM allows
    assert batch / it.total_s <= batch / floor_s
