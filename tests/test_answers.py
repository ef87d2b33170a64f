"""Answers a user would accept (issue 13): headroom among near-ties, a --min-devices answer
that trains for years says so, compare says which profiles were validated, and a scenario
names the option its objective asks for."""

import json

import numpy as np
import pytest

from planner.cli import cli
from planner.planning.sizing import NEAR_BEST, headroom_order


def test_headroom_rule_by_hand():
    # three layouts: the fastest at 78 GiB, one 0.5% slower at 65 GiB, one 3% slower at 40 GiB
    days = np.array([100.0, 100.5, 103.0])
    memory = np.array([78.0, 65.0, 40.0])
    order = headroom_order(np.arange(3), days, days, memory)
    assert order.tolist() == [1, 0, 2]  # within 1%: most headroom first; then by time
    assert NEAR_BEST == 0.01


def test_headroom_rule_at_risk_by_hand():
    # capacity 80: the fastest at 78.5 GiB is at risk (78.5 x 1.05 = 82.4 > 80), the tied one
    # (0.5% slower, 77 GiB) too; a safe one 1.6% slower (65 GiB) and one 6% slower (40 GiB):
    # within RISK_MARGIN (5%) the safe layout comes first, then the rest by the objective.
    from planner.planning.sizing import RISK_MARGIN
    days = np.array([100.0, 100.5, 101.6, 106.0])
    memory = np.array([78.5, 77.0, 65.0, 40.0])
    order = headroom_order(np.arange(4), days, days, memory, capacity=80.0)
    assert order.tolist() == [2, 0, 1, 3] and RISK_MARGIN == 0.05
    # with a safe layout among the tied ones the 1% rule stands as before
    memory_safe = np.array([78.5, 70.0, 65.0, 40.0])
    assert headroom_order(np.arange(4), days, days, memory_safe, 80.0).tolist() == [1, 0, 2, 3]
    # and when nothing within 5% is safe, the 1% rule alone: the tied pair, headroom first
    assert headroom_order(np.arange(3), days[:3], days[:3], np.array([79.0, 78.0, 77.5]),
                          80.0).tolist() == [1, 0, 2]


def test_405b_plan_prefers_headroom(runner):
    # issue 13: the 405B on 16,384 H100 picked 78.4 of 80 GiB over a layout as fast with 65.
    out = json.loads(runner.invoke(cli, [
        "plan", "--model", "llama3.1-405b", "--hardware", "h100-sxm", "--tokens", "15T",
        "--seq-len", "8192", "--global-batch", "2048", "--devices", "16384", "--top", "50",
        "--format", "json"]).stdout)
    best, cands = out["best"], out["candidates"]
    fastest = min(c["days"] for c in cands)
    days = best["range"]["expected"]["wall_clock_days"]
    assert days <= fastest * 1.05
    capacity = best["memory_per_device"]["capacity_bytes"] / 2**30
    faster = [c for c in cands if c["days"] < days * 0.999]
    # every faster layout is at risk (its memory + 5% overflows), or within the 1% tie
    assert all(c["memory_gib"] * 1.05 > capacity or c["days"] >= fastest * 0.99
               for c in faster)
    # and the pick itself keeps the headroom: its memory + 5% fits
    assert best["memory_per_device"]["total_bytes"] * 1.05 < 80 * 2**30


def test_min_devices_that_train_for_years_say_so(runner):
    result = runner.invoke(cli, ["plan", "--model", "llama3-70b", "--hardware", "h100-sxm",
                                 "--tokens", "15T", "--global-batch", "2048", "--min-devices",
                                 "--format", "json"])
    best = json.loads(result.stdout)["best"]
    years = best["range"]["expected"]["wall_clock_days"] / 365.25
    assert years > 1
    w = best["warnings"][0]
    assert w.startswith(f"the fewest devices that fit ({best['layout']['devices']}) train for "
                        f"{years:,.1f} years; ")
    n90 = int(w.split("; ")[1].split()[0].replace(",", ""))
    check = json.loads(runner.invoke(cli, [
        "plan", "--model", "llama3-70b", "--hardware", "h100-sxm", "--tokens", "15T",
        "--global-batch", "2048", "--deadline-days", "90", "--format", "json"]).stdout)
    assert check["best"]["layout"]["devices"] == n90


def test_compare_says_which_profiles_are_validated(runner):
    out = runner.invoke(cli, ["compare", "--model", "llama3-8b", "--tokens", "1T",
                              "--hardware", "h100-sxm,a100-80gb,b200", "--devices", "64"]).stdout
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[4:7]}
    assert rows == {"h100-sxm": "measured", "a100-80gb": "published", "b200": "scaled"}
    assert "validated: measured (this project ran it" in out


def test_scenario_names_the_option_its_objective_asks_for(runner):
    out = json.loads(runner.invoke(cli, ["run", "llama3-70b-15t", "--format", "json"]).stdout)
    text = runner.invoke(cli, ["run", "llama3-70b-15t"]).stdout
    cheapest = min(out["plans"], key=lambda p: p["cost"]["total_usd"])
    fastest = min(out["plans"], key=lambda p: p["time"]["wall_clock_days"])
    assert f"the cheapest is {cheapest['hardware']['name']}:" in text
    if fastest is not cheapest:
        assert f"The fastest is {fastest['hardware']['name']} (" in text


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
def test_plan_candidate_table_prints_every_degree(runner, fmt):
    # The candidate rows are named by sizing.ROW_DEGREES; a renderer column that names no
    # field printed "n/a" (table) or nothing (CSV) for zero, mb, v and batch.
    args = ["plan", "--model", "llama3-8b", "--hardware", "h100-sxm", "--devices", "64",
            "--top", "3", "--format", fmt]
    out = runner.invoke(cli, args).stdout
    lines = out.split("Top layouts")[-1].split("Rejected")[0].strip().splitlines()
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip() and
                              not set(ln) <= set("-| ") and not ln.startswith("#")]
    sep = "," if fmt == "csv" else ("|" if fmt == "markdown" else None)
    names = [c.strip() for c in header.strip("|").split(sep)] if sep else header.split()
    want = {"csv": ["zero_stage", "micro_batch_size", "virtual_stages", "global_batch_size",
                    "dp_shard", "reshard_after_forward"]}.get(
        fmt, ["zero", "mb", "v", "batch", "shard", "reshard"])
    assert all(w in names for w in want), names
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(sep)] if sep else row.split()
        values = dict(zip(names, cells))
        assert all(values[w] not in ("", "n/a") for w in want), values


MEGATRON_16 = ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "16", "--tokens", "1B",
               "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "1", "--micro-batch", "1",
               "--recompute", "none", "--global-batch", "64", "--framework", "megatron",
               "--format", "json"]


def test_megatron_fp16_accumulation_is_warned(runner):
    # The model follows the 2022 Megatron-LM (no fusion into fp16 gradients); today's fuses
    # them (07916bf245), so the estimate says it is pessimistic. --grad-dtype fp32 is
    # --accumulate-allreduce-grads-in-fp32: fused, no warning, fp32 gradients held.
    base = MEGATRON_16
    fp16 = json.loads(runner.invoke(cli, [*base, "--precision", "fp16"]).stdout)
    assert any("charged unfused" in w for w in fp16["warnings"])
    bf16 = json.loads(runner.invoke(cli, [*base, "--precision", "bf16"]).stdout)
    assert not any("charged unfused" in w for w in bf16["warnings"])
    fp32 = json.loads(runner.invoke(cli, [*base, "--precision", "fp16", "--grad-dtype",
                                          "fp32"]).stdout)
    assert not any("charged unfused" in w for w in fp32["warnings"])
    assert (fp16["layout"]["grad_dtype"], fp32["layout"]["grad_dtype"]) == ("fp16", "fp32")
    assert fp32["memory_per_device"]["gradients_bytes"] == pytest.approx(
        2 * fp16["memory_per_device"]["gradients_bytes"])
    assert fp32["step"]["step_time_s"] < fp16["step"]["step_time_s"]
    # given, it is not listed as a default; left out, the framework's choice is
    assert [a["value"] for a in fp16["assumptions"] if a["name"] == "grad_dtype"] == ["fp16"]
    assert not [a for a in fp32["assumptions"] if a["name"] == "grad_dtype"]


def test_megatron_bf16_gradients_are_fused_and_not_warned(runner):
    # bf16 main_grad exists only in Megatron-core (--grad-reduce-in-bf16), which fuses into
    # it; only fp16 gradients pay the 2022 code's unfused pass.
    bf16 = json.loads(runner.invoke(cli, [*MEGATRON_16, "--grad-dtype", "bf16"]).stdout)
    fp32 = json.loads(runner.invoke(cli, MEGATRON_16).stdout)
    assert bf16["layout"]["grad_dtype"] == "bf16" and fp32["layout"]["grad_dtype"] == "fp32"
    assert not any("charged unfused" in w for w in bf16["warnings"])
    assert bf16["step"]["compute_s"] == pytest.approx(fp32["step"]["compute_s"])
    # 2 B main_grad + fp32 main gradients in the optimizer: 2 + 2 + 16, as --fp16
    assert bf16["memory_per_device"]["gradients_bytes"] == pytest.approx(
        fp32["memory_per_device"]["gradients_bytes"] / 2)
