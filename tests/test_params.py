"""Parameter counts against published exact counts (formulas.md §1.1 verification table)."""

import pytest

from planner.catalog.catalog import load_model, preset_paths
from planner.estimators.params import count_params
from planner.specs import ModelSpec

# (preset, total, source of the exact count)
PUBLISHED = [
    ("gpt2", 124_439_808, "HF GPT2LMHeadModel.num_parameters()"),
    ("llama2-7b", 6_738_415_616, "HF num_parameters(); GGUF general.parameter_count"),
    ("llama2-13b", 13_015_864_320, "HF num_parameters(); DeepSpeed fp32 state dict"),
    ("llama2-70b", 68_976_648_192, "HF num_parameters() (safetensors total minus inv_freq)"),
    ("llama3-8b", 8_030_261_248, "HF API safetensors.total, Llama-3.1-8B"),
    ("llama3-70b", 70_553_706_496, "HF API safetensors.total, Llama-3.1-70B"),
    ("llama3.1-405b", 405_853_388_800, "HF API safetensors.total"),
    ("mixtral-8x7b", 46_702_792_704, "HF safetensors.total; keras-hub preset metadata"),
    ("deepseek-v3", 671_026_419_200, "checkpoint-header audits; DeepSeek README '671B'"),
    ("falcon-180b", 178_557_088_768, "HF safetensors.total 179,522,565,120 minus the stored "
     "copy of the tied LM head (test_falcon_180b_checkpoint_total)"),
    ("olmo2-7b", 7_298_617_344, "HF API safetensors.total (OLMo-2-1124-7B)"),
    ("olmo2-13b", 13_716_198_400, "HF API safetensors.total (OLMo-2-1124-13B)"),
    ("smollm3-3b", 3_075_098_624, "HF API safetensors.total"),
    ("mistral-7b", 7_241_732_096, "HF num_parameters() (Mistral-7B-v0.1)"),
    ("qwen2-7b", 7_615_616_512, "HF safetensors total (Qwen2-7B, 7.62B)"),
    ("phi3-mini", 3_821_079_552, "HF safetensors total (Phi-3-mini-4k, 3.82B)"),
    ("gemma-7b", 8_537_680_896, "HF safetensors total (gemma-7b, 8.54B)"),
    ("gemma2-9b", 9_241_705_984, "HF safetensors total (gemma-2-9b, 9.24B)"),
    ("llama3.2-1b", 1_235_814_400, "HF safetensors total (Llama-3.2-1B, 1.24B)"),
    ("deepseek-v2-lite", 15_706_484_224, "formulas.md §1.1 (card: 15.7B)"),
]


@pytest.mark.parametrize("name,total,source", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_total_matches_published_count(name, total, source):
    assert count_params(load_model(name)).total == total, source


def test_falcon_180b_checkpoint_total():
    # The HF files for Falcon-180B total 179,522,565,120 (formulas.md §1.1), but Falcon ties its
    # LM head to the input embedding (transformers FalconConfig keeps PretrainedConfig's
    # tie_word_embeddings=True; vLLM's falcon.py: "only Falcon-11B doesn't share lm_head weight
    # with word embeddings"), so the checkpoint stores V*h twice, as Llama-2's files carry
    # inv_freq buffers that are not parameters.
    p = count_params(load_model("falcon-180b"))
    assert p.total + 65024 * 14848 == 179_522_565_120


def test_dense_active_equals_total():
    p = count_params(load_model("llama3-70b"))
    assert p.active == p.total


def test_mixtral_active_is_two_of_eight_experts():
    # Mixtral card "12.9B active"; formulas.md §1.1 derives 12,879,925,248.
    p = count_params(load_model("mixtral-8x7b"))
    assert p.active == 12_879_925_248
    expert = 3 * 4096 * 14336
    assert p.total - p.active == 32 * 6 * expert  # 6 unused experts in each of 32 layers


def test_deepseek_v3_active():
    # formulas.md §1.2: 37,552,297,472 with the input embedding, 36,625,618,432 without.
    p = count_params(load_model("deepseek-v3"))
    assert p.active == 37_552_297_472
    assert p.active - p.embedding == 36_625_618_432


def test_llama3_8b_matmul_params():
    # formulas.md §2.1: N_mm = N - V*h - (2L+1)*h = 7,504,658,432 (LM head in, embedding out)
    p = count_params(load_model("llama3-8b"))
    assert p.matmul_active == 8_030_261_248 - 128256 * 4096 - (2 * 32 + 1) * 4096
    assert p.matmul_active == 7_504_658_432


def test_megatron_closed_form_plus_final_norm():
    # Narayanan et al. 2021 Eq. 2 omits the final LayerNorm (2h): 124,438,272 for GPT-2.
    L, h, V, s = 12, 768, 50257, 1024
    megatron = 12 * L * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * L * h))
    assert round(megatron) == 124_438_272
    assert count_params(load_model("gpt2")).total == round(megatron) + 2 * h


def test_tied_head_is_not_counted_twice():
    base = load_model("llama3.2-1b")
    untied = ModelSpec.model_validate({**base.model_dump(), "tie_embeddings": False})
    assert count_params(untied).total - count_params(base).total == 128256 * 2048


def test_gqa_reduces_kv_projections_only():
    mha = load_model("llama2-7b")
    gqa = ModelSpec.model_validate({**mha.model_dump(), "num_kv_heads": 8})
    # K and V lose (32 - 8) heads of 128 each, per layer.
    assert count_params(mha).total - count_params(gqa).total == 32 * 2 * 4096 * 24 * 128


@pytest.mark.parametrize("name", sorted(preset_paths()))
def test_every_preset_has_source_and_positive_counts(name):
    m = load_model(name)
    assert m.source_url and m.source_url.startswith("http")
    p = count_params(m)
    assert 0 < p.matmul_active <= p.active <= p.total


def test_at_least_fifteen_presets():
    names = set(preset_paths())
    assert len(names) >= 15
    required = {"gpt2", "gpt3-175b", "llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b",
                "llama3-70b", "llama3.1-405b", "mistral-7b", "mixtral-8x7b", "deepseek-v3",
                "olmo2-7b", "falcon-180b", "chinchilla-70b", "gemma-7b"}
    assert required <= names


def test_moe_where_every_expert_is_active():
    # top-k = number of experts: active = total (and no division by E - k anywhere)
    from planner.planning.answer import estimate_plan

    m = load_model("mixtral-8x7b")
    every = ModelSpec.model_validate({**m.model_dump(), "moe": {**m.moe.model_dump(),
                                                               "experts_per_token": 8}})
    assert count_params(every).active == count_params(every).total
    est = estimate_plan(every, "h100-sxm", 64, "1T", zero_stage=3, recompute="full",
                        seq_len=4096)
    assert est.model.params_active == est.model.params_total
