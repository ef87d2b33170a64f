"""Fine-tuning through compare, run (a scenario's `finetune:` block) and budget: the recipe
reaches each, is shown, and bad input gets one line naming the key or flag."""

import json

import pytest

from planner.cli import cli

HEAD = ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\n"
        "hardware: [{hardware: h100-sxm}]\nconstraints: {devices: 8}\n")


def _scenario(tmp_path, body: str):
    path = tmp_path / "ft.yaml"
    path.write_text(HEAD + body)
    return path


def _run(runner, path, *args):
    return runner.invoke(cli, ["run", str(path), *args])


def test_scenario_samples_and_epochs_are_the_flags(runner, tmp_path):
    """data: {samples, epochs} is --samples/--epochs: 10,000 x 2048 tokens x 2 epochs."""
    path = _scenario(tmp_path, "data: {samples: 10K, epochs: 2}\ntraining: {seq_len: 2048}\n"
                     "finetune: {mode: full}\n")
    result = _run(runner, path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["plans"][0]
    assert plan["tokens"] == 10_000 * 2048 * 2
    est = runner.invoke(cli, ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm",
                              "--devices", "8", "--finetune", "full", "--samples", "10K",
                              "--epochs", "2", "--seq-len", "2048", "--format", "json"])
    assert json.loads(est.stdout)["range"] == plan["range"]
    assert plan["model"]["finetune"] == "full"


def test_scenario_qlora_defaults_are_listed(runner, tmp_path):
    """A scenario's fine-tune fills the same defaults as --finetune: seq 1024, 16 sequences
    per step, the paged 8-bit AdamW, each under Assumptions."""
    path = _scenario(tmp_path, "data: {tokens: 10M}\nfinetune: {mode: qlora, lora_rank: 8}\n")
    plan = json.loads(_run(runner, path, "--format", "json").stdout)["plans"][0]
    notes = {a["name"]: a for a in plan["assumptions"]}
    assert notes["seq_len"]["value"] == 1024 and notes["seq_len"]["defaulted"]
    assert notes["global_batch_size"]["value"] == 16
    assert notes["optimizer"]["value"].startswith("adamw_8bit")
    # Llama-3-8B q,v at r8: 8 x 32 x [(4096 + 4096) + (4096 + 1024)] = 3,407,872 (peft)
    assert plan["model"]["params_trainable"] == 3_407_872
    assert plan["memory_per_device"]["dequant_workspace_bytes"] > 0


def test_scenario_table_says_what_trains(runner, tmp_path):
    path = _scenario(tmp_path, "data: {tokens: 10M}\nfinetune: {mode: lora, lora_targets: "
                     "[q, v]}\n")
    out = _run(runner, path).stdout
    assert "Fine-tune lora r16 on q_proj,v_proj: 6.82M trainable, 8.03B frozen" in out
    assert "fine-tuning llama3-8b (lora r16 on q_proj,v_proj" in out


BAD = [
    ("data: {tokens: 1M}\nfinetune: {mode: lora, lora_targets: [qproj]}\n",
     "line 8: finetune: lora_targets: llama3-8b has no module 'qproj' (did you mean q_proj?)"),
    ("data: {tokens: 1M}\nfinetune: {mode: partial}\n", "trainable_layers"),
    ("data: {tokens: 1M}\nfinetune: {mode: lora, lora_rank: 0}\n", "lora_rank"),
    ("data: {tokens: 1M}\nfinetune: {mode: dora}\n", "line 8"),
    ("data: {tokens: 1M, samples: 5K}\nfinetune: {mode: full}\n", "exactly one of tokens"),
    ("data: {samples: 5K, epochs: 0}\nfinetune: {mode: full}\n", "epochs"),
]


@pytest.mark.parametrize("body,needle", BAD, ids=["target", "partial", "rank0", "mode",
                                                  "tokens+samples", "epochs0"])
def test_bad_finetune_block_is_one_line(runner, tmp_path, body, needle):
    path = _scenario(tmp_path, body)
    result = _run(runner, path)
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert str(path) in err and needle in err, err


def test_qlora_scenario_on_a_tpu_names_the_candidate(runner, tmp_path):
    path = tmp_path / "tpu.yaml"
    path.write_text(HEAD.replace("h100-sxm", "tpu-v5p") + "data: {tokens: 1M}\n"
                    "finetune: {mode: qlora}\n")
    result = _run(runner, path)
    err = result.stderr.strip()
    assert result.exit_code == 1 and len(err.splitlines()) == 1, err
    assert "hardware[0] (tpu-v5p)" in err and "NF4" in err, err


def test_compare_table_says_what_trains(runner):
    result = runner.invoke(cli, ["compare", "--model", "llama3-8b", "--finetune", "lora",
                                 "--lora-rank", "8", "--hardware", "h100-sxm,a100-80gb",
                                 "--devices", "8", "--tokens", "100M", "--format", "markdown"])
    assert result.exit_code == 0, result.stderr
    assert "Fine-tune lora r8 on q_proj,v_proj: 3.41M trainable, 8.03B frozen" in result.stdout
    # a fine-tune of minutes is not rounded to '0.0' days: two significant figures
    lines = result.stdout.splitlines()
    header = [c.strip() for c in next(r for r in lines if r.startswith("| hardware")).split("|")]
    rows = [r.split("|") for r in lines if r.startswith("| h100-sxm")]
    days = rows[0][header.index("days")].split()[0]
    assert days != "0.0" and 0 < float(days) < 0.1 and len(days.rstrip("0").lstrip("0.")) <= 2


def test_compare_qlora_skips_hardware_without_nf4(runner):
    """QLoRA on a TPU and a GPU: the TPU is left out with its one-line reason."""
    result = runner.invoke(cli, ["compare", "--model", "llama3-8b", "--finetune", "qlora",
                                 "--hardware", "h100-sxm,tpu-v5p", "--devices", "1",
                                 "--tokens", "10M", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| h100-sxm" in result.stdout and "| tpu-v5p" not in result.stdout
    assert result.stderr.strip() == (
        "warning: no plan on tpu-v5p: --finetune qlora: tpu-v5p (Google) has no bitsandbytes "
        "NF4 kernels; QLoRA runs on NVIDIA, AMD, Intel devices (or use --finetune lora)")


def test_budget_finetune_needs_a_model(runner):
    result = runner.invoke(cli, ["budget", "--usd", "100", "--finetune", "lora"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --finetune prices a fine-tune of a model: give "
                                     "--model too")


def test_budget_finetune_under_a_day_in_hours(runner):
    result = runner.invoke(cli, ["budget", "--usd", "10", "--model", "qwen3-8b", "--finetune",
                                 "lora", "--hardware", "h100-sxm", "--devices", "8"])
    assert result.exit_code == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("$10.00 buys ") and "tokens of qwen3-8b on 8 x h100-sxm" in first
    assert first.endswith(("minutes", "hours")), first


def test_dora_counts_and_says_what_is_not_modelled(runner):
    r = runner.invoke(cli, ["estimate", "--model", "llama3-8b", "--finetune", "lora", "--dora",
                            "--hardware", "h100-sxm", "--devices", "1", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    est = json.loads(r.stdout)
    assert est["model"]["params_trainable"] == 6_815_744 + 163_840  # + 32 x (4096 + 1024)
    assert "DoRA" in est["model"]["finetune"] and "not modelled" in est["model"]["finetune"]
    note = {a["name"]: a for a in est["assumptions"]}["finetune.use_dora"]
    assert "NOT modelled" in note["source"] and "lower bounds" in note["source"]


@pytest.mark.parametrize("args,needle", [
    (["--dora"], "--dora needs --finetune"),
    (["--finetune", "full", "--dora"], "use_dora (--dora) needs mode lora or qlora (mode is "
                                       "full)"),
])
def test_dora_bad_input_is_one_line(runner, args, needle):
    r = runner.invoke(cli, ["estimate", "--model", "llama3-8b", *args])
    assert r.exit_code == 1 and needle in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,label,adapter,per_trainable", [
    # peft's autocast_adapter_dtype keeps LoRA adapters in fp32; qlora.py casts them to bf16
    (["--finetune", "lora"], "fp32 adapter gradients", "fp32", 4),
    (["--finetune", "qlora"], "bf16 adapter gradients", "bf16", 2),
])
def test_lora_says_its_adapters_gradient_dtype(runner, args, label, adapter, per_trainable):
    # the label is the bytes charged: every trainable parameter is an adapter's, held in the
    # adapters' dtype (ZeRO-0 on one device), whatever the base's convention (bf16 here)
    base = ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm", "--devices", "1",
            "--tokens", "100M", *args]
    text = runner.invoke(cli, base)
    assert text.exit_code == 0, text.stderr
    assert f"{label}," in text.stdout and " bf16 gradients" not in text.stdout
    est = json.loads(runner.invoke(cli, [*base, "--format", "json"]).stdout)
    lay = est["layout"]
    assert (lay["adapter_grad_dtype"], lay["base_grads"], lay["grad_dtype"]) == \
        (adapter, False, "bf16")
    assert est["memory_per_device"]["gradients_bytes"] == \
        per_trainable * est["model"]["params_trainable"]


def test_lora_with_trained_biases_names_both_gradient_dtypes(runner):
    # --lora-bias all trains the model's biases: they follow --grad-dtype, the adapters not
    base = ["estimate", "--model", "qwen2-7b", "--hardware", "h100-sxm", "--devices", "1",
            "--tokens", "100M", "--finetune", "lora", "--lora-bias", "all"]
    out = runner.invoke(cli, base).stdout
    assert "fp32 adapter and bf16 base-weight gradients," in out
    out = runner.invoke(cli, [*base, "--grad-dtype", "fp32"]).stdout
    assert "fp32 adapter and base-weight gradients," in out
    est = json.loads(runner.invoke(cli, [*base, "--format", "json"]).stdout)
    assert est["layout"]["base_grads"] is True
    assert est["model"]["finetune"] is not None and est["layout"]["adapter_grad_dtype"] == "fp32"


def test_grad_dtype_that_moves_nothing_is_warned(runner):
    # LoRA without trained biases has no base-weight gradients for --grad-dtype to set
    base = ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm", "--devices", "1",
            "--tokens", "100M", "--finetune", "lora"]
    plain = json.loads(runner.invoke(cli, [*base, "--format", "json"]).stdout)
    given = json.loads(runner.invoke(cli, [*base, "--grad-dtype", "fp32", "--format",
                                           "json"]).stdout)
    assert any(w.startswith("--grad-dtype fp32 moves nothing: lora trains none of the "
                            "model's weights") for w in given["warnings"]), given["warnings"]
    assert given["memory_per_device"] == plain["memory_per_device"]
    assert "warning: --grad-dtype fp32 moves nothing" in runner.invoke(
        cli, [*base, "--grad-dtype", "fp32"]).stdout
    full = runner.invoke(cli, ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm",
                               "--devices", "8", "--tokens", "100M", "--finetune", "full",
                               "--grad-dtype", "fp32"])
    assert "moves nothing" not in full.stderr


def test_scenario_finetune_and_data_errors_name_their_keys(runner, tmp_path):
    # resolve words these with the flags (--trainable-layers, --finetune, --epochs); in a
    # scenario they are the finetune and data keys, on their lines
    path = _scenario(tmp_path, "data: {tokens: 1B}\nfinetune: {mode: partial, "
                     "trainable_layers: 100}\n")
    err = _run(runner, path).stderr.strip()
    assert "line 8:" in err and "finetune.trainable_layers 100: llama3-8b has 32 layers; " \
        "give 0 to 32 (finetune.mode full trains them all)" in err, err
    assert "--" not in err and len(err.splitlines()) == 1
