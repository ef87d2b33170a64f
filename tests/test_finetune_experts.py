"""LoRA on fused routed experts (peft's LoraConfig(target_parameters=...), peft >= 0.17):
trainable counts exact against peft on real transformers modules; memory and FLOPs of the
merged weights by hand; what peft refuses is refused in one line."""

from __future__ import annotations

import pytest

from planner.catalog.catalog import load_model
from planner.cli import cli
from planner.estimators.finetune import trainable_params
from planner.estimators.finetune_flops import expert_weight_grad_flops_per_token
from planner.estimators.finetune_memory import expert_merge_bytes
from planner.estimators.vec import Degrees
from planner.specs.finetune import FinetuneSpec
from planner.specs.training import ParallelismSpec, TrainingSpec


def test_qwen3_30b_a3b_expert_adapters_by_hand():
    """Qwen3-30B-A3B: 48 MoE layers of 128 experts, h 2048, f_e 768. peft's ParamWrapper
    gives a (E, in, out) parameter lora_A Linear(in, r E) and lora_B Linear(r E, out):
    gate_up (E, 2 f, h): r E (2 f + h); down (E, h, f): r E (h + f)."""
    m = load_model("qwen3-30b-a3b")
    plain = trainable_params(m, FinetuneSpec(mode="lora", lora_targets="q,v"))
    both = trainable_params(m, FinetuneSpec(mode="lora", lora_targets="q,v,experts"))
    up = trainable_params(m, FinetuneSpec(mode="lora", lora_targets="experts.gate_up_proj"))
    assert both.trainable - plain.trainable == 16 * 128 * (1536 + 2048 + 2048 + 768) * 48
    assert both.trainable - plain.trainable == 629_145_600
    assert up.trainable == 16 * 128 * (1536 + 2048) * 48
    assert both.frozen == plain.frozen  # the experts themselves stay frozen


def test_expert_merge_memory_and_flops_by_hand():
    """Each forward peft folds the adapters into the expert stack (W + s lhs @ rhs); the
    expert matmuls save that merged stack: 128 x 3 x 2048 x 768 x 2 bytes (bf16) per MoE
    layer, / ep. The merged weight needs a gradient, so the top-8 experts' GEMMs run their
    weight gradient too: 2 x 8 x 3 x 2048 x 768 FLOPs per token per layer."""
    m = load_model("qwen3-30b-a3b")
    ft = FinetuneSpec(mode="lora", lora_targets="experts")
    t = TrainingSpec(tokens=1e6, seq_len=1024, global_batch_size=8, micro_batch_size=1,
                     finetune=ft)
    per_layer = 128 * 3 * 2048 * 768 * 2
    for ep in (1, 4):
        lay = Degrees.from_specs(t, ParallelismSpec(devices=ep, ep=ep, zero_stage=0))
        assert expert_merge_bytes(m, t, lay, moe_layer=True) == per_layer / ep
        assert expert_merge_bytes(m, t, lay, moe_layer=False) == 0
    assert expert_weight_grad_flops_per_token(m, ft) == 2 * 8 * 3 * 2048 * 768 * 48
    plain = FinetuneSpec(mode="lora")
    assert expert_weight_grad_flops_per_token(m, plain) == 0


def _tiny_configs():
    T = pytest.importorskip("transformers")
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128, tie_word_embeddings=False)
    return {
        "qwen3_moe": (T.Qwen3MoeConfig(**base, intermediate_size=96, moe_intermediate_size=32,
                                       num_experts=4, num_experts_per_tok=2, head_dim=16),
                      "mlp.experts"),
        "gpt_oss": (T.GptOssConfig(**base, intermediate_size=32, num_local_experts=4,
                                   num_experts_per_tok=2, head_dim=16), "mlp.experts"),
        "llama4_text": (T.Llama4TextConfig(**base, intermediate_size=32,
                                           intermediate_size_mlp=96, num_local_experts=4,
                                           num_experts_per_tok=1, head_dim=16,
                                           interleave_moe_layer_step=2),
                        "feed_forward.experts"),
        "mixtral": (T.MixtralConfig(**base, intermediate_size=32, num_local_experts=4,
                                    num_experts_per_tok=2), "mlp.experts"),
    }


CASES = [(m, p) for m in ("qwen3_moe", "gpt_oss", "llama4_text", "mixtral")
         for p in (("gate_up_proj",), ("down_proj",), ("gate_up_proj", "down_proj"))]


@pytest.mark.parametrize("name,params", CASES, ids=[f"{m}-{'+'.join(p)}" for m, p in CASES])
def test_expert_lora_counts_equal_peft(name, params):
    peft = pytest.importorskip("peft")
    T = pytest.importorskip("transformers")
    from planner.catalog.hf_config import model_from_hf_config

    cfg, path = _tiny_configs()[name]
    wrapped = peft.get_peft_model(T.AutoModelForCausalLM.from_config(cfg), peft.LoraConfig(
        r=4, target_modules=["q_proj"], target_parameters=[f"{path}.{p}" for p in params]))
    trainable, total = wrapped.get_nb_trainable_parameters()
    spec = model_from_hf_config(cfg.to_dict(), "tiny")
    ours = trainable_params(spec, FinetuneSpec(
        mode="lora", lora_rank=4, lora_targets=["q", *(f"experts.{p}" for p in params)]))
    assert (ours.trainable, ours.total) == (trainable, total)


@pytest.mark.parametrize("args,needle", [
    (["--model", "llama3-8b", "--finetune", "lora", "--lora-targets", "q,experts"],
     "--lora-targets experts: llama3-8b has no routed experts to target"),
    (["--model", "qwen3-30b-a3b", "--finetune", "qlora", "--lora-targets", "experts"],
     "does not work with qlora"),
    (["--model", "qwen3-30b-a3b", "--finetune", "lora", "--lora-targets", "experts",
      "--lora-dropout", "0.1"], "does not work with lora_dropout > 0"),
    (["--model", "qwen3-30b-a3b", "--finetune", "lora", "--lora-targets", "experts",
      "--dora"], "does not work with use_dora"),
])
def test_expert_targets_bad_input_is_one_line(runner, args, needle):
    r = runner.invoke(cli, ["estimate", *args])
    assert r.exit_code == 1 and needle in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_estimate_with_expert_targets(runner):
    import json

    args = ["estimate", "--model", "qwen3-30b-a3b", "--finetune", "lora", "--hardware",
            "h100-sxm", "--devices", "8", "--tokens", "100M", "--tp", "1", "--pp", "1",
            "--cp", "1", "--ep", "1", "--zero", "3", "--micro-batch", "1", "--recompute",
            "none", "--format", "json"]
    plain = json.loads(runner.invoke(cli, [*args, "--lora-targets", "q,v"]).stdout)
    r = runner.invoke(cli, [*args, "--lora-targets", "q,v,experts"])
    assert r.exit_code == 0, r.stderr
    est = json.loads(r.stdout)
    assert "experts.gate_up_proj" in est["model"]["finetune"]
    # 48 MoE layers x one merged bf16 stack each (128 x 3 x 2048 x 768 x 2 B) more saved
    more = est["memory_per_device"]["activations_bytes"] - \
        plain["memory_per_device"]["activations_bytes"]
    assert more == pytest.approx(48 * 128 * 3 * 2048 * 768 * 2, rel=1e-9)
    # the routed tokens' expert weight gradients; the adapters run no per-token branch
    assert est["flops"]["per_token"] - plain["flops"]["per_token"] == pytest.approx(
        2 * 8 * 3 * 2048 * 768 * 48, rel=1e-9)


def test_validate_refuses_expert_targets():
    pytest.importorskip("torch")
    from planner.errors import SpecError
    from planner.profiling.finetune import apply_finetune

    spec = load_model("qwen3-30b-a3b")
    with pytest.raises(SpecError, match="checked by its counts only"):
        apply_finetune(None, spec, FinetuneSpec(mode="lora", lora_targets="experts"), "cpu")
