"""`planner validate --finetune`: a real peft LoRA run (and full / partial) on this CPU,
compared with the fine-tuning estimators: counts and FLOPs exact, saved activations within
the validate tolerance."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from planner.catalog.catalog import load_model  # noqa: E402
from planner.cli import cli  # noqa: E402
from planner.profiling.shrink import shrink  # noqa: E402
from planner.profiling.validate import RunConfig, run_validation  # noqa: E402
from planner.specs.finetune import FinetuneSpec  # noqa: E402

CASES = [("llama3-8b", dict(mode="lora", lora_rank=8, lora_targets="q,v")),
         ("llama3-8b", dict(mode="lora", lora_rank=4, lora_targets="down,o")),
         ("llama3-8b", dict(mode="lora", lora_rank=4, lora_targets="up")),
         ("qwen3-8b", dict(mode="lora", lora_rank=4, lora_targets="all-linear")),
         ("gpt2", dict(mode="lora", lora_rank=4, lora_targets="down")),
         ("llama3-8b", dict(mode="lora", lora_rank=4, lora_targets="k", lora_bias="all",
                            train_lm_head=True)),
         ("llama3-8b", dict(mode="partial", trainable_layers=1)),
         ("llama3-8b", dict(mode="full"))]


@pytest.mark.parametrize("name,recipe", CASES, ids=[f"{n}-{r['mode']}-{r.get('lora_targets', '')}"
                                                   for n, r in CASES])
def test_real_finetune_matches_the_estimators(name, recipe):
    spec = shrink(load_model(name), 3e6)
    rep = run_validation(spec, RunConfig(steps=1, warmup=0, micro_batch_size=2, seq_len=64,
                                         finetune=FinetuneSpec(**recipe)))
    by = {q.name: q for q in rep.quantities}
    for exact in ("params", "trainable_params", "flops_per_step"):
        assert by[exact].error_pct == 0, (exact, by[exact].predicted, by[exact].measured)
    assert abs(by["activation_bytes"].error_pct) < 1.0


def test_validate_cli_finetune_lora_json():
    r = CliRunner().invoke(cli, ["validate", "--finetune", "lora", "--model", "qwen3-0.6b",
                                 "--scale-to", "3M", "--lora-rank", "4", "--lora-targets",
                                 "q,k,v,o", "--steps", "1", "--warmup", "0", "--seq-len", "64",
                                 "--micro-batch", "2", "--no-energy", "--format", "json"])
    assert r.exit_code == 0, r.output
    by = {q["name"]: q for q in json.loads(r.stdout)["quantities"]}
    assert by["trainable_params"]["error_pct"] == 0 and by["flops_per_step"]["error_pct"] == 0
    assert by["trainable_params"]["measured"] < by["params"]["measured"] / 10


@pytest.mark.parametrize("args,needle", [
    (["--finetune", "qlora"], "CUDA GPU only"),
    (["--finetune", "lora", "--lora-targets", "qq"], "has no module 'qq'"),
    (["--finetune", "partial"], "--trainable-layers"),
])
def test_validate_finetune_bad_input(args, needle):
    r = CliRunner().invoke(cli, ["validate", "--scale-to", "3M", "--no-energy", "--device",
                                 "cpu", *args])
    assert r.exit_code == 1 and needle in r.output and "Traceback" not in r.output
