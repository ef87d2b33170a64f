"""Pipeline parallelism in `planner serve`: pp micro-batches in flight, one per stage (Orca,
Yu et al. 2022 §4.3), so a pp-stage replica at batch B iterates like the whole model on one
stage's devices at batch B / pp, plus the stage hand-offs. Hand-derived on Llama 3 8B
(bf16, 8,030,261,248 parameters: 16.06 GB) on H100 SXM (3.35 TB/s at planner's 80%)."""

from __future__ import annotations

import pytest

from planner.catalog.catalog import load_hardware, load_model
from planner.estimators.serving import (
    Layout, ServeConfig, ServePerf, StepLoad, iteration_time, prefill_time_s,
    serving_weight_bytes,
)
from planner.planning.serve_point import steady_state


@pytest.fixture(scope="module")
def llama():
    return load_model("llama3-8b")


@pytest.fixture(scope="module")
def h100():
    return load_hardware("h100-sxm")


def test_pp_iteration_by_hand(llama, h100):
    batch, ctx = 64, 1000
    it = iteration_time(llama, h100, ServeConfig("bf16", "bf16", Layout(1, 2)),
                        StepLoad(batch, ctx))
    bw = 3.35e12 * 0.80
    # in one iteration each device reads its half of the weights once per micro-batch (2)
    assert serving_weight_bytes(llama, "bf16").total_bytes == 8_030_261_248 * 2
    assert it.weights_s == pytest.approx(8_030_261_248 * 2 / bw)
    # and its half of the layers' KV for every sequence: 64 x 1000 x 128 KiB / 2
    assert it.kv_s == pytest.approx(batch * ctx * 32 * 2 * 8 * 128 * 2 / 2 / bw)
    assert it.comm_s == pytest.approx(20e-6)  # one hand-off between the two stages


@pytest.mark.parametrize("pp", [2, 4])
def test_pp_replica_iterates_like_one_stage_at_batch_over_pp(llama, h100, pp):
    perf = ServePerf()
    deep = steady_state(llama, h100, ServeConfig("bf16", "bf16", Layout(1, pp)), (1000, 500),
                        64 * pp, perf)
    flat = steady_state(llama, h100, ServeConfig("bf16", "bf16", Layout(1, 1)), (1000, 500),
                        64, perf)
    hops = (pp - 1) * perf.p2p_latency_s
    assert deep.tpot_s == pytest.approx(flat.tpot_s + hops)
    # so pp stages make pp times the tokens/s of one device at batch / pp, less the hops
    assert deep.output_tokens_per_s == pytest.approx(pp * 64 / (flat.tpot_s + hops))
    assert deep.output_tokens_per_s > 0.99 * pp * flat.output_tokens_per_s


def test_a_prompt_passes_every_stage(llama, h100):
    perf = ServePerf()
    one = prefill_time_s(llama, h100, ServeConfig("bf16", "bf16", Layout(1, 1)), 2000, perf)
    four = prefill_time_s(llama, h100, ServeConfig("bf16", "bf16", Layout(1, 4)), 2000, perf)
    assert four == pytest.approx(one + 3 * perf.p2p_latency_s)
