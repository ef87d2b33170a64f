"""Link calibration: an nccl-tests output (or `validate --distributed --calibrate`) sets the
achieved fraction of a level's link rate the step-time model charges; estimates say so, and a
measured run's compute factor is fit with the measured links."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

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
from planner.estimators.data_parallel import collective_seconds, group_link
from planner.planning.link_calibration import link_calibration, plateau
from planner.planning.resolve import resolve

H100 = "NVIDIA H100 80GB HBM3"
HW_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"
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


def test_parse_reads_ranks_hosts_and_rows():
    res = parse_nccl_tests(nccl_output(300.0), "r.txt")
    assert (res.collective, res.ranks_per_host, res.ranks, res.nodes, res.device_name) == \
        ("all_reduce", (8, 8), 16, 2, H100)
    size, busbw = plateau(res.rows, "r.txt")
    assert size == 2**33
    # at 8 GiB: busbw = 2(n-1)/n S / (20 us + 2(n-1)/n S / 300 GB/s), by hand 299.94 GB/s
    factor = 2 * 15 / 16
    expected = factor * 2**33 / (20e-6 + factor * 2**33 / 300e9) / 1e9
    assert busbw == pytest.approx(expected, abs=0.01)


def _rccl(text: str) -> str:
    """rccl-tests (and nccl-tests before 2022-09) print no Group in their Rank lines."""
    return re.sub(r"Group\s+\d+\s+", "", text)


def test_parse_takes_the_formats_launchers_and_logs_produce():
    old = HEADER.replace("    root", "")  # nccl-tests before the root column
    base = nccl_output(150.0, ranks=8, header=old, root=False)
    logged = base.replace("# Out of bounds", "10-0-3-7:2345:2401 [0] NCCL INFO comm 0x1 done\n"
                          "# Out of bounds")  # a host name starting with a digit
    for text in (base, _rccl(base), logged,
                 "".join(f"0: {line}\n" for line in base.splitlines()),  # srun --label
                 "".join(f"[1,0]<stdout>:{line}\n" for line in base.splitlines())):
        res = parse_nccl_tests(text, "old.txt")
        assert (res.ranks_per_host, res.collective) == ((8,), "all_reduce")
        assert plateau(res.rows, "t")[1] == pytest.approx(150.0, rel=1e-3)
    stamped = nccl_output(150.0, ranks=8).replace("#wrong\n", "#wrong  timestamp\n", 1)
    stamped = "".join(line + (" 2025-11-02 10:11:12" if line.strip()[:1].isdigit() else "")
                      + "\n" for line in stamped.splitlines())  # -S 1: a date and a time
    assert plateau(parse_nccl_tests(stamped, "s.txt").rows, "t")[1] == \
        pytest.approx(150.0, rel=1e-3)
    mpi = base.replace("all_reduce_perf", "all_reduce_perf_mpi")
    assert parse_nccl_tests(mpi, "m.txt").collective == "all_reduce"


def test_parse_counts_uneven_hosts():
    text = nccl_output(100.0, ranks=16).replace("on node-1 device  0", "on node-0 device  0")
    assert parse_nccl_tests(text, "u.txt").ranks_per_host == (9, 7)


@pytest.mark.parametrize("text, message", [
    ("hello\nworld\n", "not nccl-tests output"),
    (nccl_output(100.0).replace("#  Rank", "#  Rnak"), "names no ranks"),
    (nccl_output(100.0, test="alltoall_perf"), "is alltoall_perf output"),
    (nccl_output(100.0).replace("      0\n", "\n", 1), "r.txt:"),  # a row short of a column
    (nccl_output(100.0, ranks=8) + nccl_output(90.0), "holds 2 runs"),
    (nccl_output(100.0) + "# Collective test starting: alltoall_perf\n", "give one run"),
    (nccl_output(100.0).replace("Rank  5 Group  0", "Rank  5 Group  1"),
     "separate groups"),  # NCCL_TESTS_SPLIT
])
def test_parse_refuses_what_is_not_one_usable_run(text, message):
    with pytest.raises(SpecError, match=message):
        parse_nccl_tests(text, "r.txt")


def test_the_plateau_is_the_best_large_message():
    rows = ((2**20, 500.0), (2**27, 320.0), (2**28, 330.0), (2**33, 310.0))  # a tree's hump
    assert plateau(rows, "t") == (2**28, 330.0)
    with pytest.raises(SpecError, match="largest message is 128 MiB"):
        plateau(rows[:2], "t")


def model_busbw(hw, perf, per_host, size, collective="all_reduce"):
    """The bus bandwidth the step-time model's own collective gives for this run."""
    ranks, k, domain = sum(per_host), per_host[0], int(hw.scale_up_domain_devices.value)
    one_domain = len(per_host) == 1 or domain > hw.devices_per_node.value
    stride = 1 if one_domain else domain // k
    up = hw.scale_up_bandwidth_gb_per_s_one_way.value * 1e9 * perf.scale_up_efficiency
    out = hw.scale_out_bandwidth_gb_per_s.value * 1e9 * perf.scale_out_efficiency
    bw, lat = group_link(stride, ranks, domain, up, out, perf.latency_intra_s,
                         perf.latency_inter_s)
    mult = 2 if collective == "all_reduce" else 1
    factor, hops = mult * (ranks - 1) / ranks, mult * (ranks - 1)
    return factor * size / collective_seconds(size, factor, ranks, bw, lat, hops) / 1e9


def _runs(hw):
    """Runs the model can represent on this profile: one node (or one domain), and for
    profiles whose nodes each hold a domain, 2 and 16 nodes at each divisor of the domain."""
    domain, node = int(hw.scale_up_domain_devices.value), int(hw.devices_per_node.value)
    if domain > node:  # a domain spans nodes: a run inside one domain, said with --level
        yield (node,) * min(4, domain // node), "scale_up"
        return
    if domain > 1:
        yield (domain,), None
    for nodes in (2, 16):
        for k in (d for d in range(1, domain + 1) if domain % d == 0):
            yield (k,) * nodes, None


@pytest.mark.parametrize("profile", sorted(p.stem for p in HW_DIR.glob("*.yaml")))
def test_the_stored_efficiency_reproduces_the_measured_run_in_the_model(profile):
    hw = load_hardware(profile)
    truth = replace(DEFAULT_PERF, scale_up_efficiency=0.7, scale_out_efficiency=0.6)
    checked = 0
    for per_host, level in _runs(hw):
        for collective in ("all_reduce", "all_gather"):
            busbw = model_busbw(hw, truth, per_host, 2**30, collective)
            try:
                cal, _ = link_calibration(hw, collective, per_host, 2**30, busbw, "t", "gpu",
                                          level, replace(DEFAULT_PERF, scale_up_efficiency=0.7))
            except SpecError as e:  # only the scale-up cap may refuse a representable run
                assert "caps that group" in str(e), (per_host, str(e))
                continue
            want = truth.scale_up_efficiency if cal.level == "scale_up" else \
                truth.scale_out_efficiency
            assert cal.efficiency == pytest.approx(want, abs=1e-5), (per_host, collective)
            stored = replace(truth, **{f"{cal.level}_efficiency": cal.efficiency})
            assert model_busbw(hw, stored, per_host, 2**30, collective) == \
                pytest.approx(busbw, rel=1e-4)
            checked += 1
    assert checked >= 2


def test_scale_out_efficiency_is_busbw_over_the_nodes_nics():
    hw = load_hardware("h100-sxm")  # 8 x 400 Gb/s ConnectX-7: 50 GB/s per GPU
    # 16 ranks at 8 GiB, 300 GB/s: t = 1.875 x 8 GiB / 300 GB/s = 53.69 ms, less the model's
    # 30 hops x 15 us = 0.45 ms: 303.69 GB/s over 8 x 50 GB/s
    cal, warnings = link_calibration(hw, "all_reduce", (8, 8), 2**33, 300.0, "t", H100)
    t = 1.875 * 2**33 / 300e9
    assert cal.level == "scale_out" and not cal.capped and warnings == []
    assert cal.efficiency == pytest.approx(1.875 * 2**33 / (t - 30 * 15e-6) / 400e9, abs=1e-6)
    up, _ = link_calibration(hw, "all_reduce", (8,), 2**33, 380.0, "t", H100)
    t = 1.75 * 2**33 / 380e9
    assert up.level == "scale_up"  # NVLink 450 GB/s one way, 14 hops x 5 us
    assert up.efficiency == pytest.approx(1.75 * 2**33 / (t - 14 * 5e-6) / 450e9, abs=1e-6)


def test_above_the_link_rate_is_capped_and_said():
    cal, warnings = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8,), 2**33,
                                     480.0, "t", H100)
    assert cal.efficiency == 1.0 and cal.capped
    assert "above the 450 GB/s link rate" in warnings[0]
    assert "capped" in cal.describe()


def test_warnings_for_a_slow_run_and_an_unnamed_test():
    _, warnings = link_calibration(load_hardware("h100-sxm"), None, (8, 8), 2**33, 100.0,
                                   "t", H100)
    assert "does not name its test; read as all_reduce_perf" in warnings[0]
    assert "under half the model's default" in warnings[1]


@pytest.mark.parametrize("profile, per_host, level, message", [
    ("h100-sxm", (12, 4), None, "12/4 ranks on its 2 nodes"),
    ("h100-sxm", (1,), None, "at least 2"),
    ("h100-sxm", (3, 3), None, "as 8 // stride"),
    ("h100-sxm", (8, 8), "scale_up", "across scale-up domains"),
    ("h100-sxm", (8,), "scale_out", "was on one node"),
    ("l4", (8,), None, "no scale-up link between its devices"),  # PCIe: domain 1
    ("l4", (8, 8), None, "as 1 // stride"),
    ("mi250x", (8,), None, "more than mi250x's 4 devices per node"),  # rccl ranks are GCDs
    ("h100-nvl", (8,), None, "no level between domains inside a node"),  # NVLink pairs
    ("gb200", (4, 4, 4, 4), None, "--level scale_up"),  # NVL72 spans 18 nodes
    ("gb200", (4,) * 36, "scale_up", "span scale-up domains of 72"),
])
def test_runs_the_model_cannot_represent_are_refused(profile, per_host, level, message):
    hw = load_hardware(profile)
    with pytest.raises(SpecError, match=re.escape(message)):
        link_calibration(hw, "all_reduce", per_host, 2**33, 300.0, "t", H100, level)


def test_a_group_the_scale_up_cap_hides_is_refused():
    # 8 ranks per node on 2 B300 nodes (8 x 100 GB/s of NICs): 750 GB/s is past NVLink 900 x 0.8
    with pytest.raises(SpecError, match="caps that group"):
        link_calibration(load_hardware("b300"), "all_reduce", (8, 8), 2**33, 750.0, "t", "B300")


def test_latency_bound_measurements_are_refused():
    # 256 ranks at 256 MiB: the model's 510 hops x 15 us = 7.7 ms leave 19 ms of a 20 GB/s
    # all-reduce's 26.7 ms to bandwidth, but more than all of a 400 GB/s one's 1.3 ms
    cal, _ = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8,) * 32, 2**28, 20.0,
                              "t", H100)
    assert cal.efficiency == pytest.approx(
        1.9921875 * 2**28 / (1.9921875 * 2**28 / 20e9 - 510 * 15e-6) / 400e9, abs=1e-6)
    with pytest.raises(SpecError, match="latency"):
        link_calibration(load_hardware("h100-sxm"), "all_reduce", (8,) * 32, 2**28, 400.0, "t",
                         H100)


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
    want = 1.875 * 2**33 / (1.875 * 2**33 / 300e9 - 30 * 15e-6) / 400e9  # 0.7563
    assert f"{want:.3g} of the link rate across domains" in result.stderr
    listed = json.loads(runner.invoke(cli, ["calibration", "list", "--format", "json"]).stdout)
    (row,) = listed
    assert (row["kind"], row["level"]) == ("link", "scale_out")
    assert row["efficiency"] == pytest.approx(want, abs=1e-6)
    args = ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "64", "--tokens", "1T",
            "--format", "json"]
    est = json.loads(runner.invoke(cli, args).stdout)
    notes = {a["name"]: a for a in est["assumptions"]}
    assert notes["link_calibration.scale_out"]["value"] == pytest.approx(want, abs=1e-4)
    assert "results.txt, all_reduce: 16 ranks on 2 nodes" in \
        notes["link_calibration.scale_out"]["source"]
    assert notes["perf.scale_out_efficiency"]["value"] == pytest.approx(want, abs=1e-6)
    assert notes["perf.scale_up_efficiency"]["value"] == DEFAULT_PERF.scale_up_efficiency
    assert est["step"]["method"] == "calibrated performance model"
    # other hardware is untouched
    other = json.loads(runner.invoke(cli, [*args[:3], "-H", "h200", *args[5:]]).stdout)
    assert "link_calibration.scale_out" not in {a["name"] for a in other["assumptions"]}
    again = runner.invoke(cli, ["calibration", "link", str(path), "-H", "h100-sxm"])
    assert "note: it replaces" in again.stderr
    assert runner.invoke(cli, ["calibration", "clear"]).exit_code == 0
    assert calibration.load_links() == []


def test_cli_link_refuses_another_gpus_results(runner, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text(nccl_output(300.0))  # H100 ranks
    result = runner.invoke(cli, ["calibration", "link", str(path), "-H", "a100-80gb"])
    assert result.exit_code != 0 and "which is h100-sxm" in result.stderr
    assert "--hardware" in result.stderr


@pytest.mark.parametrize("field, value", [
    ("efficiency", "0.75"), ("efficiency", None), ("efficiency", 0), ("efficiency", -0.5),
    ("efficiency", float("nan")), ("efficiency", 1.5), ("level", "nvlink"), ("ranks", 2.5),
    ("efficiency", 10**401), ("message_bytes", 10**30), ("ranks", 15), ("collective", "alltoall"),
])
def test_a_hand_edited_link_row_is_one_line(runner, field, value):
    link, _ = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8, 8), 2**33, 300.0,
                               "t", H100)
    row = {**json.loads(json.dumps(link.__dict__)), field: value}
    calibration.default_path().write_text(json.dumps([row]))
    for args in (["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "16"],
                 ["calibration", "list"]):
        result = runner.invoke(cli, args)
        assert result.exit_code != 0 and "Traceback" not in result.stderr
        assert "calibration file" in result.stderr and "is not valid" in result.stderr


def test_a_deeply_nested_calibration_file_is_one_line_for_link(runner, tmp_path):
    results, path = tmp_path / "results.txt", tmp_path / "cal.json"
    results.write_text(nccl_output(300.0))
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = runner.invoke(cli, ["calibration", "link", str(results), "-H", "h100-sxm",
                                 "--calibration", str(path)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0] == (f"error: calibration file {path} is not valid: nested too deeply to "
                        "be a calibration file; fix it or delete the file")


def test_cli_link_errors_are_one_line(runner, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text(nccl_output(300.0, largest=2**20))
    result = runner.invoke(cli, ["calibration", "link", str(path), "-H", "h100-sxm"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "the largest message is 1 MiB" in result.stderr
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
    link, _ = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8, 8), 2**33, 300.0,
                               "t", H100)
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
    busbw = model_busbw(load_hardware("h100-sxm"), slow_net, (8, 8), 2**33)
    link, _ = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8, 8), 2**33, busbw,
                               "t", H100)
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
    link, _ = link_calibration(load_hardware("h100-sxm"), "all_reduce", (8, 8), 2**33, 300.0,
                               "t", H100)
    calibration.save(link)
    assert "fit with the default links and the links are now scale_out 0.75" in note()


def test_validate_distributed_calibrate_stores_the_ranks_link(tmp_path):
    # The GPU run itself needs NCCL (docs/validation); what rank 0 does with its measurement
    # is checked here on a result as run_distributed returns it.
    from planner.cli.validate import _calibrate_link
    from planner.profiling.distributed import LINK_MESSAGE_BYTES, DistributedResult

    out = DistributedResult([], "ddp", 8, 300e9, "cuda:0", (8,), H100, 360e9, LINK_MESSAGE_BYTES)
    _calibrate_link(out, None, None, None)  # the profile from the device name
    (link,) = calibration.load_links()
    assert (link.hardware, link.level, link.ranks, link.nodes) == ("h100-sxm", "scale_up", 8, 1)
    t = 1.75 * 2**30 / 360e9  # less the model's 14 hops x 5 us
    assert link.efficiency == pytest.approx(1.75 * 2**30 / (t - 14 * 5e-6) / 450e9, abs=1e-6)
    assert link.source == "planner validate --distributed (ddp)"
    assert link.collective == "all_reduce"


def test_validate_distributed_calibrate_refuses_a_cpu(runner):
    pytest.importorskip("torch")
    result = runner.invoke(cli, ["validate", "--distributed", "--calibrate", "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "gloo on a CPU measures no accelerator link" in result.stderr


def test_validate_distributed_calibrate_needs_two_ranks_before_it_runs(monkeypatch):
    from planner.cli.validate import _distributed

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(SpecError, match="at least 2 ranks"):  # before any model is built
        _distributed(None, "ddp", 1, 0, 1, 8, "bf16", "table", "cuda", None, True, None)


def test_round_trip_through_the_step_time_model():
    # A measurement made of the step-time model's own collectives (its hops and latency, as
    # step_time_terms charges them) calibrates back to the efficiencies that made it.
    from planner.estimators.model_state import framework_state_bytes

    hw = load_hardware("h100-sxm")
    truth = replace(DEFAULT_PERF, scale_up_efficiency=0.7, scale_out_efficiency=0.6)
    base = dict(seq_len=8192, pp=1, cp=1, ep=1, recompute="none", virtual_stages=1,
                sequence_parallel=False)
    # TP 8 on one node: 4 all-reduces of micro-batch x seq x d_model bf16 per layer
    req = resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=8, tp=8,
                  zero_stage=1, micro_batch_size=8, global_batch_size=8, **base)
    size = 8 * 8192 * 4096 * 2
    one = _terms(req, 8, truth)["tp_comm_total"] / (32 * 4)
    cal, _ = link_calibration(hw, "all_reduce", (8,), size, 1.75 * size / one / 1e9, "t", H100)
    assert (cal.level, cal.efficiency) == ("scale_up", pytest.approx(0.7, abs=1e-9))
    # ZeRO-0 over 16 ranks on two nodes: one gradient all-reduce per layer's share
    req = resolve("llama3-8b", "h100-sxm", "1B", use_calibration=False, devices=16, tp=1,
                  zero_stage=0, micro_batch_size=1, global_batch_size=16, **base)
    g_b = framework_state_bytes("adamw", "bf16", 0)[1]
    size = count_params(req.model).total * g_b / 32
    one = _terms(req, 16, truth)["dp_comm_total"] / 32
    cal, _ = link_calibration(hw, "all_reduce", (8, 8), int(size), 1.875 * int(size) / one / 1e9,
                              "t", H100, perf=replace(DEFAULT_PERF, scale_up_efficiency=0.7))
    assert (cal.level, cal.efficiency) == ("scale_out", pytest.approx(0.6, rel=1e-6))


def test_a_lower_scale_up_figure_later_stops_the_scale_out_one_and_says_so(runner, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text(nccl_output(330.0))  # 16 ranks, 2 nodes: ~334 GB/s in the model
    assert runner.invoke(cli, ["calibration", "link", str(out), "-H", "h100-sxm"]).exit_code == 0
    up = tmp_path / "up.txt"
    up.write_text(nccl_output(270.0, ranks=8))  # one node: the scale-up cap falls to ~270 GB/s
    result = runner.invoke(cli, ["calibration", "link", str(up), "-H", "h100-sxm"])
    assert result.exit_code == 0, result.stderr
    assert "warning: link_calibration.scale_out is not applied now" in result.stderr
    est = json.loads(runner.invoke(cli, ["estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n",
                                         "64", "--tokens", "1T", "--format", "json"]).stdout)
    notes = {a["name"]: a for a in est["assumptions"]}
    assert notes["link_calibration.scale_out"]["value"] == "not applied"
    assert "caps that group" in notes["link_calibration.scale_out"]["source"]
    assert notes["perf.scale_out_efficiency"]["value"] == DEFAULT_PERF.scale_out_efficiency
    assert notes["perf.scale_up_efficiency"]["value"] == pytest.approx(0.6, abs=0.01)


def test_another_calibration_file_is_named_as_not_read_by_estimates(runner, tmp_path):
    res = tmp_path / "r.txt"
    res.write_text(nccl_output(300.0))
    other = tmp_path / "other.json"
    result = runner.invoke(cli, ["calibration", "link", str(res), "-H", "h100-sxm",
                                 "--calibration", str(other)])
    assert result.exit_code == 0, result.stderr
    assert f"set PLANNER_CALIBRATION={other}" in result.stderr
    assert calibration.load_links() == [] and calibration.load_links(other) != []


def test_nvl72_scale_out_with_the_level_said(tmp_path):
    hw = load_hardware("gb200")  # 4 GPUs per tray, each tray in its own NVL72 domain
    cal, _ = link_calibration(hw, "all_reduce", (4, 4), 2**33, 150.0, "t", "B200", "scale_out")
    assert cal.level == "scale_out" and 0.7 < cal.efficiency < 0.8  # ~150 of 4 x 50 GB/s


def test_a_profile_of_your_own_is_not_checked_against_the_gpu_name(runner, tmp_path):
    mine = tmp_path / "profiles"
    mine.mkdir()
    text = (HW_DIR / "h100-sxm.yaml").read_text().replace("name: h100-sxm", "name: h100-mine")
    (mine / "h100-mine.yaml").write_text(text)
    res = tmp_path / "r.txt"
    res.write_text(nccl_output(300.0))
    result = runner.invoke(cli, ["calibration", "link", str(res), "-H", "h100-mine",
                                 "--profiles-dir", str(mine)])
    assert result.exit_code == 0, result.stderr
    assert [c.hardware for c in calibration.load_links()] == ["h100-mine"]


def test_validate_refuses_another_profiles_gpus():
    import click

    from planner.cli.validate import _calibrate_link
    from planner.profiling.distributed import LINK_MESSAGE_BYTES, DistributedResult

    out = DistributedResult([], "ddp", 8, 300e9, "cuda:0", (8,), "NVIDIA A100-SXM4-80GB",
                            200e9, LINK_MESSAGE_BYTES)
    with pytest.raises(click.BadParameter, match="which is a100-80gb"):
        _calibrate_link(out, "h100-sxm", None, None)
    assert calibration.load_links() == []


@pytest.mark.parametrize("text, message", [
    (nccl_output(100.0, ranks=16).replace("# Out of bounds", "# Using devices\n# Out of bounds"),
     "holds 2 runs"),
    (nccl_output(100.0, ranks=16).replace("#  Rank  3 ", "#  Rnak  3 "), "skip rank 3"),
    (nccl_output(100.0).replace("8589934592    2147483648", "9" * 4000 + "    2147483648"),
     "not an nccl-tests result row"),
])
def test_appended_gapped_and_absurd_files_are_refused(text, message):
    with pytest.raises(SpecError, match=message):
        parse_nccl_tests(text, "r.txt")


def test_an_absurd_bandwidth_is_refused():
    with pytest.raises(SpecError, match="not a measurement of a real link"):
        link_calibration(load_hardware("h100-sxm"), "all_reduce", (8,), 2**33, 1e-300, "t", H100)
