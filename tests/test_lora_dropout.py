"""LoRA dropout (peft's lora_dropout > 0): each adapter saves its own dropped input and a
1-byte mask instead of sharing its Linear's input. Hand-derived values, and the real peft
model's saved tensors (planner validate's probe) against the estimate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from planner.catalog.catalog import load_model
from planner.cli import cli
from planner.estimators.finetune_memory import lora_dropout_mask_elements
from planner.estimators.memory import saved_activation_bytes
from planner.specs.finetune import FinetuneSpec
from planner.specs.training import ParallelismSpec, TrainingSpec

PAR = ParallelismSpec(devices=1, zero_stage=0)


def _saved(model, precision="bf16", **recipe) -> float:
    t = TrainingSpec(tokens=1e6, seq_len=512, global_batch_size=8, micro_batch_size=1,
                     recompute="none", precision=precision, finetune=FinetuneSpec(**recipe))
    return saved_activation_bytes(model, t, PAR)


def test_dropout_on_q_v_by_hand():
    """Llama-3-8B (32 blocks, h 4096), q,v at r8, bf16, 512 tokens. Without dropout both
    adapters' lora_A save the shared norm output x (2h bytes). With it each saves its dropped
    copy (2h) and its dropout a bool mask (h); x is no longer kept: +2 x 3h - 2h = +4h per
    block. The first block's q, v inputs need no gradient (nothing trains before them), so
    their dropouts keep no mask: -2h once."""
    m, h, tokens = load_model("llama3-8b"), 4096, 512
    plain = _saved(m, mode="lora", lora_rank=8, lora_targets="q,v")
    drop = _saved(m, mode="lora", lora_rank=8, lora_targets="q,v", lora_dropout=0.1)
    assert drop - plain == tokens * (32 * 4 * h - 2 * h)
    assert drop - plain == 268_435_456 - 4_194_304


def test_dropout_on_o_down_by_hand():
    """o and down (row-parallel inputs): the attention output stays (fused attention saves
    it) and o adds its copy + mask (3 x a d bytes); down's copy replaces the FFN product it
    kept (0) and adds its mask (f). In the first block nothing before o trains: attention
    saves nothing, so o's copy replaces the attention output (-2 a d) and o keeps no mask
    (-a d). Llama-3-8B: a d = 4096, f = 14336."""
    m, ad, f, tokens = load_model("llama3-8b"), 4096, 14336, 512
    plain = _saved(m, mode="lora", lora_rank=8, lora_targets="o,down")
    drop = _saved(m, mode="lora", lora_rank=8, lora_targets="o,down", lora_dropout=0.05)
    assert drop - plain == tokens * (32 * (3 * ad + f) - 2 * ad - ad)


def test_dropout_rate_does_not_matter_and_zero_is_off():
    m = load_model("qwen3-8b")
    base = dict(mode="lora", lora_rank=16, lora_targets="all-linear")
    assert _saved(m, **base, lora_dropout=0.0) == _saved(m, **base)
    assert _saved(m, **base, lora_dropout=0.05) == _saved(m, **base, lora_dropout=0.5)
    assert _saved(m, **base, lora_dropout=0.05) > _saved(m, **base)


def test_mask_elements_by_hand():
    """Qwen3-8B all-linear: per block q,k,v,gate,up read h = 4096, o reads a d = 4096,
    down f = 12288; the first block's q,k,v keep no mask."""
    m = load_model("qwen3-8b")
    ft = FinetuneSpec(mode="lora", lora_targets="all-linear", lora_dropout=0.1)
    assert lora_dropout_mask_elements(m, ft) == 36 * (6 * 4096 + 12288) - 3 * 4096
    assert lora_dropout_mask_elements(m, ft.model_copy(update={"lora_dropout": 0.0})) == 0


torch = pytest.importorskip("torch")
pytest.importorskip("peft")

REAL = [("llama3-8b", "q,v"), ("llama3-8b", "o,down"), ("qwen3-8b", "all-linear"),
        ("llama3-8b", "k,lm_head")]


@pytest.mark.parametrize("name,targets", REAL, ids=[f"{n}-{t}" for n, t in REAL])
def test_real_peft_dropout_saves_what_the_estimate_says(name, targets):
    """A real peft model (validate's, shrunk, fp32 on this CPU) with lora_dropout 0.1
    against 0: the change in saved bytes the probe measures equals the estimate's change,
    byte for byte, once the CPU's masks are counted at their dtype (torch's CPU dropout
    keeps an fp32 mask, CUDA's native_dropout a bool one; validate corrects the same)."""
    from planner.profiling.shrink import shrink
    from planner.profiling.validate import RunConfig, run_validation

    spec = shrink(load_model(name), 3e6)
    got = {}
    for p in (0.0, 0.1):
        ft = FinetuneSpec(mode="lora", lora_rank=4, lora_targets=targets, lora_dropout=p)
        rep = run_validation(spec, RunConfig(steps=1, warmup=0, micro_batch_size=2,
                                             seq_len=64, finetune=ft))
        got[p] = {q.name: q for q in rep.quantities}["activation_bytes"]
    measured = got[0.1].measured - got[0.0].measured
    t = TrainingSpec(tokens=128, seq_len=64, global_batch_size=2, micro_batch_size=2,
                     recompute="none", precision="fp32", finetune=FinetuneSpec(
                         mode="lora", lora_rank=4, lora_targets=targets, lora_dropout=0.1))
    plain = t.model_copy(update={"finetune": t.finetune.model_copy(update={"lora_dropout": 0})})
    estimated = saved_activation_bytes(spec, t, PAR) - saved_activation_bytes(spec, plain, PAR)
    masks = lora_dropout_mask_elements(spec, t.finetune) * 128
    assert masks > 0
    assert measured == estimated + 3 * masks  # fp32 masks on the CPU where CUDA's are 1 byte
    assert got[0.1].predicted - got[0.1].measured == got[0.0].predicted - got[0.0].measured


def test_cli_lora_dropout(runner):
    args = ["estimate", "--model", "llama3-8b", "--finetune", "lora", "--hardware", "h100-sxm",
            "--devices", "1", "--micro-batch", "1", "--recompute", "none", "--format", "json"]
    plain = json.loads(runner.invoke(cli, args).stdout)
    drop = json.loads(runner.invoke(cli, [*args, "--lora-dropout", "0.1"]).stdout)
    key = "activations_bytes"
    assert drop["memory_per_device"][key] > plain["memory_per_device"][key]
    names = {a["name"] for a in drop["assumptions"]}
    assert "finetune.lora_dropout" not in names  # given, so not a default
    assert "finetune.lora_dropout" in {a["name"] for a in plain["assumptions"]}


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_cli_bad_lora_dropout_is_one_line(value):
    r = CliRunner().invoke(cli, ["estimate", "--model", "llama3-8b", "--finetune", "lora",
                                 "--lora-dropout", value])
    assert r.exit_code == 2 and "--lora-dropout" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
