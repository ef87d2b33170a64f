"""Packing on or off (--packing, --avg-sample-tokens; a scenario's data block): padded tokens
are processed tokens, so they cost FLOPs, time, money and energy; hand-derived."""

from __future__ import annotations

import json

import pytest

from planner.cli import cli

JOB = ["--model", "qwen3-8b", "--finetune", "lora", "--hardware", "h100-sxm", "--devices", "1",
       "--seq-len", "1024"]
KEYS = ("wall_clock_days", "device_hours", "cost_usd", "energy_kwh", "kg_co2e")


def _est(runner, *args) -> dict:
    r = runner.invoke(cli, ["estimate", *JOB, *args, "--format", "json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _notes(est) -> dict:
    return {a["name"]: a for a in est["assumptions"]}


def test_padding_costs_by_hand(runner):
    """10,000 samples of 256 tokens on average in rows of 1024: packed, 2,560,000 tokens;
    padded to 1024 each, 10,240,000 (75% padding): four times the FLOPs, hours, dollars,
    kWh and CO2e on the same layout, and the same memory per device (rows of 1024 either
    way)."""
    on = _est(runner, "--samples", "10K", "--avg-sample-tokens", "256")
    off = _est(runner, "--samples", "10K", "--avg-sample-tokens", "256", "--packing", "off")
    assert on["tokens"] == 10_000 * 256 == 2_560_000
    assert off["tokens"] == 10_000 * 1024 == 10_240_000
    assert off["layout"] == on["layout"]
    assert off["memory_per_device"] == on["memory_per_device"]
    assert off["flops"]["total"] == pytest.approx(4 * on["flops"]["total"], rel=1e-12)
    for k in KEYS:
        assert off["range"]["expected"][k] == pytest.approx(4 * on["range"]["expected"][k],
                                                            rel=1e-9), k
    note = _notes(off)["packing"]
    assert note["value"] == "off" and not note["defaulted"]
    assert "10,000 samples x 1024 = 10,240,000 tokens per epoch for 2,560,000 useful (75% " \
           "padding)" in note["source"]
    assert _notes(on)["packing"]["defaulted"]  # packing on was not asked for: a default


def test_tokens_with_packing_off_count_samples(runner):
    """--tokens are useful tokens: 2.56M / 256 = 10,000 samples, each padded to 1024, x 3
    epochs."""
    off = _est(runner, "--tokens", "2.56M", "--avg-sample-tokens", "256", "--packing", "off",
               "--epochs", "3")
    assert off["tokens"] == 3 * 10_240_000


def test_packing_on_is_todays_answer(runner):
    """Without --avg-sample-tokens, samples fill their row (samples x --seq-len), as before;
    --packing on changes nothing for --tokens."""
    assert _est(runner, "--samples", "10K")["tokens"] == 10_000 * 1024
    plain = _est(runner, "--tokens", "5M")
    assert _est(runner, "--tokens", "5M", "--packing", "on")["range"] == plain["range"]


def test_pretraining_honours_packing(runner):
    r = runner.invoke(cli, ["estimate", "--model", "gpt2", "--hardware", "h100-sxm",
                            "--devices", "1", "--seq-len", "1024", "--samples", "1K",
                            "--avg-sample-tokens", "100", "--packing", "off", "--format",
                            "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["tokens"] == 1000 * 1024


def test_scenario_packing_is_the_flags(runner, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntitle: t\nquestion: q\nmodel: qwen3-8b\n"
                    "data: {samples: 10K, avg_sample_tokens: 256, packing: off}\n"  # YAML's false
                    "training: {seq_len: 1024}\nfinetune: {mode: lora}\n"
                    "hardware: [{hardware: h100-sxm}]\nconstraints: {devices: 1}\n")
    r = runner.invoke(cli, ["run", str(path), "--format", "json"])
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["plans"][0]
    est = _est(runner, "--samples", "10K", "--avg-sample-tokens", "256", "--packing", "off")
    assert plan["tokens"] == est["tokens"] == 10_240_000
    assert plan["range"] == est["range"]


@pytest.mark.parametrize("args,needle", [
    (["--packing", "off", "--tokens", "1M"], "--packing off with --tokens needs "
                                             "--avg-sample-tokens"),
    (["--avg-sample-tokens", "2000"], "--avg-sample-tokens 2000: longer than --seq-len 1024"),
    (["--avg-sample-tokens", "0"], "--avg-sample-tokens"),
    (["--packing", "of"], "'of' is not one of 'on', 'off'"),
])
def test_bad_packing_is_one_line(runner, args, needle):
    r = runner.invoke(cli, ["estimate", *JOB, *args])
    assert r.exit_code in (1, 2) and needle in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_scenario_packing_off_with_tokens_names_the_key(runner, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ntitle: t\nquestion: q\nmodel: qwen3-8b\n"
                    "data: {tokens: 1M, packing: 'off'}\nfinetune: {mode: lora}\n"
                    "hardware: [{hardware: h100-sxm}]\nconstraints: {devices: 1}\n")
    r = runner.invoke(cli, ["run", str(path)])
    err = r.stderr.strip()
    assert r.exit_code == 1 and len(err.splitlines()) == 1
    assert "line 5" in err and "avg_sample_tokens" in err, err
