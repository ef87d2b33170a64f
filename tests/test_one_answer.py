"""One question, one answer: the same job through estimate, plan --devices N, compare, run
(a scenario) and budget gives the same days, device-hours, cost, energy and carbon.

Each command is run through its CLI (`--format json`) on identical inputs; equality is exact
up to float formatting (relative 1e-9), because all five go through resolve -> search ->
estimate with one outcome chain. The job is the `quickstart` scenario's first option.
"""

import json

import pytest
import yaml

from planner.cli import cli

KEYS = ("wall_clock_days", "device_hours", "cost_usd", "energy_kwh", "kg_co2e")
JOB = ["--model", "llama3-8b", "--tokens", "1T", "--seq-len", "8192", "--global-batch", "512",
       "--region", "aws:us-east-1"]


def _outcome(est: dict) -> dict:
    return {k: est["range"]["expected"][k] for k in KEYS}


def _json(runner, args) -> dict | list:
    result = runner.invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _same(a: dict, b: dict) -> None:
    for k in KEYS:
        assert a[k] == pytest.approx(b[k], rel=1e-9), k


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    from click.testing import CliRunner

    runner = CliRunner()
    est = _json(runner, ["estimate", *JOB, "--hardware", "h100-sxm", "--devices", "64"])
    plan = _json(runner, ["plan", *JOB, "--hardware", "h100-sxm", "--devices", "64"])["best"]
    compare = _json(runner, ["compare", *JOB, "--hardware", "h100-sxm,h200", "--devices",
                             "64"])
    run = _json(runner, ["run", "quickstart"])["plans"]
    cost = est["range"]["expected"]["cost_usd"]
    budget = _json(runner, ["budget", "--usd", repr(cost), "--model", "llama3-8b",
                            "--hardware", "h100-sxm", "--devices", "64", "--region",
                            "aws:us-east-1", "--seq-len", "8192", "--global-batch", "512"])
    builtin = _json(runner, ["estimate"])
    return {"estimate": est, "plan": plan, "compare": compare[0], "run": run[0],
            "budget": budget, "builtin": builtin, "compare_h200": compare[1],
            "run_h200": run[1]}


@pytest.mark.parametrize("command", ["plan", "compare", "run", "budget", "builtin"])
def test_same_job_same_numbers(answers, command):
    _same(_outcome(answers[command]), _outcome(answers["estimate"]))
    assert answers[command]["layout"] == answers["estimate"]["layout"]


def test_same_job_on_the_second_hardware(answers):
    _same(_outcome(answers["compare_h200"]), _outcome(answers["run_h200"]))


def test_budget_buys_the_tokens_estimate_priced(answers):
    assert answers["budget"]["tokens"] == pytest.approx(1e12, rel=1e-9)


def test_estimate_says_which_degrees_it_chose(answers):
    choice = answers["estimate"]["layout_choice"]
    assert choice["question"] == "the best layout on 64 devices"
    assert set(choice["chosen"]) == {"tp", "pp", "cp", "zero_stage", "micro_batch_size",
                                     "recompute", "virtual_stages", "dp_shard",
                                     "reshard_after_forward"}
    assert choice["fitting"] > 1 and choice["searched"] >= choice["fitting"]


def test_quickstart_is_the_builtin_plan():
    """The built-in plan is literally the quickstart scenario's first option."""
    from planner.catalog.catalog import shipped_dir
    from planner.planning.defaults import BUILTIN_PLAN

    sc = yaml.safe_load((shipped_dir("scenarios") / "quickstart.yaml").read_text())
    assert sc["model"] == BUILTIN_PLAN["model"]
    assert sc["hardware"][0] == {"hardware": BUILTIN_PLAN["hardware"],
                                 "region": BUILTIN_PLAN["region"]}
    assert sc["constraints"]["devices"] == BUILTIN_PLAN["devices"]
    assert sc["training"] == {"seq_len": BUILTIN_PLAN["seq_len"],
                              "global_batch": BUILTIN_PLAN["global_batch_size"]}


def test_python_api_is_the_cli(answers):
    import planner

    est = planner.estimate("llama3-8b", "h100-sxm", 64, "1T", "aws:us-east-1", seq_len=8192,
                           global_batch_size=512)
    assert est.to_dict() == answers["estimate"]
    best = planner.plan("llama3-8b", "h100-sxm", "1T", "aws:us-east-1", devices=64,
                        seq_len=8192, global_batch_size=512).best
    assert best.to_dict() == answers["plan"]
    assert est.tokens == 1e12


def test_largest_model_scenario_agrees_with_budget(runner):
    """`largest-model-1m` trains what `planner budget --usd 1M` allocates, within the $1M."""
    alloc = _json(runner, ["budget", "--usd", "1M", "--hardware", "h100-sxm", "--price-tier",
                           "neocloud"])
    chinchilla = [c["allocations"][0]["params"] for c in alloc["cases"].values()]
    run = runner.invoke(cli, ["run", "largest-model-1m", "--format", "json"])
    assert run.exit_code == 0, run.stderr
    plans = json.loads(run.stdout)["plans"]
    h100 = next(p for p in plans if p["hardware"]["name"] == "h100-sxm")
    assert min(chinchilla) <= h100["model"]["params_total"] <= max(chinchilla)
    assert h100["range"]["expected"]["cost_usd"] <= 1e6
    assert h100["tokens"] == pytest.approx(20 * h100["model"]["params_total"])


def test_scenario_model_error_names_the_model_key(runner, tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text("name: s\ntitle: t\nquestion: q\nmodel: ./missing.yaml\ndata: {tokens: 1T}\n"
                  "hardware:\n  - {hardware: h100-sxm}\nconstraints: {devices: 8}\n")
    result = runner.invoke(cli, ["run", str(sc)])
    assert result.exit_code == 1
    assert "line 4: model:" in result.stderr and "hardware[0]" not in result.stderr


@pytest.mark.parametrize("degrees", [[], ["--tp", "8", "--pp", "1", "--cp", "1", "--zero", "3",
                                          "--micro-batch", "1", "--recompute", "full"]])
def test_no_fit_names_the_fewest_devices_not_a_hint_loop(runner, degrees):
    """70B on 8 H100 fits no layout: one line with the fewest devices that fit (16, the
    answer `plan --min-devices` gives) instead of a chain of flag suggestions."""
    result = runner.invoke(cli, ["estimate", "-m", "llama3-70b", "-n", "8", *degrees])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    fewest = _json(runner, ["plan", "-m", "llama3-70b", "--min-devices", *degrees])
    n = fewest["best"]["layout"]["devices"]
    assert f"the fewest devices that fit: {n}" in result.stderr and n == 16


def test_no_layout_at_all_says_so_not_memory(runner):
    """BLOOM (70 layers) on 384 = 2^7 x 3 GPUs with a 2,048-sequence batch: dp must divide the
    batch (a power of two) and pp the layers (or be a power of two), so no tp x pp x cp takes
    the factor 3. The error says that, not that the model does not fit in memory."""
    result = runner.invoke(cli, ["estimate", "-m", "bloom-176b", "-H", "a100-80gb", "-n", "384",
                                 "--global-batch", "2048", "--seq-len", "2048"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    err = result.stderr
    assert "no layout of bloom-176b on 384 x a100-80gb divides its 2048-sequence batch" in err
    assert "does not fit" not in err and "the nearest device counts that fit: 256 and 512" in err


def test_execution_switches_reach_the_search():
    """--no-dp-comm-overlap / --tp-comm-overlap reach the search: the layout `estimate`
    searches, given back in full, gives the same days with the same switch."""
    from planner.api import estimate as api_estimate

    base = dict(model="llama3-70b", hardware="h100-sxm", devices=512, tokens=1e12,
                seq_len=4096, global_batch_size=512, tp=8, pp=1)
    days = {}
    for name, switch in (("plain", {}), ("no_dp_overlap", {"dp_comm_overlap": False}),
                         ("tp_overlap", {"tp_comm_overlap": True})):
        searched = api_estimate(**base, **switch)
        lay = searched.layout
        full = api_estimate(**base, **switch, cp=lay.cp, zero_stage=lay.zero_stage,
                            micro_batch_size=lay.micro_batch_size, recompute=lay.recompute,
                            dp_shard=lay.dp_shard,
                            reshard_after_forward=lay.reshard_after_forward)
        assert full.layout_choice is None  # every degree given: no search
        assert full.time.wall_clock_days == pytest.approx(searched.time.wall_clock_days,
                                                          rel=1e-9)
        days[name] = searched.time.wall_clock_days
    assert days["no_dp_overlap"] > days["plain"] > days["tp_overlap"]


# A fine-tune asks the same question through the same five doors: the shipped scenario
# `finetune-qwen3-8b-lora` (LoRA r16 on every projection, 200M tokens x 3 epochs, one GPU).
FT = ["--model", "qwen3-8b", "--finetune", "lora", "--lora-rank", "16", "--lora-targets",
      "q,k,v,o,gate,up,down", "--region", "FR"]
FT_DATA = ["--tokens", "200M", "--epochs", "3"]


@pytest.fixture(scope="module")
def finetune_answers():
    from click.testing import CliRunner

    runner = CliRunner()
    one = ["--hardware", "l40s", "--devices", "1"]
    est = _json(runner, ["estimate", *FT, *FT_DATA, *one])
    plan = _json(runner, ["plan", *FT, *FT_DATA, *one])["best"]
    compare = _json(runner, ["compare", *FT, *FT_DATA, "--hardware", "rtx-4090,l40s,h100-sxm",
                             "--devices", "1"])
    run = _json(runner, ["run", "finetune-qwen3-8b-lora"])["plans"]
    budget = _json(runner, ["budget", "--usd", repr(est["range"]["expected"]["cost_usd"]),
                            *FT, *one])
    return {"estimate": est, "plan": plan, "compare": compare[1], "run": run[1],
            "budget": budget, "compare_all": compare, "run_all": run}


@pytest.mark.parametrize("command", ["plan", "compare", "run", "budget"])
def test_same_finetune_same_numbers(finetune_answers, command):
    a, est = finetune_answers[command], finetune_answers["estimate"]
    _same(_outcome(a), _outcome(est))
    assert a["layout"] == est["layout"]
    assert a["model"] == est["model"]  # the recipe: trainable and frozen counts
    assert a["memory_per_device"] == est["memory_per_device"]


def test_finetune_is_a_finetune_everywhere(finetune_answers):
    m = finetune_answers["estimate"]["model"]
    # LoRA r16 on q,k,v,o,gate,up,down of Qwen3-8B (36 layers, d 4096, 32 x 128 q heads,
    # 8 x 128 kv heads, FFN 12288): 16 x 36 x [(4096+4096) + 2 (4096+1024) + (4096+4096)
    # + 2 (4096+12288) + (12288+4096)] = 43,646,976, peft's count
    assert m["params_trainable"] == 16 * 36 * (8192 + 2 * 5120 + 8192 + 3 * 16384)
    assert m["params_trainable"] == 43_646_976
    assert finetune_answers["budget"]["tokens"] == pytest.approx(600e6, rel=1e-9)
    assert finetune_answers["estimate"]["tokens"] == 600e6


def test_finetune_compare_is_the_scenario(finetune_answers):
    for a, b in zip(finetune_answers["compare_all"], finetune_answers["run_all"], strict=True):
        assert a["hardware"]["name"] == b["hardware"]["name"]
        _same(_outcome(a), _outcome(b))


def test_a_count_no_layout_splits_names_the_counts_around_it(runner):
    """3,072 H100 for a 2,048-sequence batch: no layout splits it (dp must divide the
    batch), but 2,048 devices do. The line had said "the fewest devices that fit: 4096" as if
    fewer could not (review); it names the nearest counts on both sides, each of which
    `plan --devices` answers."""
    base = ["-m", "llama3-70b", "-H", "h100-sxm", "-t", "15T", "--global-batch", "2048"]
    result = runner.invoke(cli, ["plan", *base, "--devices", "3072"])
    err = result.stderr.strip()
    assert result.exit_code == 1 and len(err.splitlines()) == 1
    assert err.endswith("the nearest device counts that fit: 2048 and 4096"), err
    for n in ("2048", "4096"):
        assert runner.invoke(cli, ["plan", *base, "--devices", n]).exit_code == 0
