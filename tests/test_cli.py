"""The command line through click's CliRunner: every command and every kind of bad input."""

import csv
import io
import json
from pathlib import Path

import pytest

from planner.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = ["estimate", "--model", "llama3-70b", "--hardware", "h100-sxm", "--devices", "2048",
           "--tokens", "15T", "--tp", "8", "--pp", "4", "--zero", "1", "--recompute",
           "selective", "--seq-len", "8192", "--global-batch", "2048", "--precision", "bf16",
           "--region", "aws:us-east-1"]


def run(runner, args, code=0):
    result = runner.invoke(cli, args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_help_and_version(runner):
    assert "estimate" in run(runner, []).stdout
    assert "0.1.0" in run(runner, ["--version"]).stdout
    for cmd in ("estimate", "models", "hardware", "regions"):
        assert "Usage" in run(runner, [cmd, "--help"]).stdout


def test_models_list(runner):
    out = run(runner, ["models", "list", "--format", "json"]).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["llama3-70b"]["params_total"] == 70_553_706_496
    assert rows["mixtral-8x7b"]["params_active"] == 12_879_925_248
    assert "llama3-70b" in run(runner, ["models", "list"]).stdout


def test_models_show_json(runner):
    data = json.loads(run(runner, ["models", "show", "llama3-70b", "--format", "json"]).stdout)
    assert data["params_total"] == 70_553_706_496 and data["params_active"] == 70_553_706_496
    assert data["source_url"].startswith("https://")


def test_models_show_config_json(runner):
    path = FIXTURES / "hf" / "qwen2-7b.json"
    data = json.loads(run(runner, ["models", "show", str(path), "--format", "json"]).stdout)
    assert data["params_total"] == 7_615_616_512 and data["qkv_bias"] is True
    assert "7,615,616,512" in run(runner, ["models", "show", str(path)]).stdout


def test_hardware_list_and_show(runner):
    rows = json.loads(run(runner, ["hardware", "list", "--format", "json"]).stdout)
    assert isinstance(rows, list) and all("name" in r for r in rows)
    assert {"h100-sxm", "mi300x", "tpu-v5p"} <= {r["name"] for r in rows}
    shown = run(runner, ["hardware", "show", "h100-sxm"]).stdout
    assert "peak_dense_bf16_tflops" in shown and "nvidia.com" in shown
    data = json.loads(run(runner, ["hardware", "show", "h100-sxm", "--format", "json"]).stdout)
    assert data["tdp_w"]["value"] == 700 and data["tdp_w"]["source"]


def test_regions(runner):
    data = json.loads(run(runner, ["regions", "show", "aws:us-east-1", "--format", "json"]).stdout)
    assert data[0]["pue"] == 1.15
    listed = run(runner, ["regions", "list", "--provider", "gcp", "--format", "csv"]).stdout
    assert "gcp:europe-west4" in listed and "aws:" not in listed


def test_estimate_builtin_default(runner):
    out = run(runner, ["estimate"]).stdout
    assert "llama3-8b" in out and "Assumptions" in out and "built-in default" in out


def test_estimate_issue_example_json(runner):
    data = json.loads(run(runner, EXAMPLE + ["--format", "json"]).stdout)
    assert data["model"]["params_total"] == 70_553_706_496
    assert data["layout"] == {**data["layout"], "devices": 2048, "dp": 64, "tp": 8, "pp": 4,
                              "cp": 1, "ep": 1, "zero_stage": 1, "micro_batch_size": 1,
                              "global_batch_size": 2048}
    assert data["carbon"]["pue"] == 1.15 and data["memory_per_device"]["fits"] is True
    assert data["range"]["low"]["cost_usd"] < data["cost"]["total_usd"]
    assert data["range"]["high"]["kg_co2e"] > data["carbon"]["kg_co2e"]


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
def test_estimate_formats(runner, fmt):
    out = run(runner, EXAMPLE + ["--format", fmt]).stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 1 and rows[0]["layout.tp"] == "8"
        assert float(rows[0]["cost.total_usd"]) > 0 and "assumption.pue" in rows[0]
    elif fmt == "markdown":
        assert out.startswith("## llama3-70b") and "| wall clock |" in out
    else:
        assert "wall clock" in out and "MFU" in out


def test_estimate_overrides_and_shape_flags(runner):
    data = json.loads(run(runner, ["estimate", "-m", "llama3-8b", "--layers", "16", "-n", "8",
                                   "--zero", "fsdp", "--efficiency", "0.5", "--pue", "1.1",
                                   "--grid", "100", "--price-per-hour", "2",
                                   "--format", "json"]).stdout)
    assert data["model"]["num_layers"] == 16 and data["layout"]["zero_stage"] == 3
    assert data["throughput"]["hfu"] == 0.5 and data["carbon"]["grid_g_co2e_per_kwh"] == 100
    assert data["cost"]["usd_per_device_hour"] == 2 and data["energy"]["pue"] == 1.1


def test_no_fit_check_prints_anyway(runner):
    out = run(runner, ["estimate", "-m", "llama3-70b", "-n", "8", "--no-fit-check",
                       "--format", "json"]).stdout
    assert json.loads(out)["memory_per_device"]["fits"] is False


BAD = [
    (["estimate", "-m", "llama-3-70b"], 1, "did you mean: llama3-70b"),
    (["estimate", "-H", "h100"], 1, "h100-sxm"),
    (["estimate", "--tokens", "-5"], 2, "positive"),
    (["estimate", "--tokens", "lots"], 2, "--tokens"),
    (["estimate", "-m", "llama3-70b", "-n", "100", "--tp", "8"], 1, "not divisible"),
    (["estimate", "-m", "llama3-70b", "-n", "9", "--tp", "3"], 1,
     "--tp 3 must divide the 64 attention heads of llama3-70b"),
    (["estimate", "-m", "llama3-70b", "-n", "16", "--tp", "16"], 1, "scale-up domain"),
    (["estimate", "-m", "llama3-8b", "-n", "64", "--pp", "64"], 1,
     "--pp 64 x --virtual-stages 1 exceeds the model's 32 layers"),
    (["estimate", "-m", "llama3-8b", "-n", "64", "--pp", "64"], 1,
     "(pp, virtual_stages in the Python API)"),
    (["estimate", "-m", "llama3-8b", "-n", "64", "--pp", "16", "--pipeline-schedule",
      "interleaved", "--virtual-stages", "4"], 1, "every model chunk needs a layer"),
    (["estimate", "-m", "llama3-8b", "--ep", "2", "-n", "8"], 1,
     "--ep 2 needs a mixture-of-experts model; llama3-8b is dense"),
    (["estimate", "-m", "llama3-8b", "--cp", "3", "-n", "48", "--seq-len", "8192"], 1,
     "--cp 3 must divide --seq-len 8192 (cp, seq_len in the Python API)"),
    (["estimate", "-m", "mixtral-8x7b", "--ep", "16", "-n", "16"], 1, "num_experts"),
    (["estimate", "-m", "llama3-8b", "--kv-heads", "5"], 1, "num_kv_heads"),
    (["estimate", "-m", "llama3-8b", "-n", "64", "--tp", "1", "--pp", "1", "--cp", "1",
      "--micro-batch", "1", "--global-batch", "100"], 1,
     "--global-batch 100 must be a multiple of dp x --micro-batch = 64 x 1 = 64"),
    (["estimate", "-m", "llama3-70b", "-n", "8"], 1, "does not fit"),
    (["estimate", "-r", "aws:us-east-9"], 1, "aws:us-east-1"),
    (["estimate", "--efficiency", "1.4"], 2, "--efficiency"),
    (["estimate", "--precision", "fp8", "-H", "v100", "-m", "gpt2"], 1, "valid precisions"),
    (["estimate", "--price-tier", "gold"], 1, "available tiers"),
    (["estimate", "--bogus"], 2, "--bogus"),
    (["estimate", "-m", "missing.json"], 1, "does not exist"),
    (["models", "show", "gpt-2"], 1, "gpt2"),
    (["hardware", "show", "mi300"], 1, "mi300x"),
    (["regions", "show", "Frnace"], 1, "FRA"),
]


@pytest.mark.parametrize("args,code,needle", BAD, ids=[" ".join(b[0][1:3]) for b in BAD])
def test_bad_input_is_one_line_without_traceback(runner, args, code, needle):
    result = runner.invoke(cli, args)
    assert result.exit_code == code
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in result.output and result.stdout == ""


def test_bad_files(runner, tmp_path):
    typo = tmp_path / "m.yaml"
    typo.write_text("name: m\nnum_layers: 2\nd_model: 64\nnum_heads: 4\nffn_hiden_size: 128\n"
                    "max_seq_len: 128\nvocab_size: 100\n")
    bad_json = tmp_path / "config.json"
    bad_json.write_text("{not json")
    for path, needle in ((typo, "line 5: unknown key 'ffn_hiden_size'"), (bad_json, "JSON")):
        result = runner.invoke(cli, ["models", "show", str(path)])
        assert result.exit_code == 1 and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


PLAN = ["plan", "-m", "llama3-70b", "-H", "h100-sxm", "-t", "15T", "--seq-len", "8192",
        "--global-batch", "2048"]


@pytest.mark.parametrize("question", [["--devices", "1024"], ["--min-devices"],
                                      ["--deadline-days", "90"], ["--budget-usd", "60M"]])
def test_plan_questions_json(runner, question):
    data = json.loads(run(runner, PLAN + question + ["--format", "json"]).stdout)
    assert set(data) >= {"best", "candidates", "rejected", "searched"}
    best = data["best"]
    assert best["model"]["name"] == "llama3-70b" and best["memory_per_device"]["fits"]
    assert data["searched"] >= len(data["candidates"]) and data["rejected"]
    assert data["candidates"][0]["devices"] == best["layout"]["devices"]
    if question[0] == "--deadline-days":
        assert best["time"]["wall_clock_days"] <= 90
    if question[0] == "--budget-usd":
        assert best["cost"]["total_usd"] <= 60e6


def test_plan_table_and_objective(runner):
    out = run(runner, PLAN + ["--deadline-days", "90", "--objective", "cost", "--top", "3"]).stdout
    assert "Question: the fewest devices that finish within 90 days" in out
    assert "Top layouts" in out and "Rejected" in out


def test_compare_with_plot(runner, tmp_path):
    png = tmp_path / "compare.png"
    args = ["compare", "-m", "llama3-8b", "-t", "1T", "--seq-len", "4096",
            "--global-batch", "1024", "--hardware", "h100-sxm,mi300x,tpu-v5p",
            "--deadline-days", "30", "--plot", str(png)]
    out = run(runner, args).stdout
    assert "h100-sxm" in out and "mi300x" in out and "tpu-v5p" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    data = json.loads(run(runner, args[:-2] + ["--format", "json"]).stdout)
    assert [d["hardware"]["name"] for d in data] == ["h100-sxm", "mi300x", "tpu-v5p"]
    for d in data:
        assert d["range"]["low"]["cost_usd"] <= d["cost"]["total_usd"] <= \
            d["range"]["high"]["cost_usd"]
    svg = tmp_path / "c.svg"
    run(runner, args[:-2] + ["--plot", str(svg)])
    assert svg.read_text().lstrip().startswith("<?xml")


PLAN_BAD = [
    (PLAN + ["--devices", "8"], 1, "does not fit on 8"),
    (PLAN + ["--deadline-days", "2", "--max-devices", "256"], 1, "the fastest takes"),
    (PLAN + ["--budget-usd", "1000"], 1, "the cheapest costs"),
    (PLAN + ["--objective", "speed"], 2, "--objective"),
    (PLAN + ["--devices", "64", "--deadline-days", "9"], 1, "one question at a time"),
    (["compare", "-m", "llama3-8b", "-H", "h100-sxm,h1000", "--devices", "8"], 1, "h100"),
    (["compare", "-m", "llama3-8b", "-H", "h100-sxm", "--devices", "8", "--plot", "x.pdf"], 1,
     ".png or .svg"),
]


@pytest.mark.parametrize("args,code,needle", PLAN_BAD, ids=[" ".join(b[0][-3:]) for b in PLAN_BAD])
def test_plan_bad_input_is_one_line(runner, args, code, needle):
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and needle in err, err


def test_kernels_flag_moves_the_elementwise_term(runner):
    # --kernels eager charges plain PyTorch's elementwise traffic (docs/performance-model.md):
    # the same layout, a slower step whose extra time is all memory-bound compute.
    base = ["estimate", "--model", "llama3.2-1b", "--hardware", "h100-sxm", "--devices", "8",
            "--tokens", "10B", "--tp", "1", "--pp", "1", "--cp", "1", "--zero", "1",
            "--micro-batch", "4", "--recompute", "none", "--seq-len", "2048",
            "--global-batch", "64", "--format", "json"]
    fused = json.loads(runner.invoke(cli, base).stdout)
    eager = json.loads(runner.invoke(cli, [*base, "--kernels", "eager"]).stdout)
    assert fused["layout"]["kernels"] == "fused" and eager["layout"]["kernels"] == "eager"
    assert eager["step"]["step_time_s"] > 1.2 * fused["step"]["step_time_s"]
    assert any(a["name"] == "kernels" and a["defaulted"] for a in fused["assumptions"])
    assert not any(a["name"] == "kernels" for a in eager["assumptions"])
    table = runner.invoke(cli, [*base[:-2], "--kernels", "eager"]).stdout
    assert "eager kernels" in table
    bad = runner.invoke(cli, [*base, "--kernels", "jit"])
    assert bad.exit_code != 0 and "--kernels" in bad.stderr and "fused" in bad.stderr
