"""MLA decoding in `planner validate --serve`: the latent-space (absorbed) attention equals
DeepSeek's naive MLA on real modules, its cache is the latent the KV estimator counts, the
decode FLOPs follow the absorbed form, and a DeepSeek-style model is timed on the CPU."""

from __future__ import annotations

import json

import pytest

from planner.catalog.catalog import load_model
from planner.cli import cli
from planner.estimators.params import count_params
from planner.estimators.serving import forward_flops, kv_cache_bytes
from planner.specs.model import ModelSpec

torch = pytest.importorskip("torch")

TINY_MLA = ModelSpec(name="tiny-mla", num_layers=2, d_model=128, num_heads=4,
                     ffn_hidden_size=256, vocab_size=512, max_seq_len=256,
                     mla={"q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
                          "qk_rope_head_dim": 8, "v_head_dim": 16})


def test_absorbed_attention_equals_the_naive_form():
    from planner.profiling.model import MLAttention, rope
    from planner.profiling.serve_bench import mla_absorbed_attention

    torch.manual_seed(0)
    attn = MLAttention(TINY_MLA).double()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.2)
    b, s = 3, 9
    x = torch.randn(b, s, 128, dtype=torch.float64)
    naive = attn(x)[:, -1]  # causal: the last token attends over all s keys
    m = TINY_MLA.mla
    q = attn.q_b(attn.q_norm(attn.q_a(x))).view(b, s, 4, -1)
    kv = attn.kv_a(x)
    latent = attn.kv_norm(kv[..., :m.kv_lora_rank])
    k_pe = rope(kv[..., m.kv_lora_rank:].unsqueeze(2))[:, :, 0]
    out = mla_absorbed_attention(attn, q[:, -1, :, :m.qk_nope_head_dim],
                                 rope(q[..., m.qk_nope_head_dim:])[:, -1], latent, k_pe)
    assert torch.allclose(attn.o(out), naive, atol=1e-10)


def test_mla_cache_is_the_latent_the_estimator_counts():
    from planner.profiling.serve_bench import kv_caches

    latent, k_pe = kv_caches(TINY_MLA, 3, 17, "cpu", torch.float32)
    per_layer = (latent.numel() + k_pe.numel()) * 4
    assert per_layer * TINY_MLA.num_layers == 3 * kv_cache_bytes(TINY_MLA, 17, "fp32")
    assert latent.shape == (3, 17, 32) and k_pe.shape == (3, 17, 8)


def test_mla_decode_flops_are_the_absorbed_form():
    # DeepSeek-V3: 128 heads, d_c 512, d_R 64, 61 layers: 2 x 128 x (2 x 512 + 64) per key
    # per layer at decode; prefill keeps 2 a (d_qk + d_v) = 2 x 128 x (192 + 128)
    m = load_model("deepseek-v3")
    p = count_params(m)
    mm = 2.0 * p.matmul_active
    assert forward_flops(m, p, 1, 1000, decode=True) == pytest.approx(
        mm + 2 * 128 * (2 * 512 + 64) * 61 * 1000)
    assert forward_flops(m, p, 1, 1000) == pytest.approx(mm + 2 * 128 * (192 + 128) * 61 * 1000)
    dense = load_model("llama3-8b")
    pd = count_params(dense)
    assert forward_flops(dense, pd, 4, 100, decode=True) == forward_flops(dense, pd, 4, 100)


def test_validate_serve_times_an_mla_model(runner):
    res = runner.invoke(cli, ["validate", "--serve", "--model", "deepseek-v2-lite",
                              "--scale-to", "2M", "--steps", "1", "--warmup", "0",
                              "--format", "json"])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    decode = [q for q in d["quantities"] if q["name"].startswith("decode_step_s")]
    assert len(decode) == 4 and all(q["predicted"] > 0 and q["measured"] > 0 for q in decode)
