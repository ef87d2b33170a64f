"""FLOPs against hand derivations and the Megatron / PaLM closed forms (formulas.md §2)."""

import pytest

from planner.catalog.catalog import load_model
from planner.estimators.flops import (
    decode_flops_per_token, flash_backward_recompute_flops_per_token, training_flops,
)
from planner.estimators.params import count_params
from planner.specs import TrainingSpec


def _train(**kw):
    base = dict(tokens=1e12, seq_len=8192, global_batch_size=512, recompute="none")
    return TrainingSpec(**{**base, **kw})


def test_llama3_8b_per_token_matches_formulas_check():
    # formulas.md §2.1: exact per-token sum x3 = 5.7913e10 at s = 8192.
    m = load_model("llama3-8b")
    f = training_flops(m, _train())
    n_mm = 7_504_658_432
    assert f.model_per_token == 6 * n_mm + 12 * 32 * 32 * 128 * 8192
    assert f.model_per_token == pytest.approx(5.7913e10, rel=1e-4)
    # formulas.md §8: (6 N_mm + 12LHQT) D at D = 15T is 8.687e23
    assert training_flops(m, _train(tokens=15e12)).model_total == pytest.approx(8.687e23, 1e-3)


def test_gpt3_matches_megatron_equations_exactly():
    # Korthikanti et al. 2022 Eq. 7 (model FLOPs) and Narayanan et al. 2021 Eq. 3 (with full
    # recompute) for a GPT with f = 4h: per iteration of B sequences.
    m = load_model("gpt3-175b")
    B, s, L, h, V = 1536, 2048, 96, 12288, 50257
    eq7 = 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * L * h))
    eq3 = 96 * B * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h))
    tokens = B * s
    none = training_flops(m, _train(seq_len=s, tokens=tokens))
    full = training_flops(m, _train(seq_len=s, tokens=tokens, recompute="full"))
    assert none.model_total == pytest.approx(eq7, rel=1e-12)
    assert full.hardware_total == pytest.approx(eq3, rel=1e-12)


def test_selective_recompute_adds_one_attention_forward():
    # formulas.md §2.8: selective = 6 N_mm + 16 L a d_h s.
    m = load_model("llama3-8b")
    f = training_flops(m, _train(recompute="selective"))
    assert f.hardware_per_token == 6 * 7_504_658_432 + 16 * 32 * 32 * 128 * 8192


def test_causal_convention_halves_the_score_term():
    m = load_model("llama3-8b")
    full = training_flops(m, _train(seq_len=4095))
    causal = training_flops(m, _train(seq_len=4095, attention_flops="causal"))
    assert causal.attention_per_token == pytest.approx(full.attention_per_token * 4096 / 2 / 4095)
    assert full.model_per_token - full.attention_per_token == pytest.approx(
        causal.model_per_token - causal.attention_per_token)


def test_moe_uses_active_experts_only():
    # formulas.md §2.6: 6 N_act,mm + 12 L a d_h s; router h*E is inside N_act,mm.
    m = load_model("mixtral-8x7b")
    p = count_params(m)
    per_layer = 4096 * 4096 * 2 + 2 * 4096 * 1024 + 2 * 3 * 4096 * 14336 + 4096 * 8
    assert p.matmul_active == 32 * per_layer + 32000 * 4096
    f = training_flops(m, _train(seq_len=4096))
    assert f.model_per_token == 6 * p.matmul_active + 12 * 32 * 32 * 128 * 4096


def test_mla_attention_uses_qk_and_v_dims():
    # formulas.md §2.10: scores 2 a (d_nope + d_rope) s and values 2 a d_v s per token forward.
    m = load_model("deepseek-v3")
    f = training_flops(m, _train(seq_len=4096))
    attn_fwd = 61 * (2 * 128 * 4096 * (128 + 64) + 2 * 128 * 4096 * 128)
    assert f.attention_per_token == 3 * attn_fwd


def test_kaplan_6n_is_close_for_large_short_context_models():
    # Kaplan et al. 2020 §2.1: C ~ 6N when d_model >> n_ctx / 12.
    m = load_model("llama3.1-405b")
    f = training_flops(m, _train(seq_len=2048))
    assert f.model_per_token / (6 * count_params(m).total) == pytest.approx(1.0, abs=0.03)


def test_llama31_405b_budget_matches_paper():
    # Dubey et al. 2024 §3.2: 3.8e25 FLOPs for 405B on 15.6T tokens (their 6ND convention).
    n = count_params(load_model("llama3.1-405b")).total
    assert 6 * n * 15.6e12 == pytest.approx(3.8e25, rel=0.01)


def test_inference_and_decode():
    # formulas.md §2.11: decode = 2 N_mm + 4 L a d_h s.
    m = load_model("llama3-8b")
    assert decode_flops_per_token(m, 8192) == 2 * 7_504_658_432 + 4 * 32 * 32 * 128 * 8192
    f = training_flops(m, _train())
    assert f.inference_per_token * 3 == f.model_per_token


def test_flash_backward_recompute_is_half_the_forward_attention():
    # Dao 2023 (FlashAttention-2) §3.1: the backward recomputes S = QK^T, so its attention
    # matmuls are 2.5x the forward's. Llama-3-8B at s = 8192 (full convention):
    # QK^T per token = 2 a s d_qk L = 2 x 32 x 8192 x 128 x 32.
    m = load_model("llama3-8b")
    extra = flash_backward_recompute_flops_per_token(m, _train())
    assert extra == 2 * 32 * 8192 * 128 * 32
    assert extra == training_flops(m, _train()).attention_per_token / 6  # half the forward
    assert flash_backward_recompute_flops_per_token(m, _train(flash_attention=False)) == 0
