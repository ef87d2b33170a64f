"""A calibration from a run `planner measure` recorded (`planner calibration add`): the compute
factor that reproduces the run's step time keeps the model's communication and bubble."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from planner.catalog import calibrations as calibration
from planner.cli import cli
from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    DEFAULT_PERF, calibrated, flops_inputs, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning.answer import complete_row, specs_at
from planner.planning.calibrate import calibrate_from_run
from planner.planning.resolve import resolve

PY = sys.executable
# llama3-8b on 16 H100 (two nodes), tp 2: TP and DP communication the compute cannot hide all of
LAYOUT = dict(seq_len=4096, global_batch_size=32, tp=2, pp=1, cp=1, ep=1, zero_stage=1,
              micro_batch_size=1, recompute="none", virtual_stages=1)


@pytest.fixture(autouse=True)
def ledger_env(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("PLANNER_LEDGER", str(path))
    return path


def _request(**kw):
    return resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=16,
                   **{**LAYOUT, **kw})


def _model_step(req, devices: int, scale: float) -> tuple[float, dict]:
    """The model's step time and terms for the request's layout at ``scale`` x compute."""
    train, par = specs_at(req, complete_row(req, req.fixed_degrees(), devices))
    p = count_params(req.model)
    terms = step_time_terms(req.model, train, Degrees.from_specs(train, par), req.hw, p,
                            flops_inputs(req.model, train, p), calibrated(DEFAULT_PERF, scale))
    return float(step_seconds(terms)), terms


def test_the_factor_reproduces_the_measured_step_and_keeps_the_layout_terms():
    req = _request()
    measured, terms = _model_step(req, 16, 0.7)  # a run whose compute is 0.7x the model's
    assert terms["tp_comm"] > 0.02 * measured  # communication is part of the step
    rc = calibrate_from_run(req, 16, measured)
    assert rc.compute_scale == pytest.approx(0.7, rel=1e-6)
    predicted, _ = _model_step(req, 16, 1.0)
    assert rc.predicted_step_s == pytest.approx(predicted)
    # A flat ratio of step times would also slow the communication down: not what is stored.
    assert predicted / measured > 0.7 + 0.01
    assert rc.measured_mfu == pytest.approx(rc.predicted_mfu * predicted / measured)


def test_a_searched_layout_or_an_impossible_step_is_refused():
    req = resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=16, tp=2)
    with pytest.raises(SpecError, match="run's own layout.*--pp.*--micro-batch"):
        calibrate_from_run(req, 16, 1.0)
    req = _request()
    with pytest.raises(SpecError, match="faster than the model"):
        calibrate_from_run(req, 16, 1e-6)
    with pytest.raises(SpecError, match="positive"):
        calibrate_from_run(req, 16, float("nan"))


def test_an_older_calibration_file_still_reads():
    # Files written before compute_scale existed: the factor is measured / predicted MFU.
    old = calibration.Calibration(
        hardware="h100-sxm", precision="bf16", params=1, shape="x", seq_len=1,
        micro_batch_size=1, measured_mfu=0.3, measured_hfu=0.3, predicted_mfu=0.4,
        date="2026-11-23", device_name="H100")
    assert old.scale == pytest.approx(0.75) and old.source is None


def _measure(runner, seconds: float, code: int = 0) -> str:
    result = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "16", "--", PY, "-c",
                                 f"import sys, time; time.sleep({seconds}); sys.exit({code})"])
    assert result.exit_code == code, result.stderr
    runs = json.loads(runner.invoke(cli, ["runs", "list", "--format", "json"]).stdout)
    return runs[-1]["id"]


FLAGS = ["-m", "llama3-8b", "--seq-len", "1024", "--global-batch", "16", "--tp", "2", "--pp",
         "1", "--cp", "1", "--zero", "1", "--micro-batch", "1", "--recompute", "none"]


def test_calibration_add_from_a_measured_run_then_estimates_use_it(runner):
    req = _request(seq_len=1024, global_batch_size=16)
    step, _ = _model_step(req, 16, 0.5)
    steps = 2
    run_id = _measure(runner, steps * step + 0.2)
    duration = json.loads(runner.invoke(cli, ["runs", "show", run_id, "--format", "json"])
                          .stdout)["duration_s"]
    exclude = duration - steps * step  # leave exactly the model's 0.5x step time per step
    assert exclude > 0
    result = runner.invoke(cli, ["calibration", "add", run_id, *FLAGS, "--steps", str(steps),
                                 "--exclude-seconds", f"{exclude:.9f}"])
    assert result.exit_code == 0, result.stderr
    assert "compute x0.500" in result.stderr
    (cal,) = calibration.load()
    assert cal.compute_scale == pytest.approx(0.5, rel=1e-4)
    assert cal.source.startswith(f"planner measure run {run_id}, 16 devices, 2 steps")
    listed = runner.invoke(cli, ["calibration", "list", "--format", "json"]).stdout
    assert json.loads(listed)[0]["scale"] == pytest.approx(0.5, rel=1e-4)
    est = runner.invoke(cli, ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64",
                              "--tokens", "1T", "--format", "json"])
    notes = {a["name"]: a for a in json.loads(est.stdout)["assumptions"]}
    assert notes["calibration"]["value"] == pytest.approx(0.5, rel=1e-3)
    assert "reproduces that run's measured step time" in notes["calibration"]["source"]
    assert json.loads(est.stdout)["step"]["method"] == "calibrated performance model"
    # the run's attention kernel is stored; an estimate with another one says the factor is
    # applied under that kernel's own speed (a FlashAttention-2 run's slowdown counted twice)
    assert cal.attention_kernel == "native" and "native attention kernel" in cal.describe()
    assert "attention kernel" not in notes["calibration"]["source"].split(cal.describe())[1]
    fa2 = runner.invoke(cli, ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64",
                              "--tokens", "1T", "--attention-kernel", "fa2", "--format", "json"])
    note = {a["name"]: a for a in json.loads(fa2.stdout)["assumptions"]}["calibration"]
    assert "fit as native attention and this estimate uses fa2" in note["source"]


def test_calibration_add_refuses_a_failed_run_and_a_missing_layout(runner):
    failed = _measure(runner, 0, code=3)
    result = runner.invoke(cli, ["calibration", "add", failed, *FLAGS, "--steps", "4"])
    assert result.exit_code != 0 and "did not finish cleanly (exit code 3" in result.stderr
    ok = _measure(runner, 0)
    result = runner.invoke(cli, ["calibration", "add", ok, "-m", "llama3-8b", "--seq-len",
                                 "1024", "--global-batch", "16", "--tp", "2", "--steps", "4"])
    assert result.exit_code != 0 and "--micro-batch" in result.stderr
    assert "Traceback" not in result.stderr
    # what the run trained is never defaulted: no model, sequence or batch, no calibration
    result = runner.invoke(cli, ["calibration", "add", ok, "--tp", "2", "--steps", "4"])
    assert result.exit_code != 0
    assert "--model, --seq-len, --global-batch" in result.stderr
    result = runner.invoke(cli, ["calibration", "add", ok, *FLAGS, "--steps", "2.5"])
    assert result.exit_code != 0 and "whole number" in result.stderr
    # a layout the estimate refuses is refused here too (the estimate's one line)
    bad = [f if f != "16" else "15" for f in FLAGS]
    result = runner.invoke(cli, ["calibration", "add", ok, *bad, "--steps", "4"])
    assert result.exit_code != 0 and "multiple of" in result.stderr
    assert "Traceback" not in result.stderr
    result = runner.invoke(cli, ["calibration", "add", ok, *FLAGS, "--steps", "4",
                                 "--exclude-seconds", "1e6"])
    assert result.exit_code != 0 and "--exclude-seconds" in result.stderr
    assert calibration.load() == []


def test_an_implausible_factor_is_stored_with_a_warning(runner):
    # A 3-second `sleep` read as two steps of llama3-8b: compute far below any kernel's speed.
    run_id = _measure(runner, 3)
    result = runner.invoke(cli, ["calibration", "add", run_id, *FLAGS, "--steps", "2"])
    assert result.exit_code == 0, result.stderr
    assert "warning: compute x0.0" in result.stderr and "calibration clear" in result.stderr
    (cal,) = calibration.load()
    assert cal.compute_scale < 0.3 and "MFU" in cal.describe()


def test_the_search_reaches_the_hardwares_own_gemm_peak():
    # The GEMM cap is on the hardware's scaled efficiency (0.74 x its profile's expected /
    # A100's), so on a V100 a run at 2x the model's compute is reachable and plausible.
    req = resolve("llama3.2-1b", "v100", "1B", use_calibration=False, devices=8,
                  **{**LAYOUT, "precision": "fp16", "seq_len": 2048, "global_batch_size": 16})
    measured, _ = _model_step(req, 8, 2.0)
    rc = calibrate_from_run(req, 8, measured)
    assert rc.compute_scale == pytest.approx(2.0, rel=1e-6) and rc.plausible


def test_a_run_measured_with_its_training_flags_calibrates_without_them(runner):
    # `planner measure` records the run's model, steps and layout; `calibration add RUN_ID`
    # takes them from the record, and flags given on its command line win.
    req = _request(seq_len=1024, global_batch_size=16)
    step, _ = _model_step(req, 16, 0.5)
    result = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "16", *FLAGS, "--steps", "2", "--", PY, "-c",
                                 f"import time; time.sleep({2 * step + 0.2})"])
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(runner.invoke(cli, ["runs", "list", "--format", "json"]).stdout)[-1]["id"]
    shown = json.loads(runner.invoke(cli, ["runs", "show", run_id, "--format", "json"]).stdout)
    assert shown["training"] == {"model": "llama3-8b", "steps": 2, "seq_len": 1024,
                                 "global_batch": 16, "micro_batch": 1, "recompute": "none",
                                 "tp": 2, "pp": 1, "cp": 1, "zero": "1"}
    exclude = shown["duration_s"] - 2 * step
    result = runner.invoke(cli, ["calibration", "add", run_id, "--exclude-seconds",
                                 f"{exclude:.9f}"])
    assert result.exit_code == 0, result.stderr
    assert "from the run's record: --cp, --global-batch, --micro-batch, --model" in result.stderr
    (cal,) = calibration.load()
    assert cal.compute_scale == pytest.approx(0.5, rel=1e-4)
    # a flag given wins over the record: one step in the same time is twice as slow
    result = runner.invoke(cli, ["calibration", "add", run_id, "--steps", "1",
                                 "--exclude-seconds", f"{exclude:.9f}"])
    assert result.exit_code == 0, result.stderr
    (cal,) = calibration.load()
    assert cal.compute_scale < 0.5 * 0.6


def _measured_with(runner, *flags, seconds: float = 0.0) -> str:
    result = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "16", *flags, "--", PY, "-c",
                                 f"import time; time.sleep({seconds})"])
    assert result.exit_code == 0, result.stderr
    return json.loads(runner.invoke(cli, ["runs", "list", "--format", "json"]).stdout)[-1]["id"]


def test_steps_come_from_tokens_over_the_batch_as_given(runner):
    base = ["-m", "llama3-8b", "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "1",
            "--micro-batch", "1", "--recompute", "none"]
    run_id = _measured_with(runner, *base, "--tokens", "32768", "--seq-len", "1024",
                            "--global-batch", "16", seconds=1.0)
    # recorded: 32768 / (1024 x 16) = 2 steps
    result = runner.invoke(cli, ["calibration", "add", run_id])
    assert result.exit_code == 0, result.stderr
    assert "--tokens" in result.stderr.splitlines()[0] and "2 steps" in result.stderr
    # a given batch changes the steps the recorded tokens make: 32768 / (1024 x 32) = 1
    result = runner.invoke(cli, ["calibration", "add", run_id, "--global-batch", "32"])
    assert result.exit_code == 0 and "1 steps" in result.stderr, result.stderr
    assert "--global-batch" not in result.stderr.splitlines()[0]  # given, not recorded
    result = runner.invoke(cli, ["calibration", "add", run_id, "--seq-len", "3000"])
    assert result.exit_code != 0 and "is 0.682667 steps, not a whole number" in result.stderr
    result = runner.invoke(cli, ["calibration", "add", run_id, "--tokens", "65536"])
    assert result.exit_code == 0 and "4 steps" in result.stderr, result.stderr


def test_calibration_add_says_what_is_missing_and_refuses_a_bad_record(runner):
    run_id = _measured_with(runner, "--seq-len", "1024")
    result = runner.invoke(cli, ["calibration", "add", run_id])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "--model, --global-batch, --steps (or record them with `planner measure`)" in \
        result.stderr
    import sqlite3

    from planner.measurement.ledger import Ledger, ledger_path

    path = ledger_path(None)
    rec = Ledger(path).get(run_id)
    for bad, message in (([1, 2], "not a mapping"), ({"tp": "x"}, "recorded --tp 'x'"),
                         ({"foo": 1}, "unknown training flag 'foo'"),
                         ({"layers": 3}, "unknown training flag 'layers'"),
                         ({"tp": [1]}, "recorded --tp [1]: expected a int"),
                         ({"tp": 2.9}, "recorded --tp 2.9"),  # never truncated to 2
                         ({"micro_batch": True}, "recorded --micro-batch True"),
                         ({"zero": 1}, "recorded --zero 1: expected a str"),
                         ({"steps": "2"}, "recorded --steps '2': expected a number")):
        db = sqlite3.connect(path)  # a hand-edited or foreign record
        with db:
            db.execute("UPDATE runs SET record_json = ? WHERE id = ?",
                       (json.dumps({**rec, "training": bad}), run_id))
        db.close()
        result = runner.invoke(cli, ["calibration", "add", run_id, *FLAGS, "--steps", "2"])
        assert result.exit_code != 0 and "Traceback" not in result.stderr
        assert message in result.stderr, result.stderr


def test_measure_checks_the_recorded_layout_before_the_command_runs(runner, tmp_path,
                                                                    monkeypatch):
    marker = tmp_path / "ran"
    result = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "16", "-m", "llama3-8b", "--tp", "3", "--pp", "1",
                                 "--cp", "1", "--zero", "1", "--micro-batch", "1",
                                 "--recompute", "none", "--seq-len", "1024", "--global-batch",
                                 "16", "--", PY, "-c", f"open({str(marker)!r}, 'w')"])
    assert result.exit_code != 0 and not marker.exists()
    assert "--devices 16 is not divisible by --tp x --pp x --cp" in result.stderr
    # a model file is recorded by its absolute path, so calibration add finds it from anywhere
    (tmp_path / "m.yaml").write_text((Path(__file__).parent.parent / "planner" / "data" /
                                      "models" / "llama3-8b.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    run_id = _measured_with(runner, "-m", "m.yaml", "--seq-len", "1024", "--global-batch", "16",
                            "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "1",
                            "--micro-batch", "1", "--recompute", "none", "--steps", "2",
                            seconds=1.0)
    shown = json.loads(runner.invoke(cli, ["runs", "show", run_id, "--format", "json"]).stdout)
    assert shown["training"]["model"] == str(tmp_path / "m.yaml")
    monkeypatch.chdir(tmp_path.parent)  # and calibration add finds it from elsewhere
    result = runner.invoke(cli, ["calibration", "add", run_id])
    assert result.exit_code == 0, result.stderr
    assert "--model" in result.stderr.splitlines()[0] and "--steps" in result.stderr


def test_a_job_node_records_its_layout_unchecked_by_the_nodes_devices(runner, monkeypatch):
    # in a 2-node job --devices are this node's 8: tp 8 x pp 2 spans both, and is not refused
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_NODEID", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    result = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "8", "-m", "llama3-8b", "--seq-len", "4096",
                                 "--global-batch", "32", "--tp", "8", "--pp", "2", "--cp", "1",
                                 "--zero", "1", "--micro-batch", "1", "--recompute", "none",
                                 "--", PY, "-c", "0"])
    assert result.exit_code == 0, result.stderr


def test_one_nodes_record_of_a_job_needs_the_jobs_devices():
    from planner.planning.calibrate import measured_run

    record = {"id": "r1", "complete": True, "exit_code": 0, "duration_s": 10.0,
              "started_at": "2026-12-01T00:00:00", "cost": {"hardware": "h100-sxm", "devices": 8},
              "job": {"id": "J1", "num_nodes": 2, "world_size": 16}}
    with pytest.raises(SpecError, match="one node's record of job J1 .*give --devices"):
        measured_run(record, None, None, 0.0)
    assert measured_run(record, None, 16, 0.0).devices == 16


@pytest.mark.parametrize("field, value", [("attention_kernel", "fa3"), ("kernels", 7)])
def test_a_hand_edited_calibration_with_an_unknown_kernel_is_refused(tmp_path, field, value):
    path = tmp_path / "calibrations.json"
    row = dict(hardware="h100-sxm", precision="bf16", params=1, shape="x", seq_len=1,
               micro_batch_size=1, measured_mfu=0.3, measured_hfu=0.3, predicted_mfu=0.4,
               date="2026-11-23", device_name="H100", **{field: value})
    path.write_text(json.dumps([row]))
    with pytest.raises(SpecError, match=f"calibration file .* is not valid.*{field}"):
        calibration.load(path)
    del row[field]  # a file from before the field: still read
    path.write_text(json.dumps([row]))
    assert calibration.load(path)[0].attention_kernel is None
