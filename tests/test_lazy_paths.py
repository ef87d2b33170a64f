"""What `planner estimate` with every layout degree given leaves unimported (each is start-up
time; benchmarks/estimate_speed.py measures it), and the resolver's sharing of validated specs."""

import os
import subprocess
import sys

import pytest

from planner.errors import SpecError
from planner.planning.resolve import _validate
from planner.specs import Assumptions, ParallelismSpec, TrainingSpec

FULL_LAYOUT = ["estimate", "--tp", "1", "--pp", "1", "--cp", "1", "--zero", "3",
               "--micro-batch", "1", "--recompute", "selective", "--dp-shard", "64",
               "--reshard-after-forward"]  # every degree: the built-in plan's 64 devices
# numpy: only a search needs it; torch, codecarbon: only validate and measure; yaml: the parse
# cache is warm; difflib: only a mistake's "did you mean"; html: only markdown output
NOT_IMPORTED = ("numpy", "torch", "codecarbon", "yaml", "difflib", "html")


def _imported(tmp_path, argv):
    code = (f"import sys; sys.argv = ['planner', *{argv!r}]; from planner.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {NOT_IMPORTED!r} if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "PLANNER_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=120) for _ in range(2)]  # the first fills the cache
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    return runs[-1].stderr.strip().splitlines()[-1], runs[-1].stdout


def test_a_full_layout_estimate_imports_no_search_and_no_error_machinery(tmp_path):
    imported, out = _imported(tmp_path, FULL_LAYOUT)
    assert imported == "[]" and "days" in out


def test_a_searched_estimate_imports_numpy_and_nothing_else_listed(tmp_path):
    imported, out = _imported(tmp_path, ["estimate"])
    assert imported == "['numpy']" and "days" in out


def test_calibration_add_imports_neither_torch_nor_codecarbon(tmp_path, monkeypatch):
    # It reads a ledger record and runs the step-time model: no metering, no torch.
    from planner.cli import cli
    from click.testing import CliRunner

    ledger = tmp_path / "runs.sqlite"
    monkeypatch.setenv("PLANNER_LEDGER", str(ledger))
    monkeypatch.setenv("PLANNER_CALIBRATION", str(tmp_path / "cal.json"))
    r = CliRunner().invoke(cli, ["measure", "--meter", "cpu-time", "--hardware", "h100-sxm",
                                 "--devices", "16", "--", sys.executable, "-c", "pass"])
    assert r.exit_code == 0, r.stderr
    from planner.measurement.ledger import Ledger
    run_id = Ledger(ledger).runs()[-1]["id"]
    imported, _ = _imported(tmp_path, [
        "calibration", "add", run_id, "-m", "llama3-8b", "--seq-len", "128", "--global-batch",
        "16", "--tp", "2", "--pp", "1", "--cp", "1", "--zero", "1", "--micro-batch", "1",
        "--recompute", "none", "--steps", "1"])
    assert "torch" not in imported and "codecarbon" not in imported and "numpy" not in imported


def test_identical_plain_inputs_share_one_validated_spec():
    a = _validate(ParallelismSpec, {"devices": 8, "tp": 2}, "layout")
    assert _validate(ParallelismSpec, {"tp": 2, "devices": 8}, "layout") is a
    assert _validate(ParallelismSpec, {"devices": 8, "tp": 4}, "layout").tp == 4
    assert _validate(Assumptions, {}, "assumptions") is _validate(Assumptions, {}, "a")
    assert _validate(Assumptions, {}, "a") is not _validate(TrainingSpec, {
        "tokens": 1e9, "seq_len": 8, "global_batch_size": 8}, "training")


def test_a_bool_is_not_taken_for_the_number_it_equals():
    assert _validate(ParallelismSpec, {"devices": 8, "tp": 1}, "layout").tp == 1
    with pytest.raises(SpecError, match="--tp: must be a whole number, not true"):
        _validate(ParallelismSpec, {"devices": 8, "tp": True}, "layout")  # True == 1


def test_unhashable_inputs_are_validated_each_time():
    eff = {"low": 0.3, "expected": 0.4, "high": 0.5, "source": "mine"}
    a = _validate(Assumptions, {"efficiency": eff}, "assumptions")
    b = _validate(Assumptions, {"efficiency": dict(eff)}, "assumptions")
    assert a == b and a is not b
    with pytest.raises(SpecError):
        _validate(Assumptions, {"efficiency": {**eff, "low": 0.9}}, "assumptions")


@pytest.mark.parametrize("argv, paused", [(["estimate", "--tp", "1"], True),
                                          (["--version"], False), (["measure", "--", "true"], False)])
def test_the_collector_is_off_only_while_a_quick_command_imports(monkeypatch, argv, paused):
    import atexit
    import gc

    import planner.cli as cli_module

    seen, registered = [], []

    def get_command(self, ctx, name):
        seen.append(gc.isenabled())  # as the command's modules import
        raise KeyboardInterrupt  # stop here: the command itself is not the point

    monkeypatch.setattr(cli_module.PlannerGroup, "get_command", get_command)
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr("sys.argv", ["planner", *argv])
    with pytest.raises(SystemExit):
        cli_module.main()
    assert gc.isenabled()  # on again, whatever happened
    assert seen == ([] if argv == ["--version"] else [not paused])
    assert registered == ([gc.freeze] if paused else [])
