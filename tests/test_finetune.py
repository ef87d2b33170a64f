"""Fine-tuning recipes: trainable/frozen parameter counts (exact, against peft on real modules)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from planner.catalog.catalog import load_model
from planner.errors import SpecError
from planner.estimators.finetune import linear_names, trainable_params
from planner.estimators.params import count_params
from planner.specs.finetune import FinetuneSpec


def test_llama2_7b_lora_q_v_matches_the_widely_printed_peft_line():
    # peft's print_trainable_parameters() for Llama-2-7b, LoraConfig(r=8, target q_proj, v_proj):
    # "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622"
    # (= 32 layers x 2 targets x 8 x (4096 + 4096); e.g. peft issue #1187 and HF blog posts).
    t = trainable_params(load_model("llama2-7b"), FinetuneSpec(mode="lora", lora_rank=8))
    assert (t.trainable, t.total) == (4_194_304, 6_742_609_920)
    assert t.frozen == count_params(load_model("llama2-7b")).total


@pytest.mark.parametrize("rank,targets,trainable,total", [
    # print_trainable_parameters() lines for meta-llama/Llama-2-7b-hf printed across the peft
    # tracker and tutorials: r=8 on all seven projections; r=16 on q_proj, v_proj.
    (8, "q,k,v,o,gate,up,down", 19_988_480, 6_758_404_096),
    (16, "q,v", 8_388_608, 6_746_804_224),
])
def test_llama2_7b_more_published_peft_lines(rank, targets, trainable, total):
    t = trainable_params(load_model("llama2-7b"),
                         FinetuneSpec(mode="lora", lora_rank=rank, lora_targets=targets))
    assert (t.trainable, t.total) == (trainable, total)


def test_llama3_8b_lora_all_linear_by_hand():
    m = load_model("llama3-8b")  # h 4096, kv 8 x 128, f 14336, 32 layers
    t = trainable_params(m, FinetuneSpec(mode="lora", lora_rank=16, lora_targets="all-linear"))
    per_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    # Unsloth's Llama-3-8B notebook (r=16 on q,k,v,o,gate,up,down) prints
    # "trainable params: 41,943,040 || all params: 8,072,204,288"
    assert t.adapters == 32 * per_layer == 41_943_040
    assert (t.trainable, t.total) == (41_943_040, 8_072_204_288)


def test_short_names_are_peft_names():
    ft = FinetuneSpec(mode="lora", lora_targets="q,k,v,o,gate,up,down")
    assert ft.lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                               "down_proj")


def test_full_and_partial():
    m = load_model("llama3-8b")
    p = count_params(m)
    assert trainable_params(m, FinetuneSpec(mode="full")).trainable == p.total
    t = trainable_params(m, FinetuneSpec(mode="partial", trainable_layers=4, train_lm_head=True))
    assert t.trainable == 4 * p.dense_layer.total + p.final_norm + p.lm_head
    assert t.frozen == p.total - t.trainable and t.total == p.total


def test_unknown_target_names_the_valid_modules():
    with pytest.raises(SpecError, match=r"no module 'qproj' \(did you mean q_proj\?\); valid: "
                                        r"q_proj, k_proj"):
        trainable_params(load_model("llama3-8b"), FinetuneSpec(mode="lora", lora_targets="qproj"))
    assert "q_a_proj" in linear_names(load_model("deepseek-v3"))


def test_dora_magnitudes_by_hand():
    """Llama-3-8B DoRA r16 on q,v: LoRA's 16 x 32 x [(4096+4096) + (4096+1024)] = 6,815,744,
    plus a magnitude per output feature, 32 x (4096 + 1024) = 163,840."""
    m = load_model("llama3-8b")
    plain = trainable_params(m, FinetuneSpec(mode="lora"))
    dora = trainable_params(m, FinetuneSpec(mode="lora", use_dora=True))
    assert plain.trainable == 6_815_744
    assert dora.trainable - plain.trainable == 32 * (4096 + 1024) == 163_840


@pytest.mark.parametrize("bad", [{"mode": "lora", "lora_rank": 0}, {"mode": "partial"},
                                 {"mode": "lora", "trainable_layers": 2},
                                 {"mode": "lora", "lora_targets": "q,,v"},
                                 {"mode": "full", "use_dora": True}])
def test_bad_recipes_are_rejected(bad):
    with pytest.raises(ValidationError):
        FinetuneSpec(**bad)


# -- against peft on real transformers modules (the profile extra) -----------------------------

def _tiny(name: str, **kw):
    T = pytest.importorskip("transformers")
    base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128, tie_word_embeddings=False)
    return getattr(T, name)(**{**base, **kw})


PEFT_CASES = [  # (config class, extra config keys, LoraConfig kwargs, FinetuneSpec kwargs)
    ("LlamaConfig", {}, dict(r=8, target_modules=["q_proj", "v_proj"]),
     dict(lora_rank=8, lora_targets="q,v")),
    ("LlamaConfig", {}, dict(r=16, target_modules="all-linear"),
     dict(lora_rank=16, lora_targets=["all-linear"])),
    ("Qwen2Config", {}, dict(r=4, target_modules=["q_proj", "k_proj", "o_proj"], bias="all"),
     dict(lora_rank=4, lora_targets="q,k,o", lora_bias="all")),
    ("Qwen2Config", {}, dict(r=4, target_modules=["q_proj", "k_proj", "o_proj"],
                             bias="lora_only"),
     dict(lora_rank=4, lora_targets="q,k,o", lora_bias="lora_only")),
    ("Qwen3Config", {"head_dim": 32}, dict(r=8, target_modules=["q_proj", "down_proj", "lm_head"]),
     dict(lora_rank=8, lora_targets="q,down,lm_head")),
    ("LlamaConfig", {}, dict(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"]),
     dict(lora_rank=8, lora_targets="q", train_lm_head=True)),
    ("LlamaConfig", {}, dict(r=2, target_modules=["q_proj", "embed_tokens"]),
     dict(lora_rank=2, lora_targets="q,embed")),
    # DoRA: peft's lora_magnitude_vector, one per output feature (h for an Embedding)
    ("LlamaConfig", {}, dict(r=8, target_modules="all-linear", use_dora=True),
     dict(lora_rank=8, lora_targets=["all-linear"], use_dora=True)),
    ("Qwen3Config", {"head_dim": 32}, dict(r=4, target_modules=["q_proj", "down_proj", "lm_head"],
                                           use_dora=True),
     dict(lora_rank=4, lora_targets="q,down,lm_head", use_dora=True)),
    ("LlamaConfig", {}, dict(r=2, target_modules=["k_proj", "embed_tokens"], use_dora=True,
                             bias="lora_only"),
     dict(lora_rank=2, lora_targets="k,embed", use_dora=True, lora_bias="lora_only")),
    ("Qwen2Config", {}, dict(r=4, target_modules=["q_proj", "v_proj"], use_dora=True),
     dict(lora_rank=4, lora_targets="q,v", use_dora=True)),
]


@pytest.mark.parametrize("cls,extra,lora,ours", PEFT_CASES)
def test_lora_counts_equal_peft(cls, extra, lora, ours):
    peft = pytest.importorskip("peft")
    T = pytest.importorskip("transformers")
    from planner.catalog.hf_config import model_from_hf_config

    cfg = _tiny(cls, **extra)
    wrapped = peft.get_peft_model(T.AutoModelForCausalLM.from_config(cfg),
                                  peft.LoraConfig(**lora))
    trainable, total = wrapped.get_nb_trainable_parameters()
    spec = model_from_hf_config(cfg.to_dict(), "tiny")
    t = trainable_params(spec, FinetuneSpec(mode="lora", **ours))
    assert (t.trainable, t.total) == (trainable, total)


# -- per-layer attention and interleaved MoE layers -------------------------------------------

def _windowed(**kw):
    from planner.specs.model import ModelSpec

    base = dict(name="w", num_layers=6, d_model=64, num_heads=4, ffn_hidden_size=128,
                max_seq_len=4096, vocab_size=100)
    return ModelSpec(**{**base, **kw})


def test_layer_attention_windows_follow_layer_types():
    kinds = ("sliding_attention",) * 5 + ("full_attention",)
    m = _windowed(layer_types=kinds, sliding_window=512)
    assert m.layer_attention_windows() == (512,) * 5 + (None,)
    assert _windowed().layer_attention_windows() == (None,) * 6
    c = _windowed(layer_types=("chunked_attention", "full_attention") * 3,
                  attention_chunk_size=1024)
    assert c.layer_attention_windows() == (1024, None) * 3


@pytest.mark.parametrize("bad,match", [
    ({"layer_types": ("full_attention",) * 5}, "one per layer"),
    ({"layer_types": ("sliding_attention",) * 6}, "need sliding_window"),
    ({"layer_types": ("chunked_attention",) * 6}, "need attention_chunk_size"),
])
def test_layer_types_are_checked(bad, match):
    with pytest.raises(ValidationError, match=match):
        _windowed(**bad)


def test_attention_flops_follow_windows():
    from planner.estimators.flops import attention_forward_flops_per_token, keys_per_query

    s, w = 4096, 512
    m = _windowed(layer_types=("sliding_attention",) * 5 + ("full_attention",), sliding_window=w)
    per_key = 2 * 4 * (16 + 16)  # 2 * a * (d_qk + d_v)
    assert attention_forward_flops_per_token(m, s, "full") == per_key * (5 * w + s)
    # causal: query i sees min(i+1, w) keys; by brute force over the positions
    brute = sum(min(i + 1, w) for i in range(s)) / s
    assert keys_per_query(s, "sliding_attention", w, "causal") == pytest.approx(brute)
    chunk = sum(i % 1000 + 1 for i in range(s)) / s  # a chunk of 1000 (s not a multiple)
    assert keys_per_query(s, "chunked_attention", 1000, "causal") == pytest.approx(chunk)
    assert keys_per_query(s, "sliding_attention", 8192, "causal") == (s + 1) / 2


def test_interleaved_moe_layers():
    m = _windowed(moe={"num_experts": 4, "experts_per_token": 1, "expert_ffn_hidden_size": 32,
                       "moe_layers": (1, 3, 5)})
    assert m.layer_is_moe() == (False, True) * 3
    assert (m.num_moe_layers, m.num_dense_ffn_layers) == (3, 3)
    p = count_params(m)
    assert p.total == p.embedding + p.lm_head + p.final_norm + 3 * p.dense_layer.total + \
        3 * p.moe_layer.total
    with pytest.raises(ValidationError, match="layers are 0..5"):
        _windowed(moe={"num_experts": 4, "experts_per_token": 1, "expert_ffn_hidden_size": 32,
                       "moe_layers": (1, 6)})


def test_lora_counts_are_linear_in_rank_and_additive_over_targets():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = ["q", "k", "v", "o", "gate", "up", "down", "lm_head"]
    model = load_model("qwen3-8b")

    @settings(max_examples=40, deadline=None)
    @given(st.integers(1, 512), st.sets(st.sampled_from(names), min_size=1))
    def check(rank, targets):
        def adapters(r, t):
            return trainable_params(model, FinetuneSpec(mode="lora", lora_rank=r,
                                                        lora_targets=",".join(sorted(t)))).adapters
        assert adapters(rank, targets) == rank * adapters(1, targets)
        assert adapters(rank, targets) == sum(adapters(rank, {t}) for t in targets)

    check()
