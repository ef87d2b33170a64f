"""The MI300X serving gap, split by Oracle's own latency table (serving_vllm_oci.yaml): the
roofline at the profile's figures is far below what vLLM measured at batch 1 (a fixed cost of
the engine), and each larger batch adds its GEMMs at a small share of the FP8 peak. The table
in docs/validation.md is this output."""

from __future__ import annotations

from pathlib import Path

from planner.checks.serving import latency_gap_report, mi300x_latency_gap


def test_the_gap_is_the_engine_not_the_profile():
    rows = mi300x_latency_gap()
    assert [r.batch for r in rows] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    one = rows[0]
    # batch 1 reads 50.7 GB of weights per device: at 5.3 TB/s that is under 10 ms; vLLM took
    # over 2.5 times the floor, so HBM bandwidth alone cannot explain it
    assert one.measured_step_s > 2.5 * one.floor_step_s
    assert one.predicted_step_s < one.measured_step_s
    # beyond batch 4 the steps grow as GEMMs at 10-16% of the FP8 dense peak
    assert all(0.10 < r.gemm_fraction_of_fp8_peak < 0.16 for r in rows[2:])
    # planner is faster than vLLM at every batch: its answer is an upper bound here
    assert all(r.predicted_step_s < r.measured_step_s for r in rows)


def test_validation_md_holds_the_table():
    text = (Path(__file__).resolve().parent.parent / "docs" / "validation.md").read_text()
    for line in latency_gap_report().splitlines():
        assert line in text, f"docs/validation.md MI300X latency table is stale: {line}"
