"""Link calibration: an nccl-tests output (or `validate --distributed --calibrate`) sets the
achieved fraction of a level's link rate the step-time model charges; estimates say so, and a
measured run's compute factor is fit with the measured links."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from planner.catalog import calibrations as calibration
from planner.catalog.catalog import load_hardware
from planner.cli import cli
from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.estimators.step_time import DEFAULT_PERF, flops_inputs, step_time_terms
from planner.estimators.vec import Degrees
from planner.measurement.nccl_tests import parse_nccl_tests
from planner.planning.answer import complete_row, specs_at
from planner.planning.link_calibration import link_calibration
from planner.planning.resolve import resolve

H100 = "NVIDIA H100 80GB HBM3"
HEADER = ("#       size         count      type   redop    root     time   algbw   busbw #wrong"
          "     time   algbw   busbw #wrong")


def nccl_output(busbw_gb_per_s: float, ranks: int = 16, per_node: int = 8,
                latency_us: float = 20.0, largest: int = 2**33, test: str = "all_reduce_perf",
                header: str = HEADER, root: bool = True) -> str:
    """nccl-tests' layout (nccl-tests src/common.cu: the Rank lines, the column header, one
    row per size) for an all-reduce whose time is latency + 2(n-1)/n size / busbw."""
    factor = 2 * (ranks - 1) / ranks
    lines = [f"# Collective test starting: {test}",
             "# nThread 1 nGpus 1 minBytes 8 maxBytes 8589934592 step: 2(factor) warmup "
             "iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0", "#", "# Using devices"]
    lines += [f"#  Rank {r:2d} Group  0 Pid {4000 + r:6d} on node-{r // per_node} device "
              f"{r % per_node:2d} [0000:{r:02x}:00] {H100}" for r in range(ranks)]
    lines += ["#", "#" + " " * 62 + "out-of-place                       in-place", header,
              "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)"]
    size = 8
    while size <= largest:
        t_us = latency_us + factor * size / (busbw_gb_per_s * 1e3)
        alg = size / t_us / 1e3
        r = "      -1" if root else ""
        lines.append(f"{size:12d} {size // 4:13d}     float     sum{r} {t_us:8.1f} {alg:7.2f} "
                     f"{alg * factor:7.2f}      0 {t_us:8.1f} {alg:7.2f} {alg * factor:7.2f}"
                     "      0")
        size *= 2
    return "\n".join(lines + ["# Out of bounds values : 0 OK", "# Avg bus bandwidth    : 71.2",
                              "#"]) + "\n"


def test_parse_reads_ranks_nodes_and_the_plateau():
    res = parse_nccl_tests(nccl_output(300.0), "r.txt")
    assert (res.collective, res.ranks, res.nodes, res.device_name) == \
        ("all_reduce", 16, 2, H100)
    assert res.message_bytes == res.largest_bytes == 2**33
    # at 8 GiB: busbw = 2(n-1)/n S / (20 us + 2(n-1)/n S / 300 GB/s), by hand 299.94 GB/s
    factor = 2 * 15 / 16
    expected = factor * 2**33 / (20e-6 + factor * 2**33 / 300e9) / 1e9
    assert res.bus_bandwidth_gb_per_s == pytest.approx(expected, abs=0.01)


def test_parse_takes_older_headers_and_ignores_nccl_info_lines():
    old = HEADER.replace("    root", "")  # nccl-tests before the root column
    text = nccl_output(150.0, ranks=8, header=old, root=False)
    text = text.replace("# Out of bounds", "node-0:12:12 [0] NCCL INFO comm 0x1 done\n# Out of bounds")
    res = parse_nccl_tests(text, "old.txt")
    assert (res.ranks, res.nodes) == (8, 1)
    assert res.bus_bandwidth_gb_per_s == pytest.approx(150.0, rel=1e-3)


@pytest.mark.parametrize("text, message", [
    ("hello\nworld\n", "not nccl-tests output"),
    (nccl_output(100.0).replace("#  Rank", "#  Rnak"), "names no ranks"),
    (nccl_output(100.0, test="alltoall_perf"), "is alltoall_perf output"),
    (nccl_output(100.0).replace("      0\n", "\n", 1), "r.txt:"),  # a row short of a column
])
def test_parse_refuses_what_is_not_a_usable_result(text, message):
    with pytest.raises(SpecError, match=message):
        parse_nccl_tests(text, "r.txt")


def test_scale_out_efficiency_is_busbw_over_the_nodes_nics():
    hw = load_hardware("h100-sxm")  # 8 x 400 Gb/s ConnectX-7: 50 GB/s per GPU
    cal, warnings = link_calibration(hw, 300.0, 16, 2, 2**33, "t", H100)
    assert (cal.level, cal.efficiency, cal.capped, warnings) == ("scale_out", 0.75, False, [])
    up, _ = link_calibration(hw, 380.0, 8, 1, 2**33, "t", H100)
    assert up.level == "scale_up"
    assert up.efficiency == pytest.approx(380 / 450, abs=1e-4)  # NVLink 450 GB/s one way


def test_above_the_link_rate_is_capped_and_said():
    cal, warnings = link_calibration(load_hardware("h100-sxm"), 480.0, 8, 1, 2**33, "t", H100)
    assert cal.efficiency == 1.0 and cal.capped
    assert "above the 450 GB/s link rate" in warnings[0]
    assert "capped" in cal.describe()


def test_a_slow_measurement_warns_that_the_profile_may_not_match():
    _, warnings = link_calibration(load_hardware("h100-sxm"), 100.0, 16, 2, 2**33, "t", H100)
    assert "under half the model's default" in warnings[0]


@pytest.mark.parametrize("args, message", [
    ((300.0, 16, 2, 2**20), "peaked at 1 MiB messages"),
    ((300.0, 12, 5, 2**33), "not the same number on each node"),
    ((300.0, 1, 1, 2**33), "at least 2"),
])
def test_unusable_measurements_are_refused(args, message):
    with pytest.raises(SpecError, match=message):
        link_calibration(load_hardware("h100-sxm"), *args, "t", H100)


def test_a_domain_spanning_nodes_needs_the_level():
    hw = load_hardware("gb200")  # NVL72: 72 GPUs in one NVLink domain, 4 per node
    with pytest.raises(SpecError, match="--level"):
        link_calibration(hw, 600.0, 16, 4, 2**33, "t", "B200")
    cal, _ = link_calibration(hw, 600.0, 16, 4, 2**33, "t", "B200", level="scale_up")
    assert cal.efficiency == pytest.approx(600 / hw.scale_up_bandwidth_gb_per_s_one_way.value,
                                           abs=1e-4)
    with pytest.raises(SpecError, match="--level scale_out: the run was on one node"):
        link_calibration(hw, 600.0, 4, 1, 2**33, "t", "B200", level="scale_out")


def _terms(req, devices, perf):
    train, par = specs_at(req, complete_row(req, req.fixed_degrees(), devices))
    p = count_params(req.model)
    return step_time_terms(req.model, train, Degrees.from_specs(train, par), req.hw, p,
                           flops_inputs(req.model, train, p), perf)


def test_each_level_scales_only_its_own_collectives():
    # llama3-8b on 16 H100, tp 8 inside a node, dp 2 across the two nodes
    req = resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=16,
                  seq_len=4096, global_batch_size=32, tp=8, pp=1, cp=1, ep=1, zero_stage=1,
                  micro_batch_size=1, recompute="none", virtual_stages=1)
    base = replace(DEFAULT_PERF, latency_intra_s=0.0, latency_inter_s=0.0)
    ref = _terms(req, 16, base)
    out = _terms(req, 16, replace(base, scale_out_efficiency=0.4))  # half the default
    assert out["dp_comm_total"] == pytest.approx(2 * ref["dp_comm_total"])
    assert out["tp_comm_total"] == pytest.approx(ref["tp_comm_total"])
    up = _terms(req, 16, replace(base, scale_up_efficiency=0.4))
    assert up["tp_comm_total"] == pytest.approx(2 * ref["tp_comm_total"])
    assert up["dp_comm_total"] == pytest.approx(ref["dp_comm_total"])


def test_cli_link_then_estimate_uses_and_names_it(runner, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text(nccl_output(300.0, latency_us=0.0))  # 300.00 GB/s at every size
    result = runner.invoke(cli, ["calibration", "link", str(path), "-H", "h100-sxm"])
    assert result.exit_code == 0, result.stderr
    assert "0.75 of the link rate across domains" in result.stderr
    listed = json.loads(runner.invoke(cli, ["calibration", "list", "--format", "json"]).stdout)
    assert listed == [{**listed[0], "kind": "link", "level": "scale_out", "efficiency": 0.75}]
    args = ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64", "--tokens", "1T",
            "--format", "json"]
    est = json.loads(runner.invoke(cli, args).stdout)
    notes = {a["name"]: a for a in est["assumptions"]}
    assert notes["link_calibration.scale_out"]["value"] == 0.75
    assert "results.txt: 16 ranks on 2 nodes" in notes["link_calibration.scale_out"]["source"]
    assert notes["perf.scale_out_efficiency"]["value"] == 0.75
    assert notes["perf.scale_up_efficiency"]["value"] == DEFAULT_PERF.scale_up_efficiency
    assert est["step"]["method"] == "calibrated performance model"
    # other hardware is untouched
    other = json.loads(runner.invoke(cli, [*args[:3], "-H", "h200", *args[5:]]).stdout)
    assert "link_calibration.scale_out" not in {a["name"] for a in other["assumptions"]}
    assert runner.invoke(cli, ["calibration", "clear"]).exit_code == 0
    assert calibration.load_links() == []


def test_cli_link_errors_are_one_line(runner, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text(nccl_output(300.0, largest=2**20))
    result = runner.invoke(cli, ["calibration", "link", str(path), "-H", "h100-sxm"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "peaked at 1 MiB messages" in result.stderr
    result = runner.invoke(cli, ["calibration", "link", str(path), "-H", "h100-sx"])
    assert result.exit_code != 0 and "h100-sxm" in result.stderr  # the nearest name
    result = runner.invoke(cli, ["calibration", "link", str(tmp_path / "none.txt"), "-H",
                                 "h100-sxm"])
    assert result.exit_code != 0 and "cannot read" in result.stderr


def test_links_and_compute_calibrations_share_the_file():
    cal = calibration.Calibration(
        hardware="h100-sxm", precision="bf16", params=8_000_000_000, shape="x", seq_len=4096,
        micro_batch_size=1, measured_mfu=0.4, measured_hfu=0.4, predicted_mfu=0.5,
        date="2026-12-01", device_name=H100, model_version=None)
    calibration.save(cal)
    link, _ = link_calibration(load_hardware("h100-sxm"), 300.0, 16, 2, 2**33, "t", H100)
    calibration.save(link)
    calibration.save(replace(link, efficiency=0.7))  # replaces the same hardware and level
    assert calibration.load() == [cal]
    assert [c.efficiency for c in calibration.load_links()] == [0.7]
    assert calibration.clear(hardware="h100-sxm") == 2


def test_a_run_calibration_is_fit_with_the_measured_links():
    from planner.planning.calibrate import calibrate_from_run

    req = resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=16,
                  seq_len=4096, global_batch_size=32, tp=2, pp=1, cp=1, ep=1, zero_stage=1,
                  micro_batch_size=1, recompute="none", virtual_stages=1)
    slow_net = replace(DEFAULT_PERF, scale_out_efficiency=0.3)
    from planner.estimators.step_time import step_seconds

    measured = float(step_seconds(_terms(req, 16, slow_net)))  # compute as modelled
    assert calibrate_from_run(req, 16, measured).compute_scale < 0.99  # read as slow compute
    link, _ = link_calibration(load_hardware("h100-sxm"), 0.3 * 400, 16, 2, 2**33, "t", H100)
    calibration.save(link)
    assert calibrate_from_run(req, 16, measured).compute_scale == pytest.approx(1.0, rel=1e-6)


def test_a_run_calibration_fit_before_the_links_says_to_refit(runner):
    from planner.estimators.step_time import PERF_MODEL_VERSION

    calibration.save(calibration.Calibration(
        hardware="h100-sxm", precision="bf16", params=8_030_261_248, shape="run",
        seq_len=4096, micro_batch_size=1, measured_mfu=0.4, measured_hfu=0.4,
        predicted_mfu=0.5, date="2026-12-01", device_name=H100,
        model_version=PERF_MODEL_VERSION, compute_scale=0.8, source="planner measure run x"))
    args = ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64", "--tokens", "1T",
            "--format", "json"]

    def note():
        est = json.loads(runner.invoke(cli, args).stdout)
        return {a["name"]: a for a in est["assumptions"]}["calibration"]["source"]

    assert "re-run `planner calibration add`" not in note()
    link, _ = link_calibration(load_hardware("h100-sxm"), 300.0, 16, 2, 2**33, "t", H100)
    calibration.save(link)
    assert "fit with the default links and the links are now scale_out 0.75" in note()


def test_validate_distributed_calibrate_stores_the_ranks_link(tmp_path):
    # The GPU run itself needs NCCL (docs/validation); what rank 0 does with its measurement
    # is checked here on a result as run_distributed returns it.
    from planner.cli.validate import _calibrate_link
    from planner.profiling.distributed import LINK_MESSAGE_BYTES, DistributedResult

    out = DistributedResult([], "ddp", 8, 300e9, "cuda:0", 1, H100, 360e9, LINK_MESSAGE_BYTES)
    _calibrate_link(out, None, None)  # the profile from the device name
    (link,) = calibration.load_links()
    assert (link.hardware, link.level, link.ranks, link.nodes) == ("h100-sxm", "scale_up", 8, 1)
    assert link.efficiency == pytest.approx(360 / 450)
    assert link.source == "planner validate --distributed (ddp)"


def test_validate_distributed_calibrate_refuses_a_cpu(runner):
    pytest.importorskip("torch")
    result = runner.invoke(cli, ["validate", "--distributed", "--calibrate", "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "gloo on a CPU measures no accelerator link" in result.stderr
