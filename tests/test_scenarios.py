"""Scenarios, `planner run`, the HTML report and `planner budget`."""

import json
import re

import pytest

from planner.planning.budget import BESIROGLU, CHINCHILLA, allocations, useful_flops
from planner.catalog.catalog import shipped_dir
from planner.cli import cli
from planner.planning.scenario import load_scenario, run_scenario, scenario_paths
from planner.checks.throughput import all_checks

SHIPPED = sorted(scenario_paths())


def test_at_least_six_scenarios_ship():
    assert {"quickstart", "seed-7b-chinchilla", "llama3-70b-15t", "largest-model-1m",
            "moe-deepseek-style", "small-test-run"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_runs(name):
    sc, path = load_scenario(name)
    result = run_scenario(sc, path)
    assert len(result.plans) == len(sc.hardware)
    for plan in result.plans:
        assert plan.memory_per_device.fits and plan.time.wall_clock_days > 0
    from planner.report.scenario import scenario_answer

    assert scenario_answer(result).startswith(sc.question)
    c = sc.constraints
    if c.deadline_days:
        assert all(p.time.wall_clock_days <= c.deadline_days for p in result.plans)
    if c.budget_usd:
        assert all(p.cost.total_usd <= c.budget_usd for p in result.plans)


@pytest.mark.parametrize("path", sorted(shipped_dir("scenarios").glob("*.yaml")))
def test_scenarios_reference_the_schema(path):
    assert path.read_text().startswith(
        "# yaml-language-server: $schema=../planner/data/schema/scenario.schema.json")


def test_chinchilla_data_is_twenty_tokens_per_param():
    sc, path = load_scenario("seed-7b-chinchilla")
    plan = run_scenario(sc, path).plans[0]
    assert plan.flops.total / plan.flops.per_token == pytest.approx(20 * 6_738_415_616)


def test_run_json(runner):
    result = runner.invoke(cli, ["run", "quickstart", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"scenario", "plans", "answer"}
    assert [p["hardware"]["name"] for p in data["plans"]] == ["h100-sxm", "h200"]
    assert data["scenario"]["name"] == "quickstart"


def test_report_is_self_contained(runner, tmp_path):
    out = tmp_path / "out.html"
    result = runner.invoke(cli, ["run", "llama3-70b-15t", "--report", str(out)])
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 3
    for needle in ("The answer", "Comparison", "h100-sxm", "tpu-v5p", "Assumptions of the",
                   "grid_g_co2e_per_kwh", "backtest", "Megatron", "Pareto",
                   # every throughput check, planner's own GPU runs included
                   *(c.name for c in all_checks())):
        assert needle in page or needle.lower() in page.lower(), needle
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Llama-3-70B on 15T tokens") and "| hardware |" in md


BAD = [
    ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\ndata: {tokens: 1T}\n"
     "hardware: [{hardware: h100-sxm}]\nconstraints: {devices: 8}\ntraning: {seq_len: 10}\n",
     "line 8: unknown key 'traning'; did you mean: training"),
    ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\ndata: {tokens: lots}\n"
     "hardware: [{hardware: h100-sxm}]\nconstraints: {devices: 8}\n", "tokens"),
    ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\ndata: {tokens: 1T}\n"
     "hardware: [{hardware: h1000}]\nconstraints: {devices: 8}\n",
     "line 6: hardware[0] (h1000): unknown hardware 'h1000'"),
    ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\ndata: {tokens: 1T, chinchilla: true}\n"
     "hardware: [{hardware: h100-sxm}]\n", "exactly one of tokens"),
    ("name: x\ntitle: t\nquestion: q\nmodel: llama3-8b\ndata: {tokens: 1T}\n"
     "hardware: [{hardware: h100-sxm}]\n", "give constraints.devices"),
]


@pytest.mark.parametrize("text,needle", BAD, ids=["typo", "units", "hardware", "data", "question"])
def test_bad_scenario_files_name_file_line_and_field(runner, tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(cli, ["run", str(path)])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert str(path) in err and needle in err, err


TRAINING_BAD = [
    # a setting no candidate changes: the training key's line, its words, no candidate named
    ("  grad_dtype: fp16\n", "h200", "line 12: training.grad_dtype fp16 with "
     "training.precision bf16: gradients accumulate in fp32 or in the compute dtype; valid "
     "training.grad_dtype: fp32 or bf16"),
    ("  attention_kernel: fa2\n  flash_attention: false\n", "h200",
     "line 12: training.attention_kernel fa2 names a fused attention kernel: drop "
     "training.flash_attention: false, or the kernel"),
    # one candidate cannot have it: that candidate, and the training key's line
    ("  attention_kernel: fa2\n", "b200", "line 12: hardware[1] (b200): "
     "training.attention_kernel fa2: b200 has no fa2_attention_fraction figure"),
]


@pytest.mark.parametrize("lines,second,needle", TRAINING_BAD,
                         ids=["grad-dtype", "kernel-unfused", "kernel-hardware"])
def test_scenario_training_errors_name_the_training_keys(runner, tmp_path, lines, second,
                                                          needle):
    # resolve words these errors with the command line's flags; a scenario has no flags
    text = (shipped_dir("scenarios") / "quickstart.yaml").read_text().replace(
        "  global_batch: 512\n", "  global_batch: 512\n" + lines).replace(
        "hardware: h200", f"hardware: {second}")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(cli, ["run", str(path)])
    err = result.stderr.strip()
    assert result.exit_code == 1 and len(err.splitlines()) == 1, result.output
    assert err.startswith(f"error: {path} ") and needle in err, err
    assert "--" not in err and "Python API" not in err, err


def test_unknown_scenario_name(runner):
    result = runner.invoke(cli, ["run", "quikstart"])
    assert result.exit_code == 1 and "quickstart" in result.stderr


# ---- budget ---------------------------------------------------------------------------

def test_budget_worked_example():
    # formulas.md §5.4: $1M at $2 per H100-hour, 40% MFU, goodput 0.9 -> C = 6.4e23 FLOPs,
    # N ~ 73B, D ~ 1.46T (Besiroglu: 76B, 1.40T).
    c = useful_flops(1e6 / 2.0, 989.4e12, 0.40, 0.9)
    assert c == pytest.approx(6.41e23, rel=0.01)
    rule, refit = allocations(c)[:2]
    assert rule.params == pytest.approx(73e9, rel=0.01) and rule.tokens == pytest.approx(1.46e12, rel=0.01)
    assert refit.params == pytest.approx(76e9, rel=0.01) and refit.tokens == pytest.approx(1.40e12, rel=0.01)


def test_chinchilla_published_allocations():
    # formulas.md §5.3 at Chinchilla's budget C = 5.76e23: 20:1 -> 69.3B / 1.39T;
    # Besiroglu -> 72.2B / 1.33T; rounded Hoffmann Approach 3 -> 32.2B / 2.98T.
    rule, refit = allocations(5.76e23)[:2]
    assert rule.params == pytest.approx(69.3e9, rel=0.005)
    assert refit.params == pytest.approx(72.2e9, rel=0.005)
    assert refit.tokens == pytest.approx(1.33e12, rel=0.01)
    n, d = CHINCHILLA.optimal(5.76e23)
    assert n == pytest.approx(32.2e9, rel=0.01) and d == pytest.approx(2.98e12, rel=0.01)
    # Hoffmann Table 3: 10B params <-> 1.23e22 FLOPs at ~20 tokens/param
    assert allocations(1.23e22)[0].params == pytest.approx(10.1e9, rel=0.02)


def test_loss_fits():
    # Chinchilla 70B on 1.4T tokens: the Approach-3 fit gives ~1.94
    assert CHINCHILLA.loss(70e9, 1.4e12) == pytest.approx(1.937, abs=0.005)
    assert BESIROGLU.loss(70e9, 1.4e12) > BESIROGLU.E


def test_budget_cli(runner):
    out = runner.invoke(cli, ["budget", "--usd", "1M", "--hardware", "h100-sxm",
                              "--price-per-hour", "2", "--efficiency", "0.4", "--goodput", "0.9",
                              "--deadline-days", "90", "--format", "json"])
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["device_hours"] == 500_000 and data["devices"] == 232
    exp = data["cases"]["expected"]
    assert exp["flops"] == pytest.approx(6.41e23, rel=0.01)
    assert exp["allocations"][0]["params"] == pytest.approx(73e9, rel=0.01)
    table = runner.invoke(cli, ["budget", "--usd", "250K", "--tokens-per-param", "100"])
    assert table.exit_code == 0 and "100 tokens/param" in table.stdout
    assert "deadline_days = 90.0" in table.stdout  # the default is listed
    bad = runner.invoke(cli, ["budget", "--usd", "1M", "--flops", "1e24"])
    assert bad.exit_code == 1 and "exactly one of" in bad.stderr


def test_budget_cases_run_best_to_worst(runner):
    """`cases.low` is the best case, as `range.low` in an estimate and every range in planner
    (docs/json.md): with --efficiency 0.3:0.4:0.5 the best case is the 0.5 of peak, and at a
    fixed $1M it buys the most FLOPs and the largest compute-optimal model; the table's
    "best case" row is that case."""
    args = ["budget", "--usd", "1M", "--hardware", "h100-sxm", "--price-per-hour", "2",
            "--efficiency", "0.3:0.4:0.5", "--goodput", "0.9", "--deadline-days", "90"]
    data = json.loads(runner.invoke(cli, args + ["--format", "json"]).stdout)
    cases = data["cases"]
    assert [cases[k]["efficiency"] for k in ("low", "expected", "high")] == [0.5, 0.4, 0.3]
    # 500,000 device-hours x 3600 s x 989.4 TFLOP/s (H100 dense bf16) x 0.5 x 0.9
    assert cases["low"]["flops"] == pytest.approx(5e5 * 3600 * 989.4e12 * 0.5 * 0.9, rel=1e-3)
    assert cases["low"]["flops"] > cases["expected"]["flops"] > cases["high"]["flops"]
    params = [cases[k]["allocations"][0]["params"] for k in ("low", "expected", "high")]
    assert params == sorted(params, reverse=True)
    table = runner.invoke(cli, args).stdout
    assert "best case (0.50 of peak)" in table and "worst case (0.30 of peak)" in table


def test_budget_flops_reproduce_themselves(runner):
    out = runner.invoke(cli, ["budget", "--flops", "1e21", "--format", "json"])
    data = json.loads(out.stdout)
    assert data["cases"]["expected"]["flops"] == pytest.approx(1e21)


def test_unwritable_outputs_are_one_line_errors(runner):
    for args in (["run", "quickstart", "--report", "/proc/none/r.html"],
                 ["compare", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "8", "--plot",
                  "/proc/none/x.png"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1 and result.stderr.startswith("error: cannot write")


def test_inline_model_error_names_the_field_not_the_union(runner, tmp_path):
    path = tmp_path / "inline.yaml"
    path.write_text("name: x\ntitle: t\nquestion: q\nmodel:\n  name: m\n  num_layers: 0\n"
                    "  d_model: 64\n  num_heads: 4\n  ffn_hidden_size: 128\n  max_seq_len: 128\n"
                    "  vocab_size: 100\ndata: {tokens: 1T}\nhardware: [{hardware: h100-sxm}]\n"
                    "constraints: {devices: 8}\n")
    err = runner.invoke(cli, ["run", str(path)]).stderr.strip()
    assert err == (f"error: {path} line 6: model.num_layers: Input should be greater than or "
                   "equal to 1 (got 0)")


def test_scenario_and_budget_take_the_execution_settings(runner, tmp_path):
    # training: kernels / dropout / flash_attention / attention_flops reach the estimate as
    # the flags do: the same eager plan from `run`, `estimate --kernels eager` and
    # `budget --model --kernels eager` (its tokens for the same money).
    text = (shipped_dir("scenarios") / "quickstart.yaml").read_text().replace(
        "  global_batch: 512\n", "  global_batch: 512\n  kernels: eager\n  dropout: false\n")
    path = tmp_path / "eager.yaml"
    path.write_text(text)
    run = json.loads(runner.invoke(cli, ["run", str(path), "--format", "json"]).stdout)
    plan = next(p for p in run["plans"] if p["hardware"]["name"] == "h100-sxm")
    assert plan["layout"]["kernels"] == "eager"
    est = json.loads(runner.invoke(cli, [
        "estimate", "--model", "llama3-8b", "--hardware", "h100-sxm", "--devices", "64",
        "--tokens", "1T", "--seq-len", "8192", "--global-batch", "512", "--region",
        "aws:us-east-1", "--kernels", "eager", "--format", "json"]).stdout)
    assert plan["time"]["wall_clock_days"] == est["time"]["wall_clock_days"]
    fused = json.loads(runner.invoke(cli, ["run", "quickstart", "--format", "json"]).stdout)
    assert fused["plans"][0]["time"]["wall_clock_days"] < plan["time"]["wall_clock_days"]
    budget = ["budget", "--usd", "1M", "--model", "llama3-8b", "--devices", "64",
              "--format", "json"]
    eager_tokens = json.loads(runner.invoke(cli, [*budget, "--kernels", "eager"]).stdout)
    fused_tokens = json.loads(runner.invoke(cli, budget).stdout)
    assert eager_tokens["tokens"] < fused_tokens["tokens"]
    fa2 = json.loads(runner.invoke(cli, [*budget, "--attention-kernel", "fa2"]).stdout)
    assert fa2["layout"]["attention_kernel"] == "fa2" and fa2["tokens"] < fused_tokens["tokens"]


def test_scenario_grad_dtype_reaches_the_plan_as_the_flag_does(runner, tmp_path):
    # training: grad_dtype is --grad-dtype, attention_kernel is --attention-kernel: the same
    # plan from `run` and `estimate --grad-dtype fp32 --attention-kernel fa2`, holding twice
    # the generic convention's bf16 gradients.
    text = (shipped_dir("scenarios") / "quickstart.yaml").read_text().replace(
        "  global_batch: 512\n",
        "  global_batch: 512\n  grad_dtype: fp32\n  attention_kernel: fa2\n")
    path = tmp_path / "fp32.yaml"
    path.write_text(text)
    run = json.loads(runner.invoke(cli, ["run", str(path), "--format", "json"]).stdout)
    plan = next(p for p in run["plans"] if p["hardware"]["name"] == "h100-sxm")
    assert (plan["layout"]["grad_dtype"], plan["layout"]["attention_kernel"]) == ("fp32", "fa2")
    base = ["estimate", "--model", "llama3-8b", "--hardware", "h100-sxm", "--devices", "64",
            "--tokens", "1T", "--seq-len", "8192", "--global-batch", "512", "--region",
            "aws:us-east-1", "--format", "json"]
    est = json.loads(runner.invoke(cli, [*base, "--grad-dtype", "fp32", "--attention-kernel",
                                         "fa2"]).stdout)
    assert plan["time"]["wall_clock_days"] == est["time"]["wall_clock_days"]
    assert plan["memory_per_device"] == est["memory_per_device"]
    lay = est["layout"]  # the search's layout, given in full to both dtypes
    fixed = [*base, "--attention-kernel", "fa2", "--tp", str(lay["tp"]), "--pp", str(lay["pp"]),
             "--cp", str(lay["cp"]), "--ep", "1", "--zero", str(lay["zero_stage"]),
             "--micro-batch", str(lay["micro_batch_size"]), "--recompute", lay["recompute"]]
    bf16 = json.loads(runner.invoke(cli, fixed).stdout)
    fp32 = json.loads(runner.invoke(cli, [*fixed, "--grad-dtype", "fp32"]).stdout)
    assert (bf16["layout"]["grad_dtype"], fp32["layout"]["grad_dtype"]) == ("bf16", "fp32")
    assert fp32["memory_per_device"]["gradients_bytes"] == pytest.approx(
        2 * bf16["memory_per_device"]["gradients_bytes"])
