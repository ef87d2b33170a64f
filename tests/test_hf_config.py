"""Hugging Face config.json -> ModelSpec: exact parameter counts and one-line errors.

Reference counts and their derivations: /work/shared/reference/formulas.md §1.1-1.3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import planner
from planner.catalog.hf_config import SUPPORTED_MODEL_TYPES, load_hf_config, model_from_hf_config
from planner.catalog.yamlio import load_spec
from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.specs.model import ModelSpec

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
PRESETS = Path(planner.__file__).parent / "data" / "models"

# (fixture stem, exact total, exact active or None when dense); the id names the count's source.
PUBLISHED = [
    pytest.param("gpt2", 124_439_808, None, id="gpt2-hf-num_parameters"),
    pytest.param("llama2-7b", 6_738_415_616, None, id="llama2-7b-hf-num_parameters-gguf"),
    pytest.param("llama3-8b", 8_030_261_248, None, id="llama3-8b-hf-safetensors-total"),
    pytest.param("mistral-7b", 7_241_732_096, None, id="mistral-7b-hf-safetensors-total"),
    pytest.param("mixtral-8x7b", 46_702_792_704, 12_879_925_248,  # active: card says "12.9B"
                 id="mixtral-8x7b-hf-safetensors-total"),
    pytest.param("qwen2-7b", 7_615_616_512, None, id="qwen2-7b-hf-safetensors-total"),
    pytest.param("phi3-mini", 3_821_079_552, None, id="phi3-mini-hf-safetensors-total"),
    pytest.param("gemma-7b", 8_537_680_896, None, id="gemma-7b-hf-safetensors-total"),
    pytest.param("gemma2-9b", 9_241_705_984, None, id="gemma2-9b-hf-safetensors-total"),
    pytest.param("olmo2-7b", 7_298_617_344, None, id="olmo2-1124-7b-hf-safetensors-total"),
    # Main model without the MTP module; checkpoint-header audits, DeepSeek README "671B".
    # Active includes the input embedding (README_WEIGHTS "36.7B" excludes it): formulas §1.2.
    pytest.param("deepseek-v3", 671_026_419_200, 37_552_297_472,
                 id="deepseek-v3-checkpoint-headers"),
    # Pythia README table: 162,322,944 params (85,056,000 non-embedding).
    pytest.param("pythia-160m", 162_322_944, None, id="pythia-160m-eleutherai-readme"),
]

# Fixture stem -> shipped preset stem (same name for all of them).
WITH_PRESET = ["gpt2", "llama2-7b", "llama3-8b", "mistral-7b", "mixtral-8x7b", "qwen2-7b",
               "phi3-mini", "gemma-7b", "gemma2-9b", "olmo2-7b", "deepseek-v3",
               "deepseek-v2-lite"]

FALCON_V, FALCON_H = 65_024, 14_848


def _load(stem: str) -> ModelSpec:
    return load_hf_config(FIXTURES / f"{stem}.json")


def _preset(stem: str) -> ModelSpec:
    return load_spec(ModelSpec, PRESETS / f"{stem}.yaml")


@pytest.mark.parametrize(("stem", "total", "active"), PUBLISHED)
def test_fixture_matches_published_count(stem: str, total: int, active: int | None) -> None:
    counts = count_params(_load(stem))
    assert counts.total == total
    assert counts.active == (total if active is None else active)


@pytest.mark.parametrize("stem", WITH_PRESET)
def test_fixture_matches_shipped_preset(stem: str) -> None:
    from_hf, preset = count_params(_load(stem)), count_params(_preset(stem))
    assert (from_hf.total, from_hf.active, from_hf.matmul_active) == (
        preset.total, preset.active, preset.matmul_active)


def test_deepseek_v2_lite_without_query_compression() -> None:
    spec = _load("deepseek-v2-lite")  # q_lora_rank: null -> 0; no router bias in V2
    assert spec.mla is not None and spec.mla.q_lora_rank == 0
    assert spec.moe is not None and not spec.moe.router_bias
    # Derived in formulas.md §1.1 (paper/card: "15.7B" total, "2.4B" activated w/o embedding).
    assert count_params(spec).total == 15_706_484_224


def test_falcon_180b_is_tied_like_transformers_builds_it() -> None:
    """The published config has no tie_word_embeddings key, so FalconConfig inherits
    PretrainedConfig's True and transformers (and vLLM) share lm_head with word_embeddings.
    The HF safetensors total 179,522,565,120 (formulas.md §1.1) also counts the lm_head copy
    stored in the checkpoint, i.e. exactly V*h more than the unique parameters."""
    spec = _load("falcon-180b")
    assert spec.tie_embeddings
    total = count_params(spec).total
    assert total == 178_557_088_768
    assert total + FALCON_V * FALCON_H == 179_522_565_120
    untied = spec.model_copy(update={"tie_embeddings": False})
    preset = _preset("falcon-180b").model_copy(update={"tie_embeddings": False})
    assert count_params(untied).total == count_params(preset).total == 179_522_565_120


def test_falcon_7b_style_multi_query_single_norm() -> None:
    cfg = {"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71,
           "num_hidden_layers": 32, "vocab_size": 65024, "multi_query": True,
           "new_decoder_architecture": False, "parallel_attn": True, "bias": False}
    spec = model_from_hf_config(cfg, "falcon-7b")
    assert (spec.kv_heads, spec.norms_per_layer, spec.tie_embeddings) == (1, 1, True)
    h, V, d, f = 4544, 65024, 64, 4 * 4544
    layer = h * (h + 2 * d) + h * h + 2 * h * f + 2 * h
    assert count_params(spec).total == V * h + 32 * layer + 2 * h


def test_qwen3_per_head_qk_norm_and_defaults() -> None:
    # Qwen3-0.6B shape (card: 0.6B params, 0.44B non-embedding); head_dim 128 is explicit.
    cfg = {"model_type": "qwen3", "hidden_size": 1024, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 28,
           "intermediate_size": 3072, "vocab_size": 151936, "tie_word_embeddings": True}
    spec = model_from_hf_config(cfg, "qwen3-0.6b")
    assert (spec.qk_norm, spec.d_head, spec.qkv_bias) == ("per_head", 128, False)
    counts = count_params(spec)
    assert counts.total == 596_049_920
    assert round((counts.total - counts.embedding) / 1e9, 2) == 0.44


def test_type_defaults_when_keys_are_absent() -> None:
    base = {"hidden_size": 4096, "num_attention_heads": 64, "num_hidden_layers": 2,
            "intermediate_size": 8192, "vocab_size": 1000}
    assert model_from_hf_config({**base, "model_type": "llama"}, "x").kv_heads == 64
    assert model_from_hf_config({**base, "model_type": "mistral"}, "x").kv_heads == 8
    assert model_from_hf_config({**base, "model_type": "qwen2"}, "x").kv_heads == 32
    # transformers: an explicit null means MHA, an absent key the class default
    assert model_from_hf_config({**base, "model_type": "qwen2", "num_key_value_heads": None},
                                "x").kv_heads == 64
    gemma = model_from_hf_config({**base, "model_type": "gemma"}, "x")
    assert (gemma.tie_embeddings, gemma.d_head, gemma.activation) == (True, 256, "gelu_tanh")
    llama = model_from_hf_config({**base, "model_type": "llama", "attention_bias": True,
                                  "mlp_bias": True}, "x")
    assert (llama.qkv_bias, llama.attn_out_bias, llama.mlp_bias) == (True, True, True)


def test_name_and_source_from_a_model_folder(tmp_path: Path) -> None:
    folder = tmp_path / "Meta-Llama-3-8B"
    folder.mkdir()
    path = folder / "config.json"
    path.write_text((FIXTURES / "llama3-8b.json").read_text())
    spec = load_hf_config(path)
    assert (spec.name, spec.source_url) == ("meta-llama-3-8b", str(path))
    assert _load("qwen2-7b").name == "qwen2-7b"


def _error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_hf_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def _llama_with(**changes: object) -> str:
    cfg = json.loads((FIXTURES / "llama3-8b.json").read_text())
    cfg.update(changes)
    return json.dumps({k: v for k, v in cfg.items() if v != "DROP"})


def test_malformed_json(tmp_path: Path) -> None:
    assert "not valid JSON" in _error_for(tmp_path, '{"model_type": "llama",')


def test_json_list_is_not_a_config(tmp_path: Path) -> None:
    assert "JSON object" in _error_for(tmp_path, "[1, 2, 3]")


def test_unsupported_model_type_lists_the_supported_ones(tmp_path: Path) -> None:
    message = _error_for(tmp_path, '{"model_type": "bert", "hidden_size": 768}')
    assert "model_type 'bert' is not supported" in message
    assert "supported: " + ", ".join(SUPPORTED_MODEL_TYPES) in message


def test_missing_model_type(tmp_path: Path) -> None:
    assert "model_type" in _error_for(tmp_path, '{"hidden_size": 768}')


def test_missing_hidden_size(tmp_path: Path) -> None:
    message = _error_for(tmp_path, _llama_with(hidden_size="DROP"))
    assert "missing required key 'hidden_size'" in message


def test_heads_not_divisible_by_kv_heads(tmp_path: Path) -> None:
    message = _error_for(tmp_path, _llama_with(num_key_value_heads=5))
    assert "num_attention_heads=32" in message and "num_key_value_heads=5" in message


@pytest.mark.parametrize(("changes", "field"), [
    ({"hidden_size": "4096"}, "hidden_size"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"tie_word_embeddings": "no"}, "tie_word_embeddings"),
    ({"hidden_act": "mish"}, "hidden_act"),
    ({"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 4},
     "num_experts_per_tok"),
])
def test_bad_values_name_the_key(tmp_path: Path, changes: dict, field: str) -> None:
    assert field in _error_for(tmp_path, _llama_with(**changes))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_hf_config(tmp_path / "missing" / "config.json")


def test_non_dict_passed_directly() -> None:
    with pytest.raises(SpecError, match="expected a JSON object"):
        model_from_hf_config([1, 2], "x")  # type: ignore[arg-type]


def test_more_dense_layers_than_layers(tmp_path: Path) -> None:
    cfg = json.loads((FIXTURES / "deepseek-v3.json").read_text())
    cfg["first_k_dense_replace"] = 62
    assert "first_k_dense_replace=62" in _error_for(tmp_path, json.dumps(cfg))
