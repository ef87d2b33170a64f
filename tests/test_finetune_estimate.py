"""Fine-tuning memory, FLOPs and the commands (estimate/plan --finetune), against hand-derived
values, bitsandbytes' NF4 layout and the QLoRA paper's published claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import planner
from planner.catalog.catalog import load_model
from planner.cli import cli
from planner.estimators.finetune import trainable_params
from planner.estimators.finetune_memory import nf4_bytes
from planner.estimators.flops import attention_forward_flops_per_token, training_flops
from planner.estimators.memory import memory_per_device, saved_activation_bytes
from planner.estimators.params import count_params
from planner.specs.finetune import FinetuneSpec
from planner.specs.training import ParallelismSpec, TrainingSpec

GIB = 2**30
DATA = Path(planner.__file__).parent / "data" / "validation" / "finetune.yaml"


def _train(ft: FinetuneSpec | None, **kw) -> TrainingSpec:
    base = dict(tokens=1e6, seq_len=512, global_batch_size=8, micro_batch_size=1,
                recompute="none", finetune=ft)
    return TrainingSpec(**{**base, **kw})


def test_nf4_bytes_follow_the_bitsandbytes_layout():
    n = 4096 * 4096  # one Llama q_proj
    blocks = n // 64
    # 4-bit codes + uint8 absmax per 64 + fp32 absmax per 256 blocks + code tables/offset
    assert nf4_bytes(n) == n // 2 + blocks + 4 * (blocks // 256) + 16 * 4 + 256 * 4 + 4
    assert nf4_bytes(n) / n == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256), rel=2e-4)
    # QLoRA §3 "Double Quantization": 32/64 = 0.5 bits of constants per parameter without it
    assert (nf4_bytes(n, double_quant=False) - n / 2) * 8 / n == pytest.approx(0.5, rel=1e-3)


def test_lora_memory_by_hand():
    m = load_model("llama3-8b")
    ft = FinetuneSpec(mode="lora", lora_rank=16, lora_targets="all-linear")
    mem = memory_per_device(m, _train(ft), ParallelismSpec(devices=1, zero_stage=0), 80 * GIB)
    t = trainable_params(m, ft)
    assert mem.weights_bytes == pytest.approx(2 * t.base + 4 * t.adapters)  # bf16 + fp32 LoRA
    assert mem.gradients_bytes == pytest.approx(4 * t.adapters)
    assert mem.optimizer_bytes == pytest.approx(8 * t.adapters)


def test_frozen_linears_save_less_and_partial_saves_only_its_blocks():
    m = load_model("llama3-8b")
    par = ParallelismSpec(devices=1, zero_stage=0)
    full = saved_activation_bytes(m, _train(None), par)
    qv = saved_activation_bytes(m, _train(FinetuneSpec(mode="lora", lora_rank=8)), par)
    # q,v targeted: the FFN norm output (h) and the down_proj input (f) are not saved; each
    # block gains two r-wide adapter outputs; 32 layers x 512 tokens x 2 bytes. At the ends:
    # the frozen head keeps no copy of the final norm's output (h), and the first block's norm
    # does not save the embedding output (h): nothing before it needs a gradient.
    per_token = -(4096 + 14336) + 2 * 8
    assert qv - full == pytest.approx(32 * 512 * 2 * per_token - 2 * 4096 * 512 * 2)
    part = saved_activation_bytes(m, _train(FinetuneSpec(mode="partial", trainable_layers=8)),
                                  par)
    loss_and_final = full - 32 * (full - part) / 24  # solve: blocks scale by 8/32
    assert part < full and loss_and_final > 0


def test_lora_and_partial_flops_by_hand():
    m = load_model("llama3-8b")
    p = count_params(m)
    attn = attention_forward_flops_per_token(m, 512, "full")
    ft = FinetuneSpec(mode="lora", lora_rank=16, lora_targets="all-linear")
    adapters = trainable_params(m, ft).adapters
    fl = training_flops(m, _train(ft))
    # block 0's q, k, v (and their adapters' A) take no input gradient: their input is the
    # frozen embedding's output; fused attention still computes dQ, dK, dV
    skipped = 2 * (4096 * 4096 + 2 * 4096 * 1024) + 3 * 2 * 16 * 4096
    assert fl.model_per_token == pytest.approx(4 * p.matmul_active + 6 * adapters + 3 * attn
                                               - skipped)
    part = training_flops(m, _train(FinetuneSpec(mode="partial", trainable_layers=8)))
    head = p.vocab_times_width
    assert part.model_per_token == pytest.approx(
        2 * p.matmul_active + attn + 0.25 * (4 * p.layers_matmul_active + 2 * attn) + 2 * head)
    assert training_flops(m, _train(FinetuneSpec(mode="full"))).model_per_token == \
        training_flops(m, _train(None)).model_per_token


ROWS = yaml.safe_load(DATA.read_text())["qlora_2023"]["rows"]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}-{r['finetune']}" for r in ROWS])
def test_qlora_paper_claims(row):
    opts = dict(lora_rank=64, lora_targets="all-linear") if row["finetune"] == "qlora" else {}
    est = planner.estimate(model=row["model"], hardware=row["hardware"], devices=1,
                           tokens="10M", finetune=row["finetune"], seq_len=row["seq_len"],
                           micro_batch_size=row["micro_batch"], global_batch_size=16,
                           recompute="full", tp=1, pp=1, cp=1, zero_stage=0, **opts)
    mem = est.memory_per_device
    if row["claim"] == "fits":
        assert mem.fits, f"{mem.total_bytes / GIB:.1f} GiB of {mem.capacity_bytes / GIB:.0f}"
    else:
        assert mem.total_bytes > row["gb"] * 1e9


def _run(args, code=0):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == code, r.output
    return r.output


BASE = ["estimate", "--model", "llama3-8b", "--hardware", "rtx-4090", "--devices", "1",
        "--tokens", "200M", "--epochs", "3"]


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "csv"])
def test_estimate_lora_shows_trainable_and_frozen(fmt):
    out = _run([*BASE, "--finetune", "lora", "--lora-rank", "16", "--lora-targets",
                "q,k,v,o,gate,up,down", "--format", fmt])
    if fmt == "json":
        d = json.loads(out)
        assert d["model"]["params_trainable"] == 41_943_040
        assert d["model"]["params_frozen"] == 8_030_261_248
        assert d["tokens"] == 600e6
    elif fmt == "table":
        assert "Fine-tune   lora r16 on q_proj,k_proj" in out and "41.9M trainable" in out
    elif fmt == "markdown":
        assert "**Fine-tune**: lora r16" in out and "41.9M trainable" in out
    else:
        assert "model.params_trainable" in out.splitlines()[0] and "41943040" in out


def test_samples_times_seq_len_times_epochs():
    d = json.loads(_run([*BASE[:-4], "--finetune", "lora", "--samples", "10K", "--seq-len",
                         "2048", "--epochs", "2", "--format", "json"]))
    assert d["tokens"] == 10_000 * 2048 * 2


def test_plan_full_finetune_min_devices():
    out = _run(["plan", "--model", "llama3-70b", "--finetune", "full", "--hardware",
                "h100-sxm", "--tokens", "2B", "--min-devices", "--format", "json"])
    best = json.loads(out)["best"]
    assert best["model"]["params_frozen"] == 0
    assert best["memory_per_device"]["fits"] and best["layout"]["devices"] > 1


@pytest.mark.parametrize("args,needle", [
    (["--finetune", "lora", "--lora-targets", "qproj"], "no module 'qproj' (did you mean q_proj?)"),
    (["--finetune", "lora", "--lora-rank", "0"], "'--lora-rank': 0 is not in the range"),
    (["--lora-rank", "8"], "--lora-rank needs --finetune"),
    (["--finetune", "partial"], "--finetune partial needs --trainable-layers"),
    (["--finetune", "qlora", "--hardware", "tpu-v5p"], "no bitsandbytes NF4 kernels"),
    (["--finetune", "qlora", "--precision", "fp32"], "computes in bf16 or fp16"),
])
def test_finetune_bad_input_is_one_line(args, needle):
    r = CliRunner().invoke(cli, ["estimate", "--model", "llama3-8b", *args])
    assert r.exit_code in (1, 2) and needle in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("recipe", [["--finetune", "lora", "--lora-targets", "all-linear"],
                                    ["--finetune", "partial", "--trainable-layers", "4"]])
def test_one_answer_estimate_and_plan_devices(recipe):
    """A fine-tune asked by estimate and by plan --devices N gets the same layout and days."""
    job = ["--model", "llama3-8b", "--hardware", "l40s", "--tokens", "100M", *recipe]
    est = json.loads(_run(["estimate", *job, "--devices", "4", "--format", "json"]))
    best = json.loads(_run(["plan", *job, "--devices", "4", "--format", "json"]))["best"]
    assert est["layout"] == best["layout"]
    for k in ("wall_clock_days", "cost_usd", "kg_co2e"):
        assert est["range"]["expected"][k] == pytest.approx(best["range"]["expected"][k],
                                                            rel=1e-9)
    assert est["model"]["params_trainable"] == best["model"]["params_trainable"]


def test_partial_and_lora_cost_less_than_full():
    def mem_time(recipe):
        d = json.loads(_run(["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm",
                             "--devices", "1", "--tokens", "10M", "--tp", "1", "--pp", "1",
                             "--cp", "1", "--zero", "0", "--micro-batch", "1", "--recompute",
                             "full", "--no-fit-check", *recipe, "--format", "json"]))
        return d["memory_per_device"]["total_bytes"], d["flops"]["hardware_total"]
    full, lora = mem_time(["--finetune", "full"]), mem_time(["--finetune", "lora"])
    part = mem_time(["--finetune", "partial", "--trainable-layers", "8"])
    assert lora[0] < part[0] < full[0] and lora[1] < full[1] and part[1] < full[1]
