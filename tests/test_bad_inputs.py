"""The bad-input guarantee (docs/errors.md), asserted over a corpus of hostile inputs.

For every input path (model YAML, HF config.json, a hardware profile from --profiles-dir, a
scenario for `planner run`, and each kind of flag) a bad value gives: a non-zero exit, exactly
one line on stderr starting 'error:', no traceback anywhere, the offending key or flag named
in that line, and no file left behind (finished or half written). Hostile files are generated
here in tmp_path; nothing big is committed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from planner.catalog.catalog import PRESETS_DIR, shipped_dir
from planner.catalog.yamlio import MAX_FILE_BYTES, read_yaml
from planner.cli import cli
from planner.errors import PlannerError

HF = Path(__file__).parent / "fixtures" / "hf"
LLAMA_YAML = (PRESETS_DIR / "llama3-8b.yaml").read_text()


def bomb(levels: int = 9, prefix: str = "") -> str:
    """A 'billion laughs': each anchor is nine aliases of the one before (9**9 leaves)."""
    lines = [f'{prefix}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{prefix}{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def profile(**changes) -> str:
    """The h100-sxm profile as YAML with figure values (or top-level keys) changed."""
    data = yaml.safe_load((shipped_dir("hardware_profiles") / "h100-sxm.yaml").read_text())
    data["name"] = "myhw"
    for key, value in changes.items():
        if isinstance(data.get(key), dict) and "value" in data[key]:
            data[key]["value"] = value
        else:
            data[key] = value
    return yaml.safe_dump(data, sort_keys=False)


def hf_config(**changes) -> str:
    data = json.loads((HF / "llama3-8b.json").read_text())
    data.update(changes)
    return json.dumps(data)


def scenario(**changes) -> str:
    data = {"name": "s", "title": "t", "question": "q?", "model": "llama3-8b",
            "data": {"tokens": "1T"}, "hardware": [{"hardware": "h100-sxm"}],
            "constraints": {"devices": 64}}
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


# (id, {file name: content}, argv with {dir} for tmp_path, needles that must be in the line)
FILES = [
    # -- model YAML ---------------------------------------------------------------------
    ("model-alias-bomb", {"m.yaml": LLAMA_YAML.replace("name: llama3-8b", "name: m") + bomb(
        prefix="zz_")}, ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "expands to more than"]),
    ("model-alias-bomb-only", {"m.yaml": bomb()}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "100,000"]),
    ("model-recursive-alias", {"m.yaml": "a: &x [*x]\n"}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "line 1", "recursive"]),
    ("model-too-big", {"m.yaml": LLAMA_YAML + "zz: '" + "x" * (MAX_FILE_BYTES + 10) + "'\n"},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "at most 4.0 MiB"]),
    ("model-binary", {"m.yaml": bytes(range(256)) * 8}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "not UTF-8"]),
    ("model-nul-bytes", {"m.yaml": "name: a\x00b\n"}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "not valid YAML"]),
    ("model-huge-int", {"m.yaml": LLAMA_YAML.replace("vocab_size: 128256",
                                                     "vocab_size: 1" + "0" * 400)},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "line 11", "401 digits"]),
    ("model-int-over-limit", {"m.yaml": LLAMA_YAML.replace("vocab_size: 128256",
                                                           "vocab_size: 10000000000000")},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "line 11", "vocab_size", "1000000000"]),
    ("model-duplicate-key", {"m.yaml": LLAMA_YAML + "num_layers: 3\n"},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "duplicate key 'num_layers'", "line 5"]),
    ("model-bool-int", {"m.yaml": LLAMA_YAML.replace("num_layers: 32", "num_layers: true")},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "line 5", "num_layers", "whole number"]),
    ("model-float-int", {"m.yaml": LLAMA_YAML.replace("num_layers: 32", "num_layers: 2.5")},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "num_layers"]),
    ("model-empty-name", {"m.yaml": LLAMA_YAML.replace("name: llama3-8b", 'name: ""')},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "name", "empty"]),
    ("model-unknown-key", {"m.yaml": LLAMA_YAML + "num_layerz: 3\n"},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "unknown key 'num_layerz'", "num_layers"]),
    ("model-deep-nesting", {"m.yaml": "a: " + "[" * 200 + "]" * 200 + "\n"},
     ["estimate", "-m", "{dir}/m.yaml"], ["m.yaml", "nested more than 64"]),
    ("model-empty", {"m.yaml": "# nothing\n"}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "empty"]),
    ("model-not-mapping", {"m.yaml": "- 1\n- 2\n"}, ["estimate", "-m", "{dir}/m.yaml"],
     ["m.yaml", "mapping"]),
    # -- HF config.json -----------------------------------------------------------------
    ("hf-binary", {"config.json": bytes(range(256)) * 4}, ["estimate", "-m", "{dir}/config.json"],
     ["config.json", "not UTF-8"]),
    ("hf-garbage", {"config.json": '{"model_type": "llama", '}, ["estimate", "-m",
                                                                 "{dir}/config.json"],
     ["config.json", "not valid JSON"]),
    ("hf-5000-digits", {"config.json": hf_config(vocab_size=1).replace(
        '"vocab_size": 1', '"vocab_size": ' + "9" * 5000)},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "5000 digits"]),
    ("hf-float-layers", {"config.json": hf_config(num_hidden_layers=1e30)},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "num_hidden_layers"]),
    ("hf-bool-layers", {"config.json": hf_config(num_hidden_layers=True)},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "num_hidden_layers"]),
    ("hf-huge-width", {"config.json": hf_config(hidden_size=10**20)},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "hidden_size", "1,000,000,000"]),
    ("hf-duplicate-key", {"config.json": hf_config()[:-1] + ', "num_hidden_layers": 2}'},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "duplicate key"]),
    ("hf-deep", {"config.json": "[" * 100_000 + "]" * 100_000},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "nested"]),
    ("hf-too-big", {"config.json": hf_config(pad="x" * (MAX_FILE_BYTES + 1))},
     ["estimate", "-m", "{dir}/config.json"], ["config.json", "at most 4.0 MiB"]),
    # -- hardware profile from --profiles-dir -------------------------------------------
    ("profile-alias-bomb", {"myhw.yaml": profile() + bomb(prefix="zz_")},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"], ["myhw.yaml", "expands"]),
    ("profile-binary", {"myhw.yaml": b"\xff\xfe" + bytes(range(256))},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"], ["myhw.yaml", "not UTF-8"]),
    ("profile-zero-bandwidth", {"myhw.yaml": profile(hbm_bandwidth_tb_per_s=0)},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"],
     ["myhw.yaml", "hbm_bandwidth_tb_per_s", "greater than 0"]),
    ("profile-zero-peak", {"myhw.yaml": profile(peak_dense_bf16_tflops=0)},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"],
     ["myhw.yaml", "peak_dense_bf16_tflops", "greater than 0"]),
    ("profile-zero-memory", {"myhw.yaml": profile(memory_gb=0)},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"], ["myhw.yaml", "memory_gb"]),
    ("profile-zero-scale-up", {"myhw.yaml": profile(scale_up_domain_devices=0)},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"],
     ["myhw.yaml", "scale_up_domain_devices", "whole number of devices"]),
    ("profile-fractional-node", {"myhw.yaml": profile(devices_per_node=2.5)},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"],
     ["myhw.yaml", "devices_per_node", "2.5"]),
    ("profile-infinite-tdp", {"myhw.yaml": profile(tdp_w=float("inf"))},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw", "--format", "json"],
     ["myhw.yaml", "tdp_w", "finite"]),
    ("profile-nan-peak", {"myhw.yaml": profile(peak_dense_bf16_tflops=float("nan"))},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"], ["myhw.yaml", "peak_dense_bf16"]),
    ("profile-empty-vendor", {"myhw.yaml": profile(vendor="")},
     ["estimate", "--profiles-dir", "{dir}", "-H", "myhw"], ["myhw.yaml", "vendor"]),
    # -- scenario file for `planner run` (never a report half written) -----------------
    ("scenario-alias-bomb", {"s.yaml": scenario() + bomb(prefix="zz_")},
     ["run", "{dir}/s.yaml", "--report", "{dir}/out.html"], ["s.yaml", "expands"]),
    ("scenario-binary", {"s.yaml": bytes(range(128, 256))},
     ["run", "{dir}/s.yaml", "--report", "{dir}/out.html"], ["s.yaml", "not UTF-8"]),
    ("scenario-fractional-tokens", {"s.yaml": scenario(data={"tokens": 0.5})},
     ["run", "{dir}/s.yaml", "--report", "{dir}/out.html"], ["s.yaml", "tokens"]),
    ("scenario-bool-tokens", {"s.yaml": scenario(data={"tokens": True})},
     ["run", "{dir}/s.yaml"], ["s.yaml", "tokens"]),
    ("scenario-bool-devices", {"s.yaml": scenario(constraints={"devices": True})},
     ["run", "{dir}/s.yaml"], ["s.yaml", "constraints.devices"]),
    ("scenario-empty-title", {"s.yaml": scenario(title=" ")}, ["run", "{dir}/s.yaml"],
     ["s.yaml", "title", "empty"]),
    ("scenario-duplicate-key", {"s.yaml": scenario() + "title: again\n"},
     ["run", "{dir}/s.yaml"], ["s.yaml", "duplicate key 'title'"]),
    ("scenario-inf-budget", {"s.yaml": scenario(constraints={"budget_usd": float("inf")})},
     ["run", "{dir}/s.yaml", "--format", "json"], ["s.yaml", "budget_usd"]),
    ("scenario-huge-epochs", {"s.yaml": scenario(data={"tokens": "1T", "epochs": 1e30})},
     ["run", "{dir}/s.yaml"], ["s.yaml", "data.epochs", "10000"]),
    ("scenario-epochs-past-the-token-cap", {"s.yaml": scenario(data={"tokens": "1e28",
                                                                     "epochs": 5000})},
     ["run", "{dir}/s.yaml"], ["s.yaml", "tokens x epochs", "5e+31 tokens", "1e+30"]),
]

FLAGS = [
    # counts
    (["estimate", "--tokens", "0.5"], ["--tokens", "at least 1 token"]),
    (["estimate", "--tokens", "abc"], ["--tokens", "abc"]),
    (["estimate", "--tokens", "1e400"], ["--tokens", "1e400"]),
    (["estimate", "--tokens", "-5T"], ["--tokens"]),
    (["budget", "--usd", "1e300", "--format", "json"], ["--usd", "1e+30"]),
    (["plan", "--budget-usd", "nan"], ["--budget-usd"]),
    # floats
    (["estimate", "--pue", "nan"], ["--pue", "finite"]),
    (["estimate", "--pue", "inf"], ["--pue", "finite"]),
    (["estimate", "--price-per-hour", "inf", "--format", "json"], ["--price-per-hour"]),
    (["estimate", "--price-per-hour", "0"], ["--price-per-hour"]),
    (["estimate", "--grid", "nan"], ["--grid"]),
    (["estimate", "--grid", "1e30"], ["--grid", "1e+30", "0<=x<=2000"]),
    (["plan", "--grid", "2001"], ["--grid", "0<=x<=2000"]),
    (["serve", "-m", "llama3-8b", "--grid", "1e30"], ["--grid", "0<=x<=2000"]),
    (["measure", "--no-ledger", "--grid", "1e30", "--", "true"], ["--grid", "0<=x<=2000"]),
    (["estimate", "--power-fraction", "inf"], ["--power-fraction"]),
    (["plan", "--deadline-days", "nan"], ["--deadline-days"]),
    (["budget", "--usd", "1M", "--price-per-hour", "inf"], ["--price-per-hour"]),
    (["budget", "--usd", "1M", "--deadline-days", "inf"], ["--deadline-days"]),
    (["budget", "--usd", "1M", "--tokens-per-param", "nan"], ["--tokens-per-param"]),
    (["budget", "--usd", "1M", "--goodput", "nan"], ["--goodput"]),
    # ints
    (["estimate", "--devices", "0"], ["--devices"]),
    (["estimate", "--devices", "9" * 30], ["--devices", "1000000000"]),
    (["estimate", "--layers", "10000000000"], ["--layers"]),
    (["estimate", "--seq-len", "2.5"], ["--seq-len"]),
    (["estimate", "--tp", "x"], ["--tp"]),
    # choices
    (["estimate", "--zero", "5"], ["--zero"]),
    (["estimate", "--format", "xml"], ["--format"]),
    (["estimate", "--precision", "int4"], ["--precision"]),
    # ranges
    (["estimate", "--efficiency", "nan"], ["--efficiency"]),
    (["estimate", "--efficiency", "0.5:0.4:0.3"], ["--efficiency"]),
    (["estimate", "--goodput", "inf"], ["--goodput"]),
    # bounds that keep every result finite: never nan, inf or 300-digit day counts
    (["estimate", "--efficiency", "1e-300"], ["--efficiency", "0.001<=x<=1"]),
    (["estimate", "--goodput", "1e-300"], ["--goodput", "0.001<=x<=1"]),
    (["estimate", "--storage-gb-per-s", "1e-300"], ["--storage-gb-per-s", "0.001<=x<=1000000"]),
    (["estimate", "--storage-gb-per-s", "1e-300", "--format", "json"], ["--storage-gb-per-s"]),
    (["estimate", "--epochs", "1e30"], ["--epochs", "0<x<=10000"]),
    (["estimate", "--epochs", "1000", "--tokens", "1e28"],
     ["--epochs 1000", "= 1e+31 tokens", "1e+30"]),
    (["serve", "-m", "llama3-8b", "--rate", "1e18/s"], ["--rate", "at most 1e+09/s"]),
    (["serve", "-m", "llama3-8b", "--tokens-per-day", "1e30"],
     ["--tokens-per-day", "at most 1e+18"]),
    # a recipe the model cannot have: never silently all of its layers
    (["estimate", "--finetune", "partial", "--trainable-layers", "100"],
     ["--trainable-layers 100", "llama3-8b has 32 layers", "give 0 to 32"]),
    (["plan", "-n", "8", "--finetune", "partial", "--trainable-layers", "33"],
     ["--trainable-layers 33", "give 0 to 32"]),
    # text: empty never means "the default"
    (["estimate", "--hardware", ""], ["--hardware", "empty"]),
    (["estimate", "--region", ""], ["--region", "empty"]),
    (["estimate", "--model", ""], ["--model", "empty"]),
    (["estimate", "--price-tier", " "], ["--price-tier", "empty"]),
    (["estimate", "--profiles-dir", ""], ["--profiles-dir", "empty"]),
    (["budget", "--usd", "1M", "--hardware", ""], ["--hardware", "empty"]),
    (["compare", "--hardware", "", "-n", "8"], ["--hardware"]),
    (["estimate", "--hardware", "no-such-gpu"], ["no-such-gpu"]),
]


def assert_one_line_error(result, needles, tmp_path=None, before=()):
    err, out = result.stderr, result.stdout
    assert result.exit_code not in (0, None), out
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if tmp_path is not None:  # nothing written, not even a temporary file
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


@pytest.mark.parametrize("case", FILES, ids=[c[0] for c in FILES])
def test_bad_file_is_one_line_error(runner, tmp_path, case):
    _, files, argv, needles = case
    work = tmp_path / "in"  # (tmp_path itself holds the test's parse cache)
    work.mkdir()
    for name, content in files.items():
        path = work / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    before = [p.name for p in work.iterdir()]
    args = [a.replace("{dir}", str(work)) for a in argv]
    t0 = time.perf_counter()
    result = runner.invoke(cli, args)
    elapsed = time.perf_counter() - t0
    assert_one_line_error(result, needles, work, before)
    assert elapsed < 10, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("argv,needles", FLAGS, ids=[" ".join(f[0]) for f in FLAGS])
def test_bad_flag_is_one_line_error_naming_the_flag(runner, argv, needles):
    assert_one_line_error(runner.invoke(cli, argv), needles)


def test_alias_bomb_fails_fast_with_the_cache_on_and_off(runner, tmp_path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text(bomb())
    for cache in (str(tmp_path / "cache"), ""):
        monkeypatch.setenv("PLANNER_CACHE_DIR", cache)
        t0 = time.perf_counter()
        result = runner.invoke(cli, ["estimate", "-m", str(path)])
        assert time.perf_counter() - t0 < 2
        assert_one_line_error(result, ["expands"])


def test_big_file_error_is_fast(runner, tmp_path):
    # just under the size limit, one unknown key: the line number comes from libyaml
    path = tmp_path / "m.yaml"
    padding = "x" * (MAX_FILE_BYTES - 100_000)
    path.write_text(LLAMA_YAML + f"notes_: '{padding}'\n")
    t0 = time.perf_counter()
    result = runner.invoke(cli, ["estimate", "-m", str(path)])
    assert time.perf_counter() - t0 < 5
    assert_one_line_error(result, ["unknown key 'notes_'", "line 16"])
    too_big = tmp_path / "big.yaml"
    with open(too_big, "w") as f:  # 200 MB, sparse: the stat says no before any read
        f.truncate(200 * 2**20)
    t0 = time.perf_counter()
    result = runner.invoke(cli, ["estimate", "-m", str(too_big)])
    assert time.perf_counter() - t0 < 1
    assert_one_line_error(result, ["200.0 MiB", "at most 4.0 MiB"])


def test_dense_file_under_the_size_limit_fails_fast(runner, tmp_path):
    # 2 million one-character values: counted from libyaml's events, stopped at the limit
    path = tmp_path / "m.yaml"
    path.write_text("a: [" + "1," * (MAX_FILE_BYTES // 2 - 10) + "1]\n")
    t0 = time.perf_counter()
    result = runner.invoke(cli, ["estimate", "-m", str(path)])
    assert time.perf_counter() - t0 < 5
    assert_one_line_error(result, ["m.yaml", "more than 100,000 values"])


def test_yaml_merge_keys_and_shared_anchors_still_work(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  b: 3\nsame: *b\n")
    data, _ = read_yaml(path)
    assert data == {"base": {"a": 1, "b": 2}, "other": {"a": 1, "b": 3},
                    "same": {"a": 1, "b": 2}}


def test_json_output_is_strict(runner):
    from planner.report.tabular import dumps_json

    with pytest.raises(PlannerError, match=r"'plans\[1\]\.cost' is inf"):
        dumps_json({"plans": [{"cost": 1.0}, {"cost": float("inf")}]})
    out = runner.invoke(cli, ["estimate", "--format", "json"]).stdout
    assert "Infinity" not in out and "NaN" not in out
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))


def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised():
    from planner.report.measurement import render_export
    from planner.report.tabular import render_rows

    rows = [{"label": "=HYPERLINK(\"http://x\",\"y\")", "n": -3, "t": "+1", "at": "@SUM(A1)",
             "tab": "\tx", "ok": "fine"}]
    text = render_rows(rows, list(rows[0]), "csv")
    assert "'=HYPERLINK" in text and ",-3," in text and ",'+1," in text
    assert "'@SUM" in text and "'\tx" in text and ",fine" in text
    assert not any(line.lstrip('"').startswith(("=", "+", "@")) for line in text.splitlines())
    export = render_export([{"id": "r1", "label": "=1+2", "command_line": "-rf"}], "csv")
    assert "'=1+2" in export and "'-rf" in export and "\n=" not in export


def test_markdown_escapes_html(tmp_path):
    from planner.report.tabular import render_rows

    text = render_rows([{"name": "<script>alert(1)</script> [x](javascript:y)"}], ["name"],
                       "markdown")
    assert "<script>" not in text and "&lt;script&gt;" in text and "\\[x\\]" in text


def test_report_with_hostile_title_is_text(runner, tmp_path):
    # '$...$' would be mathtext in the plot (a crash for bad TeX); '<script>' raw HTML in .md
    sc = tmp_path / "s.yaml"
    sc.write_text(scenario(title="<script>alert(1)</script> $\\frac{$ costs $5",
                           hardware=[{"hardware": "h100-sxm"}]))
    out = tmp_path / "r.html"
    md_path = tmp_path / "r.md"
    result = runner.invoke(cli, ["run", str(sc), "--report", str(out), "--report-md",
                                 str(md_path)])
    assert result.exit_code == 0, result.stderr
    md = md_path.read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "<script>" not in out.read_text()


def test_plot_treats_dollars_in_names_as_text(runner, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(LLAMA_YAML.replace("name: llama3-8b", "name: 'x$\\frac{$y'"))
    plot = tmp_path / "c.png"
    result = runner.invoke(cli, ["compare", "-m", str(model), "--hardware", "h100-sxm",
                                 "-n", "64", "--tokens", "1T", "--plot", str(plot)])
    assert result.exit_code == 0, result.stderr
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize("launch", ["console-script", "python -m planner"])
def test_ctrl_c_while_the_cli_imports_exits_130_without_a_traceback(launch):
    # Ctrl-C lands while planner.cli imports click (as a SIGINT 20-60 ms after launch does):
    # the console script pyproject.toml names, and `python -m planner`, exit 130 quietly.
    import subprocess
    import sys
    import tomllib

    root = Path(__file__).resolve().parent.parent
    target = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["planner"]
    module, attr = target.split(":")
    run = (f"from {module} import {attr}\nsys.exit({attr}())" if launch == "console-script"
           else "import runpy\nrunpy.run_module('planner', run_name='__main__')")
    code = ("import sys, importlib.abc\n"
            "class CtrlC(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'click':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, CtrlC())\nsys.argv = ['planner', 'estimate']\n" + run)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=root, timeout=60)
    assert done.returncode == 130 and done.stdout == "" and done.stderr == "", done.stderr


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    import planner.cli as cli_module

    def interrupted(self, ctx, name):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the command module imports

    monkeypatch.setattr(cli_module.PlannerGroup, "get_command", interrupted)
    monkeypatch.setattr("sys.argv", ["planner", "estimate"])
    with pytest.raises(SystemExit) as exc:
        cli_module.main()
    assert exc.value.code == 130
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == ""  # click ends the ^C line

    def cli_interrupted():
        raise KeyboardInterrupt  # outside click's main, e.g. in the group's own set-up

    monkeypatch.setattr(cli_module, "cli", cli_interrupted)
    with pytest.raises(SystemExit) as exc:
        cli_module.main()
    assert exc.value.code == 130


def _calibration_row(**changes) -> dict:
    from planner.estimators.step_time import PERF_MODEL_VERSION

    return {"hardware": "h100-sxm", "precision": "bf16", "params": 8030261248,
            "shape": "llama3-8b", "seq_len": 8192, "micro_batch_size": 1, "measured_mfu": 0.4,
            "measured_hfu": 0.4, "predicted_mfu": 0.5, "date": "2026-01-01",
            "device_name": "H100", "model_version": PERF_MODEL_VERSION, "kernels": "fused",
            **changes}


@pytest.mark.parametrize("field, value, needle", [
    ("compute_scale", 0, "compute_scale must be a number from 0.001 to 1000 (got 0)"),
    ("compute_scale", -5.0, "compute_scale must be a number from 0.001 to 1000 (got -5.0)"),
    ("compute_scale", float("nan"), "compute_scale must be a number from 0.001 to 1000"),
    ("compute_scale", 1e300, "compute_scale must be a number from 0.001 to 1000 (got 1e+300)"),
    ("measured_mfu", "0.4", "measured_mfu must be a fraction of peak in (0, 1] (got '0.4')"),
    ("predicted_mfu", 0, "predicted_mfu must be a fraction of peak in (0, 1] (got 0)"),
    ("predicted_mfu", 1e-9, "measured_mfu / predicted_mfu must be from 0.001 to 1000"),
    ("params", "8B", "params must be a whole number from 1 to"),
    ("seq_len", True, "seq_len must be a whole number"),
    ("hardware", 5, "hardware must be non-empty text (got 5)"),
    ("model_version", "4", "model_version must be a whole number"),
    ("compute_scal", 1.0, "unknown key 'compute_scal'"),
])
def test_hand_edited_calibration_is_one_line_naming_file_row_and_field(runner, field, value,
                                                                      needle):
    from planner.catalog import calibrations

    path = calibrations.default_path()
    path.write_text(json.dumps([_calibration_row(), _calibration_row(**{field: value})]))
    for argv in (["estimate"], ["calibration", "list"]):
        assert_one_line_error(runner.invoke(cli, argv),
                              [f"calibration file {path} is not valid: row 2: {needle}"])


def test_a_calibration_the_reader_would_refuse_is_never_written(tmp_path):
    from planner.catalog import calibrations

    row = calibrations.Calibration(**_calibration_row(measured_mfu=1.5))
    with pytest.raises(PlannerError, match=r"not saved: measured_mfu .* \(got 1.5\)"):
        calibrations.save(row, tmp_path / "cal.json")
    assert not (tmp_path / "cal.json").exists()


def test_deeply_nested_calibration_file_is_one_line(runner, tmp_path, monkeypatch):
    from planner.catalog import calibrations

    deep = "[" * 100_000 + "]" * 100_000
    calibrations.default_path().write_text(deep)
    nccl = tmp_path / "nccl.txt"
    nccl.write_text("# not reached\n")
    path = tmp_path / "cal.json"
    path.write_text(deep)
    for argv in (["estimate"], ["calibration", "list"],
                 ["calibration", "list", "--calibration", str(path)],
                 ["validate", "--device", "cpu", "--scale-to", "2M", "--no-energy",
                  "--calibrate", "--calibration", str(path)]):
        assert_one_line_error(runner.invoke(cli, argv),
                              ["calibration file", "is not valid: nested too deeply"])


def test_a_load_past_the_bound_is_refused_by_the_api_too():
    from planner.planning.serve import serve

    for kind, value, bound in (("rate", 1e18, "1e+09"), ("tokens_per_day", 1e30, "1e+18")):
        with pytest.raises(PlannerError, match=re.escape(f"planner sizes; give at most {bound}")):
            serve("llama3-8b", ["h100-sxm"], None, None, load=(kind, value))


def test_a_ttft_target_at_the_largest_load_is_sized_at_once(runner):
    # the replicas meeting --ttft-p50 are bisected: one at a time took minutes at 1e9/s
    t0 = time.perf_counter()
    result = runner.invoke(cli, ["serve", "-m", "llama3-8b", "--rate", "1e9/s", "--ttft-p50",
                                 "1s", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert time.perf_counter() - t0 < 10
    (opt,) = json.loads(result.stdout)["options"]
    assert opt["ttft_s"]["expected"] <= 1.0 and opt["replicas"] > 7e7


@pytest.mark.parametrize("command", ["estimate", "plan", "compare", "serve", "measure"])
def test_help_states_the_bound_the_flag_checks(runner, command):
    # --grid was [x>=0] in --help while the spec refused more than 2000
    text = " ".join(runner.invoke(cli, [command, "--help"]).stdout.split())
    assert "--grid FLOAT RANGE" in text and "[0<=x<=2000]" in text, text



def test_a_shard_group_without_zero_is_refused(runner):
    # Without ZeRO nothing is sharded and DDP all-reduces over all of dp: a --dp-shard below
    # dp had dropped the gradient all-reduce across its "replicas" (DP time 0; review)
    from planner.cli import cli
    res = runner.invoke(cli, ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64",
                              "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "0",
                              "--micro-batch", "1", "--recompute", "none", "--dp-shard", "1",
                              "--no-fit-check"])
    err = res.stderr.strip()
    assert res.exit_code == 1 and len(err.splitlines()) == 1
    assert err.startswith("error: --dp-shard 1 needs --zero 1, 2 or 3") and "dp = 32" in err
