"""Expert parallelism in `planner serve`: per-device expert weights, the experts a decode
step reads, the dispatch/combine all-to-alls, and the (tp, pp, ep) the search picks.

Hand-derived on Mixtral 8x7B (model card: 46.7B parameters, 8 experts, top-2, 32 MoE layers;
one expert is w1, w2, w3 of 4096 x 14336) on H100 SXM (NVLink 450 GB/s one way; HBM
3.35 TB/s) with planner's stated constants (link efficiency 0.7, 8 us per collective).
"""

from __future__ import annotations

import json

import pytest

from planner.catalog.catalog import load_hardware, load_model
from planner.cli import cli
from planner.estimators.params import count_params
from planner.estimators.serving import (
    Layout, ServeConfig, ServePerf, StepLoad, alltoall_s, comm_s, iteration_time,
    prefill_time_s, serving_weight_bytes, weight_bytes_read_per_device,
)
from planner.planning.serve_point import EngineSettings, replica_memory

MIXTRAL_TOTAL = 46_702_792_704  # parameters (planner's count, 46.7B on the model card)
EXPERT = 3 * 4096 * 14336  # one expert's matrices: 176,160,768
EXPERTS_ALL = 8 * 32 * EXPERT  # every routed expert of every layer: 45,097,156,608
H = 4096
NVLINK = 450e9 * 0.7  # achieved one-way scale-up bandwidth, bytes/s


@pytest.fixture(scope="module")
def mixtral():
    return load_model("mixtral-8x7b")


@pytest.fixture(scope="module")
def h100():
    return load_hardware("h100-sxm")


def test_expert_counts_by_hand(mixtral):
    p = count_params(mixtral)
    assert p.expert_matmul == EXPERT
    assert p.total == MIXTRAL_TOTAL


def test_expert_weights_divide_by_ep_the_rest_replicates(mixtral, h100):
    # bf16: every weight 2 bytes; tp 1 x ep 8 holds 1/8 of the experts and all the rest
    mem = replica_memory(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 8)), 1500,
                         EngineSettings())
    assert mem.weights_bytes == pytest.approx((MIXTRAL_TOTAL - EXPERTS_ALL * 7 / 8) * 2)
    # tp 2 x ep 4: 1/8 of the experts and half of the rest
    mem = replica_memory(mixtral, h100, ServeConfig("bf16", "bf16", Layout(2, 1, 4)), 1500,
                         EngineSettings())
    assert mem.weights_bytes == pytest.approx(
        ((MIXTRAL_TOTAL - EXPERTS_ALL) / 2 + EXPERTS_ALL / 8) * 2)


def test_each_ep_group_caches_its_own_sequences(mixtral, h100):
    one = replica_memory(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 8)), 1500,
                         EngineSettings())
    # 1,504 tokens (94 blocks of 16) x 32 layers x 2 x 8 x 128 x 2 bytes per sequence
    assert one.kv_bytes_per_sequence == 1504 * 32 * 2 * 8 * 128 * 2
    assert one.max_sequences == 8 * int(one.kv_free_bytes // one.kv_bytes_per_sequence)


@pytest.mark.parametrize("tokens", [1, 4, 64])
def test_weight_read_is_the_touched_local_experts(mixtral, tokens):
    wb = serving_weight_bytes(mixtral, "bf16")
    touched = 8 * (1 - (1 - 2 / 8) ** tokens)  # expected distinct experts, uniform top-2
    dense = (MIXTRAL_TOTAL - EXPERTS_ALL) * 2
    assert weight_bytes_read_per_device(mixtral, wb, 1, tokens, ep=8) == pytest.approx(
        dense + touched * EXPERT * 32 * 2 / 8)
    # one token touches 2 experts: with ep 8 a device reads a quarter of an expert per layer
    if tokens == 1:
        assert touched == pytest.approx(2)


def test_dispatch_and_combine_all_to_alls_by_hand(mixtral, h100):
    perf = ServePerf()
    tokens = 256
    send = tokens / 8 * 2 * H * 2  # each of 8 ranks sends its 32 tokens to 2 experts, bf16
    one = 8e-6 + 7 / 8 * send / NVLINK
    assert alltoall_s(send, 8, h100, perf) == pytest.approx(one)
    # tp 1 x ep 8: no all-reduce, a dispatch and a combine per MoE layer
    assert comm_s(mixtral, h100, Layout(1, 1, 8), tokens, perf) == pytest.approx(2 * 32 * one)
    # tp 2 x ep 4: 2 all-reduces per layer of each group's 64 tokens, plus the all-to-alls
    ar = 8e-6 + 2 * 1 / 2 * (tokens / 4 * H * 2) / NVLINK
    a2a = 8e-6 + 7 / 8 * (tokens / 8 * 2 * H * 2) / NVLINK
    assert comm_s(mixtral, h100, Layout(2, 1, 4), tokens, perf) == pytest.approx(
        2 * 32 * ar + 2 * 32 * a2a)


def test_decode_step_by_hand(mixtral, h100):
    perf = ServePerf()
    batch, ctx = 512, 1250
    it = iteration_time(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 8)),
                        StepLoad(batch, ctx), perf)
    bw = 3.35e12 * 0.80
    touched = 8 * (1 - 0.75 ** batch)  # every expert, at this batch
    weights = (MIXTRAL_TOTAL - EXPERTS_ALL) * 2 + touched * EXPERT * 32 * 2 / 8
    assert it.weights_s == pytest.approx(weights / bw)
    kv = batch / 8 * ctx * 32 * 2 * 8 * 128 * 2  # each device: its group's 64 sequences
    assert it.kv_s == pytest.approx(kv / bw)
    p = count_params(mixtral)
    flops = batch * (2 * p.matmul_active + 2 * 32 * (128 + 128) * 32 * ctx) / 8
    assert it.decode_compute_s == pytest.approx(flops / (989.4e12 * 0.55), rel=1e-3)
    assert it.comm_s == pytest.approx(comm_s(mixtral, h100, Layout(1, 1, 8), batch, perf))


def test_ep_keeps_the_work_and_moves_it(mixtral, h100):
    """Summed over a stage's devices, ep moves no FLOPs; one prompt's prefill runs its
    attention on one group's tp devices and its experts on all of them."""
    perf = ServePerf()
    load = StepLoad(256, 1000, 512)
    a = iteration_time(mixtral, h100, ServeConfig("bf16", "bf16", Layout(8, 1, 1)), load, perf)
    b = iteration_time(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 8)), load, perf)
    assert a.decode_compute_s == pytest.approx(b.decode_compute_s)
    assert a.prefill_s == pytest.approx(b.prefill_s)
    assert a.kv_s == pytest.approx(b.kv_s)  # tp 8 shards 8 KV heads; ep 8 splits sequences
    one = prefill_time_s(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 8)), 1000)
    alone = prefill_time_s(mixtral, h100, ServeConfig("bf16", "bf16", Layout(1, 1, 1)), 1000)
    assert one < alone


def _json(runner, args):
    res = runner.invoke(cli, [*args, "--format", "json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_issue_example_picks_tp_pp_ep(runner):
    res = runner.invoke(cli, ["serve", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
                              "--devices", "8"])
    assert res.exit_code == 0, res.stderr
    o = _json(runner, ["serve", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
                       "--devices", "8"])["options"][0]
    assert f"tp {o['tp']} x pp {o['pp']} x ep {o['ep']} = {o['devices_per_replica']}" \
        in res.stdout
    assert o["ep"] > 1 and o["replicas"] * o["devices_per_replica"] == 8
    # the search's pick makes at least as many tokens/s on 8 devices as every fixed ep
    best = o["replicas"] * o["output_tokens_per_s_per_replica"]
    for ep in (1, 2, 4, 8):
        f = _json(runner, ["serve", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
                           "--devices", "8", "--ep", str(ep)])["options"][0]
        assert f["ep"] == ep
        assert f["replicas"] * f["output_tokens_per_s_per_replica"] <= best * (1 + 1e-9)


def test_dense_models_never_get_ep(runner):
    o = _json(runner, ["serve", "--model", "llama3-8b", "--hardware", "h100-sxm",
                       "--devices", "8"])["options"][0]
    assert o["ep"] == 1


@pytest.mark.parametrize("args,needle", [
    (["--model", "llama3-8b", "--ep", "2"], "--ep 2: llama3-8b is dense; use one of 1"),
    (["--model", "mixtral-8x7b", "--ep", "3"], "--ep 3: ep must divide mixtral-8x7b's 8 "
                                               "experts"),
    (["--model", "mixtral-8x7b", "--ep", "16"], "use one of 1, 2, 4, 8"),
])
def test_bad_ep_is_one_line(runner, args, needle):
    res = runner.invoke(cli, ["serve", "--hardware", "h100-sxm", *args])
    assert res.exit_code != 0
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
