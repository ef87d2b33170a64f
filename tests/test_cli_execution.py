"""CLI flags for the execution choices: --dp-shard, --[no-]reshard-after-forward,
--[no-]tp-comm-overlap, --[no-]dp-comm-overlap, --framework, --offload, --[no-]dropout (estimate, plan, compare)."""

import json

import pytest

from planner.cli import cli

GIB = 2**30
LAYOUT = ["-m", "llama3-8b", "--devices", "64", "--tp", "1", "--pp", "1", "--cp", "1",
          "--zero", "3", "--micro-batch", "1", "--recompute", "full", "--seq-len", "4096"]


def _estimate(runner, *flags, fmt="json"):
    r = runner.invoke(cli, ["estimate", *LAYOUT, *flags, "--format", fmt])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout) if fmt == "json" else r.stdout


def test_estimate_shows_and_applies_the_choices(runner):
    base = _estimate(runner)
    assert base["layout"]["framework"] == "generic" and base["layout"]["dp_shard"] == 64
    defaulted = {a["name"]: a["value"] for a in base["assumptions"] if a["defaulted"]}
    for name in ("framework", "offload", "dropout", "dp_shard", "tp_comm_overlap",
                 "dp_comm_overlap"):
        assert name in defaulted, name
    d = _estimate(runner, "--dp-shard", "8", "--framework", "fsdp2",
                  "--no-reshard-after-forward", "--tp-comm-overlap", "--offload", "optimizer",
                  "--dropout", "--no-dp-comm-overlap")
    lay = d["layout"]
    assert lay["dp_comm_overlap"] is False
    assert (lay["dp_shard"], lay["framework"], lay["reshard_after_forward"],
            lay["tp_comm_overlap"], lay["offload"], lay["dropout"]) == \
        (8, "fsdp2", False, True, "optimizer", True)
    mem = d["memory_per_device"]
    assert mem["optimizer_bytes"] == 0 and mem["gradients_bytes"] == 0
    # fsdp2 keeps fp32 sharded parameters, here over a shard group of 8: 4 B x 8.03e9 / 8
    assert mem["weights_bytes"] == pytest.approx(4 * 8.03e9 / 8, rel=0.001)
    given = {a["name"] for a in d["assumptions"] if a["defaulted"]}
    assert not given & {"framework", "offload", "dropout", "dp_shard", "dp_comm_overlap"}


def test_grad_dtype_flag_sets_gradients_and_their_reduction(runner):
    # --grad-dtype fp32 (DeepSpeed grad_accum_dtype fp32, generic convention): ZeRO-3 shards
    # 4 B gradients over 64 ranks, and the reduce-scatter moves twice the bf16 bytes.
    bf16, fp32 = _estimate(runner), _estimate(runner, "--grad-dtype", "fp32")
    assert (bf16["layout"]["grad_dtype"], fp32["layout"]["grad_dtype"]) == ("bf16", "fp32")
    assert fp32["memory_per_device"]["gradients_bytes"] == pytest.approx(4 * 8.03e9 / 64,
                                                                         rel=0.001)
    assert bf16["memory_per_device"]["gradients_bytes"] == pytest.approx(2 * 8.03e9 / 64,
                                                                         rel=0.001)
    assert fp32["step"]["step_time_s"] > bf16["step"]["step_time_s"]
    assert "bf16 gradients" in _estimate(runner, fmt="table")
    # fsdp2 reduces in fp32 by default; saying so changes nothing but the assumptions list
    fs = _estimate(runner, "--framework", "fsdp2")
    fs32 = _estimate(runner, "--framework", "fsdp2", "--grad-dtype", "fp32")
    assert fs["layout"] == fs32["layout"] and fs["step"] == fs32["step"]
    assert [a["value"] for a in fs["assumptions"] if a["name"] == "grad_dtype"] == ["fp32"]


def test_attention_kernel_flag_slows_hopper_attention_only(runner):
    # --attention-kernel fa2: FlashAttention-2 on an H100 at 0.57 of the native kernel
    # (hardware_profiles/h100-sxm.yaml); on an A100 it is the native kernel.
    h100 = ["-H", "h100-sxm", "--seq-len", "8192"]
    native, fa2 = _estimate(runner, *h100), _estimate(runner, *h100, "--attention-kernel", "fa2")
    assert (native["layout"]["attention_kernel"], fa2["layout"]["attention_kernel"]) == \
        ("native", "fa2")
    assert fa2["step"]["compute_s"] > native["step"]["compute_s"]
    assert fa2["memory_per_device"] == native["memory_per_device"]
    a100 = ["-H", "a100-80gb"]
    assert _estimate(runner, *a100)["step"] == \
        _estimate(runner, *a100, "--attention-kernel", "fa2")["step"]
    listed = [a for a in native["assumptions"] if a["name"] == "attention_kernel"]
    assert len(listed) == 1 and listed[0]["value"] == "native" and "cuDNN" in listed[0]["source"]
    assert not [a for a in fa2["assumptions"] if a["name"] == "attention_kernel"]
    assert "fa2 attention kernel" in _estimate(runner, *h100, "--attention-kernel", "fa2",
                                               fmt="table")


def test_measure_refuses_an_attention_kernel_the_hardware_has_no_figure_for(runner, tmp_path):
    marker = tmp_path / "ran"
    r = runner.invoke(cli, ["measure", "--hardware", "tpu-v5p", "--attention-kernel", "fa2",
                            "--steps", "10", "--", "touch", str(marker)])
    assert r.exit_code != 0 and not marker.exists()
    assert "tpu-v5p has no fa2_attention_fraction figure" in r.stderr


@pytest.mark.parametrize("model_flags", [["--model", "llama3-8b", "--hardware", "h100-sxm"],
                                         []])
def test_measure_refuses_a_bad_grad_dtype_before_the_command(runner, tmp_path, model_flags):
    # with or without --model/--hardware: the dtype check needs neither
    marker = tmp_path / "ran"
    r = runner.invoke(cli, ["measure", *model_flags, "--steps", "10", "--grad-dtype", "fp16",
                            "--", "touch", str(marker)])
    assert r.exit_code != 0 and not marker.exists()
    assert "--grad-dtype fp16 with --precision bf16" in r.stderr and "Traceback" not in r.stderr


def test_api_reports_a_bad_name_before_the_dtype_rule():
    # a misspelt precision or dtype is reported as such, not as "valid: fp32 or int8"
    import planner
    from planner.errors import SpecError
    for kwargs, needle in (({"precision": "int8", "grad_dtype": "bf16"}, "precision"),
                           ({"grad_dtype": "fp64"}, "grad_dtype")):
        with pytest.raises(SpecError) as e:
            planner.estimate("llama3-8b", "h100-sxm", tokens=1e9, devices=8, **kwargs)
        assert needle in str(e.value) and "or int8" not in str(e.value), str(e.value)


def test_estimate_text_and_markdown_show_the_execution_line(runner):
    text = _estimate(runner, "--dp-shard", "8", "--framework", "megatron", fmt="table")
    assert "ZeRO-3 (HSDP: shard 8 x 8 replicas)" in text
    assert "framework megatron, TP comm overlap off, DP comm overlap on, offload none" in text
    md = _estimate(runner, "--offload", "optimizer_params", fmt="markdown")
    assert "offload optimizer_params, dropout off" in md


@pytest.mark.parametrize("cmd", ["plan", "compare"])
def test_plan_and_compare_take_the_flags(runner, cmd):
    args = [cmd, "-m", "llama3-8b", "--devices", "64", "--seq-len", "4096",
            "--framework", "megatron", "--dropout", "--no-tp-comm-overlap",
            "--reshard-after-forward", "--offload", "none", "--format", "json"]
    if cmd == "compare":
        args[args.index("-m"):args.index("-m")] = ["--hardware", "h100-sxm"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)


@pytest.mark.parametrize("flags,expected", [
    (["--framework", "megatronn"], "Invalid value for '--framework': 'megatronn' is not one of"),
    (["--offload", "gpu"], "Invalid value for '--offload': 'gpu' is not one of"),
    (["--dp-shard", "0"], "Invalid value for '--dp-shard'"),
    (["--dp-shard", "3"], "--dp-shard 3 must divide dp = 64; valid --dp-shard: 1, 2, 4, 8"),
    (["--grad-dtype", "fp16"], "--grad-dtype fp16 with --precision bf16: gradients accumulate "
                               "in fp32 or in the compute dtype; valid --grad-dtype: fp32 or bf16"),
    (["--grad-dtype", "bf16", "--precision", "fp32"], "valid --grad-dtype: fp32 ("),
    (["--grad-dtype", "bf16", "--framework", "fsdp2"],
     "--grad-dtype bf16 with --framework fsdp2: FSDP2 as torchtitan runs it keeps fp32 "
     "gradients for --optimizer adamw at --precision bf16"),
    (["--grad-dtype", "fp64"], "Invalid value for '--grad-dtype': 'fp64' is not one of"),
    (["--attention-kernel", "fa2", "--no-flash-attention"],
     "--attention-kernel fa2 names a fused attention kernel: drop --no-flash-attention"),
    (["--attention-kernel", "fa2", "-H", "b200"], "--attention-kernel fa2: b200 has no "
     "fa2_attention_fraction figure"),
    (["--attention-kernel", "fa3"], "Invalid value for '--attention-kernel': 'fa3' is not one of"),
])
def test_bad_values_are_one_clear_line(runner, flags, expected):
    r = runner.invoke(cli, ["estimate", *LAYOUT, *flags])
    assert r.exit_code != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("flags,expected", [
    (["-n", "12", "--tp", "8"], "--devices 12 is not divisible by --tp x --pp x --cp = "
                                "8 x 1 x 1 = 8; use a multiple of 8"),
    (["-n", "16", "--tp", "1", "--pp", "1", "--cp", "1", "--ep", "3", "-m", "mixtral-8x7b"],
     "--ep 3 must divide dp = 16"),
    (["-n", "16", "--pp", "2", "--virtual-stages", "2", "--pipeline-schedule", "1f1b"],
     "--virtual-stages 2 needs --pipeline-schedule interleaved"),
])
def test_layout_errors_name_the_flags(runner, flags, expected):
    r = runner.invoke(cli, ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "--tokens", "1B",
                            *flags])
    assert r.exit_code != 0 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], r.stderr


def test_partial_finetune_gradients_follow_the_framework(runner):
    # A partial fine-tune under --framework megatron holds its trainable layers' gradients in
    # fp32 main_grad, as a full run does: the default and --grad-dtype fp32 agree, at twice
    # the generic convention's bf16 bytes.
    base = ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "8", "--tp", "1", "--pp",
            "1", "--zero", "1", "--micro-batch", "1", "--recompute", "none", "--finetune",
            "partial", "--trainable-layers", "4", "--samples", "10000", "--format", "json"]
    meg = json.loads(runner.invoke(cli, [*base, "--framework", "megatron"]).stdout)
    meg32 = json.loads(runner.invoke(cli, [*base, "--framework", "megatron", "--grad-dtype",
                                           "fp32"]).stdout)
    gen = json.loads(runner.invoke(cli, base).stdout)
    assert meg["memory_per_device"]["gradients_bytes"] == \
        meg32["memory_per_device"]["gradients_bytes"]
    assert meg["memory_per_device"]["gradients_bytes"] == pytest.approx(
        2 * gen["memory_per_device"]["gradients_bytes"])


def _zero(stage):
    """LAYOUT at another ZeRO stage."""
    at = LAYOUT.index("--zero") + 1
    return [*LAYOUT[:at], str(stage), *LAYOUT[at + 1:]]


def test_zero1_and_2_shard_groups_are_named_for_what_they_shard(runner):
    """A shard group below dp shards what the stage shards (model_state_bytes): under ZeRO-1
    the optimizer state over dp_shard ranks, replicated across dp / dp_shard, the weights
    whole on every rank (a partial distributed optimizer, not HSDP, whose weights shard too).
    By hand, llama3-8b on dp 64, --dp-shard 8: optimizer bytes 8x those of sharding over all
    64 ranks, weights and gradients the same."""
    layout = _zero(1)
    args = ["estimate", *layout, "--dp-shard", "8"]
    text = runner.invoke(cli, args).stdout
    lay = next(x for x in text.splitlines() if x.startswith("Layout"))
    assert "ZeRO-1 (optimizer sharded over 8, 8 replicas)" in lay and "HSDP" not in lay
    mem = json.loads(runner.invoke(cli, args + ["--format", "json"]).stdout)[
        "memory_per_device"]
    whole = json.loads(runner.invoke(cli, ["estimate", *layout, "--format", "json"]).stdout)[
        "memory_per_device"]
    assert mem["optimizer_bytes"] == pytest.approx(8 * whole["optimizer_bytes"])
    assert (mem["weights_bytes"], mem["gradients_bytes"]) == pytest.approx(
        (whole["weights_bytes"], whole["gradients_bytes"]))
    text = runner.invoke(cli, ["estimate", *_zero(2), "--dp-shard", "8"]).stdout
    assert "ZeRO-2 (optimizer + gradients sharded over 8, 8 replicas)" in text


def test_shard_group_labels():
    from planner.planning.no_fit import describe_layout
    from planner.vocab import shard_group
    assert shard_group(3, 64, 8) == "HSDP: shard 8 x 8 replicas"
    assert shard_group(1, 64, 8) == "optimizer sharded over 8, 8 replicas"
    # the group spans dp_shard x cp ranks (model_state_bytes: shards = dp_shard x cp)
    assert shard_group(2, 32, 4, cp=2) == \
        "optimizer + gradients sharded over 4 x cp 2, 8 replicas"
    assert shard_group(1, 64, 64) == ""  # all of dp: no group to name
    assert shard_group(0, 64, 8) == ""  # ZeRO-0 shards nothing
    row = dict(tp=8, pp=4, cp=1, ep=1, dp=64, zero_stage=1, micro_batch_size=1,
               recompute="selective", dp_shard=8, reshard_after_forward=0, virtual_stages=1)
    text = describe_layout(row)
    assert "optimizer sharded over 8, 8 replicas" in text and "HSDP" not in text
    assert "kept" not in text  # reshard-after-forward is ZeRO-3's


def test_plan_table_shows_reshard_for_zero3_only(runner):
    """reshard-after-forward re-gathers ZeRO-3's sharded weights; ZeRO 0-2 rows print '-'."""
    def reshard_cells(zero):
        out = runner.invoke(cli, ["plan", "-m", "llama3-8b", "--devices", "64", "--zero", zero,
                                  "--top", "3"]).stdout
        lines = out.split("Top layouts")[-1].split("Rejected")[0].strip().splitlines()
        at = lines[0].split().index("reshard")
        return {ln.split()[at] for ln in lines[2:] if ln.strip()}
    assert reshard_cells("1") == {"-"}
    assert reshard_cells("3") <= {"on", "off"}
