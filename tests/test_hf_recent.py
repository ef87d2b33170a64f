"""qwen3, qwen3_moe, gemma3(_text), llama4(_text), gpt_oss, phi3 (phi-4), granite and
mistral3 (its text model) config.json import: exact counts
against published totals and against numel() of the transformers module on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.catalog.catalog import load_model
from planner.catalog.hf_config import load_hf_config, model_from_hf_config
from planner.errors import SpecError
from planner.estimators.params import count_params

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

# (fixture = preset stem, exact total, exact active, published figure the counts round to)
PUBLISHED = [
    ("qwen3-0.6b", 596_049_920, None, "Qwen3-0.6B card: 0.6B (0.44B non-embedding)"),
    ("qwen3-8b", 8_190_735_360, None, "Qwen3-8B card: 8.2B (6.95B non-embedding)"),
    ("qwen3-30b-a3b", 30_532_122_624, 3_353_032_704, "Qwen3-30B-A3B card: 30.5B, 3.3B active"),
    ("qwen3-235b-a22b", 235_093_634_560, 22_190_763_520, "Qwen3-235B-A22B card: 235B, 22B"),
    ("gemma3-1b", 999_885_952, None, "Gemma 3 1B: 1B (Gemma 3 report, Table 1)"),
    ("gemma3-27b", 27_009_346_304, None, "Gemma 3 27B: 25.6B non-embedding + 1.4B embedding "
                                         "(Gemma 3 report, Table 1), vision tower not counted"),
    ("llama4-scout-17b-16e", 107_769_861_120, 17_172_894_720,
     "Llama 4 Scout card: 17B active, 109B total with the vision encoder"),
    ("llama4-maverick-17b-128e", 400_711_848_960, 17_184_691_200,
     "Llama 4 Maverick card: 17B active, 400B total"),
    ("gpt-oss-20b", 20_914_757_184, 4_187_440_704,
     "gpt-oss model card: 20.91B total, 3.61B active without the input embedding"),
    ("gpt-oss-120b", 116_829_156_672, 5_711_982_912,
     "gpt-oss model card: 116.83B total, 5.13B active without the input embedding"),
    # shapes of the cards' config.json (fixtures trimmed to the keys that size the model)
    ("phi-4", 14_659_507_200, None, "Phi-4 card: 14B (14.7B on the Hugging Face page)"),
    ("granite3.1-8b", 8_170_848_256, None, "Granite-3.1-8B-Instruct: 8.17B on its page"),
    ("mistral-small-3.1-24b", 23_572_403_200, None,
     "Mistral Small 3.1 card: 24B (text model; transformers' Mistral3Config default)"),
]


@pytest.mark.parametrize("stem,total,active,source", PUBLISHED, ids=[r[0] for r in PUBLISHED])
def test_config_json_counts_and_presets(stem, total, active, source):
    spec = load_hf_config(FIXTURES / f"{stem}.json")
    p = count_params(spec)
    assert (p.total, p.active) == (total, total if active is None else active)
    preset = count_params(load_model(stem))
    assert (preset.total, preset.active) == (p.total, p.active)
    assert load_model(stem).layer_attention_windows() == spec.layer_attention_windows()


def test_gpt_oss_active_matches_the_card_without_the_input_embedding():
    p = count_params(load_model("gpt-oss-120b"))
    assert round((p.active - p.embedding) / 1e9, 2) == 5.13  # card: 5.13B active


def test_per_layer_patterns():
    assert load_model("gemma3-1b").layer_attention_windows()[:6] == (512,) * 5 + (None,)
    gpt = load_model("gpt-oss-20b").layer_attention_windows()
    assert gpt[:2] == (128, None) and len(gpt) == 24
    scout = load_model("llama4-scout-17b-16e")
    assert scout.layer_attention_windows()[:4] == (8192, 8192, 8192, None)
    maverick = load_model("llama4-maverick-17b-128e")
    assert maverick.layer_is_moe()[:4] == (False, True, False, True)
    assert maverick.num_moe_layers == 24


def test_qwen3_moe_mlp_only_layers_and_sparse_step():
    cfg = json.loads((FIXTURES / "qwen3-30b-a3b.json").read_text())
    spec = model_from_hf_config({**cfg, "mlp_only_layers": [0, 47], "decoder_sparse_step": 2},
                                "q")
    assert spec.moe.moe_layers == tuple(range(1, 47, 2))
    with pytest.raises(SpecError, match="mlp_only_layers must list layer indices 0..47"):
        model_from_hf_config({**cfg, "mlp_only_layers": [48]}, "q")


def test_bad_layer_types_is_one_line():
    cfg = json.loads((FIXTURES / "gpt-oss-20b.json").read_text())
    with pytest.raises(SpecError, match="layer_types must list one of full_attention"):
        model_from_hf_config({**cfg, "layer_types": ["sliding_attention"] * 3}, "g")


def _meta_numel(config) -> int:
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = T.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("stem", [r[0] for r in PUBLISHED])
def test_counts_equal_numel_of_the_transformers_module(stem):
    T = pytest.importorskip("transformers")
    cfg = json.loads((FIXTURES / f"{stem}.json").read_text())
    text = cfg.get("text_config", cfg)
    kind = {"qwen3": T.Qwen3Config, "qwen3_moe": T.Qwen3MoeConfig,
            "gemma3_text": T.Gemma3TextConfig, "llama4_text": T.Llama4TextConfig,
            "gpt_oss": T.GptOssConfig, "phi3": T.Phi3Config, "granite": T.GraniteConfig,
            "mistral": T.MistralConfig}[text["model_type"]]
    config = kind(**{k: v for k, v in text.items() if k != "model_type"})
    assert count_params(load_hf_config(FIXTURES / f"{stem}.json")).total == _meta_numel(config)


def test_mistral3_text_part_is_transformers_default():
    """Mistral 3's text model is the Mistral decoder transformers builds from text_config;
    the defaults of Mistral3Config mirror Mistral-Small-3.1-24B (its docstring)."""
    T = pytest.importorskip("transformers")
    cfg = T.Mistral3Config().to_dict()
    assert count_params(model_from_hf_config(cfg, "m")).total == 23_572_403_200
    with pytest.raises(SpecError, match="model_type 'mistral3' needs a text_config object"):
        model_from_hf_config({"model_type": "mistral3"}, "m")


@pytest.mark.parametrize("bias", [dict(attention_bias=True), dict(mlp_bias=True),
                                  dict(attention_bias=True, mlp_bias=True,
                                       tie_word_embeddings=True)])
def test_granite_biases_equal_numel(bias):
    """Granite puts attention_bias on q, k, v and o and mlp_bias on gate/up/down."""
    T = pytest.importorskip("transformers")
    config = T.GraniteConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                             **bias)
    spec = model_from_hf_config(config.to_dict(), "g")
    assert count_params(spec).total == _meta_numel(config)
