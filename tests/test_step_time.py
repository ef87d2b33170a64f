"""The performance model: hand-derived communication, published throughput, properties."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog.catalog import load_hardware, load_model
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    PerfParams, flops_inputs, gemm_efficiency_max, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.specs import TrainingSpec
from planner.specs.hardware import Figure
from planner.checks.throughput import (
    ibm_fsdp_checks, korthikanti_checks, llama3_checks, megatron_checks, nemo_checks,
    palm_checks, single_gpu_checks, torchtitan_checks,
)
from planner.estimators.data_parallel import group_link

NO_LATENCY = PerfParams(latency_intra_s=0.0, latency_inter_s=0.0)


def _deg(**kw):
    base = dict(devices=8, tp=1, pp=1, cp=1, ep=1, dp=8, zero_stage=0, micro_batch_size=1,
                recompute=0, sequence_parallel=0, pipeline_schedule=0, virtual_stages=1,
                global_batch_size=64)
    return Degrees(**{**base, **kw})


def _terms(model, deg, hw="h100-sxm", perf=NO_LATENCY, **train):
    m, h = load_model(model), load_hardware(hw)
    t = TrainingSpec(**{"tokens": 1e9, "seq_len": 2048, "global_batch_size": 64, **train})
    p = count_params(m)
    return step_time_terms(m, t, deg, h, p, flops_inputs(m, t, p), perf)


def test_tp_all_reduce_volume_by_hand():
    # Shoeybi et al. §3: 4 all-reduces of b*s*h*2 bytes per layer per micro-batch; ring
    # all-reduce moves 2(t-1)/t of the buffer over the scale-up link (450 GB/s x 0.8 on H100).
    terms = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=1))
    m = 64  # micro-batches per step: 64 sequences / (dp 1 x mb 1)
    per = 2 * (8 - 1) / 8 * (2048 * 4096 * 2) / (450e9 * 0.8)
    assert terms["tp_comm"] == pytest.approx(m * 32 * 4 * per)
    full = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=1, recompute=2), recompute="full")
    assert full["tp_comm"] == pytest.approx(m * 32 * 6 * per)  # recompute re-runs 2 more


def test_megatron_hides_the_column_parallel_backward_collectives():
    # Megatron-LM's LinearWithGradAccumulationAndAsyncCommunication (NVIDIA/Megatron-LM,
    # megatron/mpu/layers.py, 2022-03; the all-reduce form since 2021-09): the backward
    # all-reduce at QKV's and FC1's inputs runs async under that layer's weight-gradient GEMM,
    # 2 of the 4 all-reduces per layer. With SP it re-gathers the saved input in backward
    # (2 all-gathers: one more all-reduce's volume) and hides that gather and the reduce-scatter
    # under the layer's two backward GEMMs: 5 - 2 = 3 exposed. Full recompute adds 2 exposed.
    # Each collective hides only under its own layer's GEMMs: llama3-8b's QKV holds
    # 4096 x 6144 of a block's 4096 x 6144 + 4096 x 4096 + 3 x 4096 x 14336 weights, and the
    # GEMM time also holds the LM head (128,256 x 4096, a 32nd of it per layer).
    per = 2 * (8 - 1) / 8 * (2048 * 4096 * 2) / (450e9 * 0.8)
    m, layers = 64, 32
    total = 4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336 + 128256 * 4096 / 32
    shares = (4096 * 6144 / total, 2 * 4096 * 14336 / total)
    binds = []
    for sp, rc, exposed in ((0, 0, 2), (1, 0, 3), (0, 2, 4), (1, 2, 5)):
        train = {"recompute": "full"} if rc else {}
        meg = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=sp, recompute=rc,
                                        framework=1), **train)
        one = layers * per
        assert meg["tp_comm_total"] == pytest.approx(m * (exposed + 2) * one)
        bwd = meg["compute_gemm"] / m * 2 / (3 + (rc == 2)) * (1 + sp) / 2  # fwd, bwd x2, recompute
        hidden = sum(min(one, bwd * share) for share in shares)
        assert meg["tp_comm"] == pytest.approx(m * ((exposed + 2) * one - hidden))
        binds.append(hidden < 2 * one)
        generic = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=sp, recompute=rc),
                         **train)
        assert generic["tp_comm"] == pytest.approx(m * layers * (4 + rc) * per)
    # Without SP only the weight-gradient half can hide QKV's all-reduce, and it is too short
    assert binds[0] and binds[2]


def test_column_parallel_shares_leave_routed_experts_out():
    # Routed experts' TP traffic goes through the token dispatcher, not Megatron's
    # column-parallel linears: an all-MoE model (mixtral) hides only its QKV; MLA's input
    # projections (deepseek-v3) are its "QKV".
    from planner.estimators.step_time import column_parallel_shares
    for name in ("mixtral-8x7b", "deepseek-v3", "llama3-8b"):
        model = load_model(name)
        qkv, up = column_parallel_shares(model, count_params(model))
        assert 0 < qkv < 1 and 0 <= up < 1 and qkv + up < 1, name
        if name == "mixtral-8x7b":
            assert up == 0
    mix = load_model("mixtral-8x7b")
    qkv, _ = column_parallel_shares(mix, count_params(mix))
    h = 4096  # mixtral: 32 heads of 128, 8 KV heads, top-2 of 8 experts of width 14336
    per_layer = (4096 * 6144 + 4096 * 4096 + 2 * 3 * h * 14336 + 8 * h) + 32000 * h / 32
    assert qkv == pytest.approx(4096 * 6144 / per_layer, rel=1e-3)


def test_unfused_gradient_accumulation_pass_by_hand():
    # PyTorch's AccumulateGrad (grad += new: read 2 + 2, write 2 bytes per bf16 parameter)
    # runs for each micro-batch after the first; Megatron-LM's fused weight-gradient GEMM
    # accumulates into main_grad in place (commit 83b1e42f30, 2022-02), so it has no pass.
    n = count_params(load_model("llama3-8b")).total
    hbm = 3.35e12
    one = _terms("llama3-8b", _deg(dp=8, global_batch_size=8), global_batch_size=8)
    four = _terms("llama3-8b", _deg(dp=8, global_batch_size=32), global_batch_size=32)
    assert four["compute_memory"] - 4 * one["compute_memory"] == pytest.approx(3 * 6 * n / hbm)
    meg = _terms("llama3-8b", _deg(dp=8, global_batch_size=32, framework=1), global_batch_size=32)
    assert meg["compute_memory"] == pytest.approx(4 * one["compute_memory"])
    # ZeRO 2-3 reduce-scatter every micro-batch: the pass runs on the 1/8 shard; ZeRO-1
    # reduces once per step, so it accumulates whole gradients.
    for zero, shard in ((3, 8), (2, 8), (1, 1)):
        many = _terms("llama3-8b", _deg(dp=8, zero_stage=zero, global_batch_size=32),
                      global_batch_size=32)
        single = _terms("llama3-8b", _deg(dp=8, zero_stage=zero, global_batch_size=8),
                        global_batch_size=8)
        assert many["compute_memory"] - 4 * single["compute_memory"] == pytest.approx(
            3 * 6 * n / shard / hbm)
    # Megatron fuses only into fp32 gradients: under --fp16 (fp16 grads) it pays the pass,
    # 3 x 2 bytes (its arguments.py turns gradient_accumulation_fusion off there).
    fp16 = {"precision": "fp16"}
    meg16 = _terms("llama3-8b", _deg(dp=8, global_batch_size=32, framework=1),
                   global_batch_size=32, **fp16)
    meg16_one = _terms("llama3-8b", _deg(dp=8, global_batch_size=8, framework=1),
                       global_batch_size=8, **fp16)
    assert meg16["compute_memory"] - 4 * meg16_one["compute_memory"] == pytest.approx(
        3 * 6 * n / hbm)
    # --grad-dtype fp32 under --fp16 (Megatron's --accumulate-allreduce-grads-in-fp32):
    # fused again; under the generic convention the pass then moves 3 x 4 bytes.
    meg32 = _terms("llama3-8b", _deg(dp=8, global_batch_size=32, framework=1),
                   global_batch_size=32, grad_dtype="fp32", **fp16)
    meg32_one = _terms("llama3-8b", _deg(dp=8, global_batch_size=8, framework=1),
                       global_batch_size=8, grad_dtype="fp32", **fp16)
    assert meg32["compute_memory"] == pytest.approx(4 * meg32_one["compute_memory"])
    gen32 = _terms("llama3-8b", _deg(dp=8, global_batch_size=32), global_batch_size=32,
                   grad_dtype="fp32")
    gen32_one = _terms("llama3-8b", _deg(dp=8, global_batch_size=8), global_batch_size=8,
                       grad_dtype="fp32")
    assert gen32["compute_memory"] - 4 * gen32_one["compute_memory"] == pytest.approx(
        3 * 12 * n / hbm)
    # With offload the gradients accumulate on the host, not in HBM.
    off = _terms("llama3-8b", _deg(dp=8, global_batch_size=32, offload=1), global_batch_size=32)
    off_one = _terms("llama3-8b", _deg(dp=8, global_batch_size=8, offload=1), global_batch_size=8)
    assert off["compute_memory"] == pytest.approx(4 * off_one["compute_memory"])


def test_dp_all_reduce_by_hand():
    # 8 GPUs in one node, ZeRO-0: one all-reduce of the bf16 gradients, 2(n-1)/n * 2N bytes.
    terms = _terms("llama3-8b", _deg())
    n = count_params(load_model("llama3-8b")).total
    assert terms["dp_comm_total"] == pytest.approx(2 * 7 / 8 * 2 * n / (450e9 * 0.8))
    # --grad-dtype fp32 reduces 4 bytes per gradient (DeepSpeed grad_accum_dtype fp32)
    fp32 = _terms("llama3-8b", _deg(), grad_dtype="fp32")
    assert fp32["dp_comm_total"] == pytest.approx(2 * 7 / 8 * 4 * n / (450e9 * 0.8))
    # Across 2 nodes the ring runs one channel per NIC: 8 ranks per node share 8 x 50 GB/s,
    # so the bus bandwidth is min(450, 8 x 50) = 400 GB/s (x 0.8 achieved), not one NIC's 50.
    terms16 = _terms("llama3-8b", _deg(devices=16, dp=16))
    assert terms16["dp_comm_total"] == pytest.approx(2 * 15 / 16 * 2 * n / (400e9 * 0.8))
    # With tp 8 each node holds one rank of a data-parallel group: one NIC, 50 GB/s.
    t8 = _terms("llama3-8b", _deg(devices=16, tp=8, dp=2, sequence_parallel=1))
    assert t8["dp_comm_total"] == pytest.approx(2 * 1 / 2 * 2 * n / 8 / (50e9 * 0.8))


def test_zero2_reduce_scatters_every_micro_batch():
    # ZeRO-2 keeps only its gradient shard (memory.py), so it reduce-scatters each
    # micro-batch's gradients (DeepSpeed stage 2's reduce hooks; FSDP SHARD_GRAD_OP); ZeRO-1
    # keeps them whole and reduces once per step. Both all-gather the updated weights once.
    n = count_params(load_model("llama3-8b")).total
    rs = ag = 7 / 8 * 2 * n / (450e9 * 0.8)  # one node: (n-1)/n of the bf16 bytes each
    for zero, m in ((1, 4), (2, 4), (2, 1)):
        t = _terms("llama3-8b", _deg(zero_stage=zero, global_batch_size=8 * m),
                   global_batch_size=8 * m)
        reductions = m if zero == 2 else 1
        assert t["dp_comm_total"] == pytest.approx(reductions * rs + ag)


def test_group_link_is_hierarchical():
    up, out = 450.0, 50.0
    assert group_link(1, 8, 8, up, out, 1, 2) == (450.0, 1)  # inside one HGX node
    assert group_link(1, 64, 8, up, out, 1, 2) == (400.0, 2)  # 8 rails per node
    assert group_link(2, 32, 8, up, out, 1, 2) == (200.0, 2)  # 4 ranks per node, 4 rails
    assert group_link(8, 16, 8, up, out, 1, 2) == (50.0, 2)  # one rank per node
    # TPU v4 pods (4096 chips on ICI): a group inside a pod stays on ICI; the 2 replicas
    # across pods (stride 3072) talk over the per-chip DCN link.
    assert group_link(12, 256, 4096, 268.6, 6.25, 1, 2) == (268.6, 1)
    assert group_link(3072, 2, 4096, 268.6, 6.25, 1, 2) == (6.25, 2)


def test_dp_overlap_exposes_only_what_compute_cannot_hide():
    # Bucketed reduction in the last backward: the last layer's bucket is exposed, and each
    # layer's excess over its backward compute. Enough compute (seq 8192) hides the rest.
    deg = _deg(devices=16, dp=16, global_batch_size=16)
    t = _terms("llama3-8b", deg, seq_len=8192, global_batch_size=16)
    layer = t["dp_comm_total"] / 32
    assert t["dp_comm"] == pytest.approx(layer)  # one layer's all-reduce, the rest hidden
    no = _terms("llama3-8b", _deg(devices=16, dp=16, global_batch_size=16, dp_comm_overlap=0),
                seq_len=8192, global_batch_size=16)
    assert no["dp_comm"] == pytest.approx(no["dp_comm_total"])
    # Starved of compute (seq 128, one sequence each) most of the traffic shows.
    thin = _terms("llama3-8b", deg, seq_len=128, global_batch_size=16)
    assert thin["dp_comm"] > 0.5 * thin["dp_comm_total"]
    assert thin["dp_comm"] <= thin["dp_comm_total"] + 1e-12


def test_pipeline_bubble_and_p2p():
    # Narayanan §2.2: bubble = (p-1)/(v m) of the busy time; p2p 2 v transfers per micro-batch.
    t1 = _terms("llama3-8b", _deg(pp=4, dp=2, global_batch_size=32))
    m = 16
    busy = t1["compute"] + t1["tp_comm"] + t1["ep_comm"] + t1["cp_comm"]
    assert t1["bubble"] == pytest.approx(3 / m * busy)
    assert t1["pp_comm"] == pytest.approx(m * 2 * 2048 * 4096 * 2 / (450e9 * 0.8))
    t2 = _terms("llama3-8b", _deg(pp=4, dp=2, global_batch_size=32, pipeline_schedule=1, virtual_stages=2))
    busy2 = t2["compute"] + t2["tp_comm"]
    assert t2["bubble"] == pytest.approx(3 / (2 * m) * busy2)


def test_expert_all_to_all_by_hand():
    # formulas.md §4.6: 4 all-to-alls per MoE layer per micro-batch of T k h bytes, (e-1)/e.
    terms = _terms("mixtral-8x7b", _deg(ep=8))
    per = 7 / 8 * 2048 * 2 * 4096 * 2 / (450e9 * 0.8)
    assert terms["ep_comm"] == pytest.approx(8 * 4 * 32 * per)


def test_gemm_efficiency_scales_with_shard_size_and_profile():
    small = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=1, micro_batch_size=1), seq_len=512)
    large = _terms("llama3-8b", _deg(tp=1, micro_batch_size=4), seq_len=4096)
    assert small["gemm_efficiency"] < large["gemm_efficiency"]
    perf = PerfParams()
    assert gemm_efficiency_max(load_hardware("a100-80gb"), perf) == perf.gemm_efficiency_max
    assert gemm_efficiency_max(load_hardware("mi300x"), perf) < perf.gemm_efficiency_max


@pytest.mark.parametrize("check", megatron_checks(), ids=lambda c: c.name)
def test_megatron_table1_within_6_percent(check):
    # Narayanan et al. 2021 Table 1: hardware TFLOP/s per A100 at the authors' layouts
    # (examples/sc21/run_table_1.sh). Five rows set constants; five are held out.
    assert abs(check.error_pct) < 6.0, check


def test_megatron_table1_held_out_rows_within_5_percent():
    # 3.6B, 18.4B, 76.1B, 310.1B and 1T were never used to set a constant.
    held = [c for c in megatron_checks() if not c.fitted]
    assert len(held) == 5 and all(abs(c.error_pct) < 5.0 for c in held), held


@pytest.mark.parametrize("check", korthikanti_checks(), ids=lambda c: c.name)
def test_korthikanti_table5_within_5_percent(check):
    # Korthikanti et al. 2022 Table 5 (calibration set with Megatron Table 1): seconds per
    # iteration on A100, full recompute and selective recompute + sequence parallelism, under
    # Megatron-LM's 2022 conventions with fp32 gradients (the paper's Figure 1 counts 18 B
    # per parameter), so the gradient accumulation is fused into the weight-gradient GEMMs.
    # The target: within 5%.
    assert abs(check.error_pct) < 5.0, check


def test_korthikanti_table5_mean_error_below_calculons():
    # Calculon (Isaev et al. SC23) reports 3.7% mean error on these eight rows.
    errors = [abs(c.error_pct) for c in korthikanti_checks()]
    assert sum(errors) / len(errors) < 3.7


@pytest.mark.parametrize("check", nemo_checks(), ids=lambda c: c.name)
def test_nemo_on_h100_within_6_percent(check):
    # NVIDIA dgxc-benchmarking v25.04 (held out): NeMo, fused kernels, BF16 on DGX H100,
    # Llama 3.1 8B / 70B / 405B on 8-2,048 GPUs, tokens/s per GPU at the published layouts.
    assert abs(check.error_pct) < 6.0, check


@pytest.mark.parametrize("check", nemo_checks(precision="fp8"), ids=lambda c: c.name)
def test_nemo_fp8_on_h100_within_10_percent(check):
    # dgxc-benchmarking v25.04, FP8 (Transformer Engine linears; attention and the output
    # layer BF16): the 70B row on 64 GPUs set fp8_gemm_ratio, the five others are held out.
    # Before attention and the output layer ran at the BF16 peak and the ratio existed,
    # every row was +12% to +47% (the FP8 peak for everything).
    assert abs(check.error_pct) < (1.0 if check.fitted else 10.0), check


def test_fp8_runs_attention_and_the_output_layer_at_the_bf16_peak():
    # The FP8 GEMM ratio scales the block linears only: the attention term and the output
    # layer's share of the GEMM term are the same seconds under fp8 as under bf16.
    from planner.estimators.step_time import flops_inputs, step_time_terms
    from planner.estimators.vec import Degrees
    m, hw = load_model("llama3-8b"), load_hardware("h100-sxm")
    p = count_params(m)
    out = {}
    for prec in ("bf16", "fp8"):
        t = TrainingSpec(tokens=1e9, seq_len=8192, global_batch_size=8, precision=prec,
                         recompute="none")
        lay = Degrees(devices=8, tp=1, pp=1, cp=1, ep=1, dp=8, zero_stage=1,
                      micro_batch_size=1, recompute=0, sequence_parallel=0,
                      pipeline_schedule=0, virtual_stages=1, global_batch_size=8)
        out[prec] = step_time_terms(m, t, lay, hw, p, flops_inputs(m, t, p))
    assert out["fp8"]["compute_attention"] == pytest.approx(out["bf16"]["compute_attention"])
    head = 6 * p.vocab_times_width / (6 * p.matmul_active)  # the head's share of the GEMMs
    ratio = PerfParams().fp8_gemm_ratio
    bf16, fp8 = out["bf16"]["compute_gemm"], out["fp8"]["compute_gemm"]
    # blocks: 1979 / 989.4 TFLOP/s peak x the ratio; the head as in bf16
    expect = bf16 * head + bf16 * (1 - head) * 989.4 / 1978.9 / ratio
    assert fp8 == pytest.approx(expect, rel=1e-3)


@pytest.mark.parametrize("check", torchtitan_checks(), ids=lambda c: c.name)
def test_torchtitan_fsdp2_within_10_percent(check):
    # torchtitan docs/performance.md, FSDP2 on 64 A100, eager kernels (held out): tokens/s
    # per GPU. The target: within 10%.
    assert abs(check.error_pct) < 10.0, check


@pytest.mark.parametrize("check", [c for c in ibm_fsdp_checks() if "a100" in c.name],
                         ids=lambda c: c.name)
def test_ibm_fsdp_on_a_slow_network_within_12_percent(check):
    # IBM/PyTorch FSDP blog (held out): 128 A100 on one 400 Gb/s link per node, where the
    # FSDP traffic only partly hides behind compute (the per-layer overlap model's test).
    assert abs(check.error_pct) < 12.0, check


def test_ibm_fsdp_h100_rows_are_a_known_gap():
    # The blog's H100 runs (SDPA's FlashAttention-2 and eager PyTorch on Hopper, early 2024)
    # reached 32-37% MFU; with FlashAttention-2 at the profile's 0.57 of Hopper's native kernel
    # the model still predicts 6-18% more (was 9-25% at the native kernel's speed). The gap is
    # shown in docs/validation.md; this test notices when it closes or widens.
    errors = [c.error_pct for c in ibm_fsdp_checks() if "h100" in c.name]
    assert len(errors) == 3 and all(4 < e < 20 for e in errors), errors


@pytest.mark.parametrize("check", palm_checks(), ids=lambda c: c.name)
def test_palm_two_pods_within_15_percent(check):
    # Chowdhery et al. 2022 (held out): 46.2% MFU with HSDP inside pods, 2 replicas over DCN.
    assert abs(check.error_pct) < 15.0, check


@pytest.mark.parametrize("check", [c for c in llama3_checks() if "131072" not in c.name],
                         ids=lambda c: c.name)
def test_llama3_table4_8k_rows_within_10_percent(check):
    # Dubey et al. 2024 Table 4 (held out: H100, bf16, fused attention, 8K context), with the
    # default (native) attention kernel: the paper names none.
    assert abs(check.error_pct) < 10.0, check


def test_llama3_table4_128k_row_is_a_known_gap_that_either_unstated_choice_closes():
    # At 128K context (cp 16) attention is ~40% of the FLOPs under PaLM's full count. The
    # paper states neither the count behind its MFU nor the kernel; as the table reads it
    # (full count, the native kernel) the model predicts ~40% more MFU than the 38%
    # reported. With the causal count, or with FlashAttention-2, all three rows are within
    # 6% (docs/validation.md, "Known gaps"). This notices when the gap closes or widens,
    # and when either reading stops fitting.
    table = {c.name: c.error_pct for c in llama3_checks()}
    causal = {c.name: c.error_pct for c in llama3_checks(attention_flops="causal")}
    fa2 = {c.name: c.error_pct for c in llama3_checks(attention_kernel="fa2")}
    long_row = "Llama 3 405B on 16384 H100, seq 131072"
    assert 30 < table[long_row] < 60
    for reading in (causal, fa2):
        assert all(abs(err) < 6 for err in reading.values()), reading
    for name in table:
        if name != long_row:  # at 8K attention is 4% of the FLOPs: a few points either way
            assert 1 < table[name] - fa2[name] < 6 and 1 < table[name] - causal[name] < 6


def test_fa2_attention_runs_at_the_profile_fraction_by_hand():
    # Shah et al. 2024: FlashAttention-3 is 1.5-2x as fast as FlashAttention-2 on H100, so the
    # profile's fraction is 1 / 1.75 = 0.57; on A100 FlashAttention-2 is the native kernel.
    for hw, fraction in (("h100-sxm", 0.57), ("h200", 0.57), ("a100-80gb", 1.0)):
        native = _terms("llama3-8b", _deg(), hw=hw, seq_len=8192)
        fa2 = _terms("llama3-8b", _deg(), hw=hw, seq_len=8192, attention_kernel="fa2")
        assert fa2["compute_attention"] == pytest.approx(native["compute_attention"] / fraction)
        assert fa2["compute_gemm"] == native["compute_gemm"]
        assert fa2["compute_memory"] == native["compute_memory"]


@pytest.mark.parametrize("check", single_gpu_checks(), ids=lambda c: c.name)
def test_single_gpu_eager_runs_within_5_percent(check):
    # planner validate on one H100 / H200 (docs/validation/2026-11-23-*.md), eager PyTorch:
    # the rows that set eager_elementwise_bytes_per_h (kernels: eager). One constant for
    # nine rows of 1B-3B models, 1K-8K context, two GPUs.
    assert abs(check.error_pct) < 5.0, check


def _with_bandwidth(hw, up, out):
    def fig(f, v):
        return Figure(value=v, source=f.source, confidence=f.confidence)
    return hw.model_copy(update={
        "scale_up_bandwidth_gb_per_s_one_way": fig(hw.scale_up_bandwidth_gb_per_s_one_way, up),
        "scale_out_bandwidth_gb_per_s": fig(hw.scale_out_bandwidth_gb_per_s, out)})


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4]), st.sampled_from([0, 1, 3]),
       st.floats(1.0, 4.0), st.floats(1.0, 4.0), st.sampled_from([1, 8, 64]))
def test_more_bandwidth_never_slows_a_step(tp, pp, zero, k_up, k_out, shard):
    m = load_model("llama2-13b")
    hw = load_hardware("h100-sxm")
    t = TrainingSpec(tokens=1e9, seq_len=4096, global_batch_size=256)
    p = count_params(m)
    deg = _deg(devices=64 * tp * pp, tp=tp, pp=pp, dp=64, zero_stage=zero, sequence_parallel=int(tp > 1),
               global_batch_size=256, dp_shard=shard)
    fl = flops_inputs(m, t, p)
    base = step_seconds(step_time_terms(m, t, deg, hw, p, fl))
    up, out = hw.scale_up_bandwidth_gb_per_s_one_way.value, hw.scale_out_bandwidth_gb_per_s.value
    faster = _with_bandwidth(hw, up * k_up, out * k_out)
    assert step_seconds(step_time_terms(m, t, deg, faster, p, fl)) <= base * (1 + 1e-12)


def test_latency_adds_time():
    with_lat = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=1), perf=PerfParams())
    without = _terms("llama3-8b", _deg(tp=8, dp=1, sequence_parallel=1),
                     perf=replace(PerfParams(), latency_intra_s=0.0, latency_inter_s=0.0))
    assert with_lat["tp_comm"] > without["tp_comm"]


def test_fused_attention_is_charged_its_backward_recompute():
    # The attention efficiency is FlashAttention-2's, whose backward counts 2.5x the forward
    # matmuls (QK^T recomputed): attention time = 3.5 x forward with flash, 3 x without
    # (where the unfused path's score traffic is charged to memory instead); the fused
    # kernel executes the causal half of the scores, (s + 1) / 2s at s = 2048.
    flash = _terms("llama3-8b", _deg(), flash_attention=True)
    plain = _terms("llama3-8b", _deg(), flash_attention=False)
    ratio = flash["compute_attention"] / plain["compute_attention"]
    assert ratio == pytest.approx(3.5 / 3 * 2049 / 4096)
    assert flash["compute_gemm"] == pytest.approx(plain["compute_gemm"])
    parts = flash["compute_gemm"] + flash["compute_attention"] + flash["compute_memory"]
    assert parts == pytest.approx(flash["compute"])


def test_sequence_parallel_shards_the_norms_and_dropouts():
    # Without SP the norms/dropouts outside the TP regions run on every TP rank
    # (Korthikanti §4.2.2): more memory traffic per device than with SP.
    on = _terms("llama3-70b", _deg(tp=8, dp=1, sequence_parallel=1))
    off = _terms("llama3-70b", _deg(tp=8, dp=1, sequence_parallel=0))
    assert off["compute_memory"] > on["compute_memory"]
    assert off["tp_comm_total"] == pytest.approx(on["tp_comm_total"])  # same volume


def test_tp_comm_overlap_hides_tp_time_under_gemms():
    plain = _terms("llama3-70b", _deg(tp=8, dp=1, sequence_parallel=1))
    overlap = _terms("llama3-70b", _deg(tp=8, dp=1, sequence_parallel=1, tp_comm_overlap=1))
    hidden = min(0.9 * plain["tp_comm_total"], 0.9 * plain["compute_gemm"])
    assert overlap["tp_comm"] == pytest.approx(plain["tp_comm"] - hidden)


def test_framework_gradient_dtype_sets_the_reduce_volume():
    # Megatron with --bf16 reduces fp32 main_grads (4 B/param), generic bf16 gradients (2 B):
    # ZeRO-1's reduce-scatter doubles, its bf16 parameter all-gather does not.
    n = count_params(load_model("llama3-8b")).total
    generic = _terms("llama3-8b", _deg(zero_stage=1))
    megatron = _terms("llama3-8b", _deg(zero_stage=1, framework=1))
    per_byte = 7 / 8 * n / (450e9 * 0.8)
    assert generic["dp_comm_total"] == pytest.approx(per_byte * (2 + 2))
    assert megatron["dp_comm_total"] == pytest.approx(per_byte * (4 + 2))


def test_fsdp2_under_pipelining_gathers_once_per_step():
    # torch.distributed.pipelining keeps FSDP2 layers gathered and gradients unsharded over
    # the step's micro-batches: 16 micro-batches cost the ZeRO-3 traffic of one.
    kw = dict(devices=16, pp=2, dp=8, zero_stage=3, global_batch_size=128)
    generic = _terms("llama3-8b", _deg(**kw))
    fsdp2 = _terms("llama3-8b", _deg(**kw, framework=2))
    assert generic["dp_comm_total"] > 10 * fsdp2["dp_comm_total"]


def test_offload_moves_the_optimizer_step_to_the_host():
    # ZeRO-Offload: the step is CPU-Adam over the host's shards plus the host-link traffic.
    from planner.estimators.offload import cpu_optimizer_s, offload_transfer_s

    on = _terms("llama3-8b", _deg(zero_stage=1, offload=1, global_batch_size=8))
    n = count_params(load_model("llama3-8b")).total / 8  # this device's ZeRO-1 shard
    host = offload_transfer_s(n, 1, 1, grad_bytes=2, param_bytes=2) + cpu_optimizer_s(n, 8, 1)
    assert on["optimizer"] == pytest.approx(host)
    off = _terms("llama3-8b", _deg(zero_stage=1, global_batch_size=8))
    assert on["optimizer"] > 10 * off["optimizer"]


def test_fused_attention_executes_the_causal_half():
    # A FlashAttention kernel skips the fully masked blocks (Dao 2023 §3.1), so at s = 4096
    # it executes (s + 1) / 2 / s = 4097 / 8192 of the full-convention count; an unfused
    # implementation computes every score and masks after. The counting convention moves
    # MFU, never time.
    from planner.estimators.flops import executed_attention_fraction
    m = load_model("llama3-8b")
    base = dict(tokens=1e9, seq_len=4096, global_batch_size=64)
    assert executed_attention_fraction(m, TrainingSpec(**base)) == pytest.approx(4097 / 8192)
    assert executed_attention_fraction(m, TrainingSpec(**base, attention_flops="causal")) == 1.0
    assert executed_attention_fraction(m, TrainingSpec(**base, flash_attention=False)) == 1.0
    unfused_causal = TrainingSpec(**base, flash_attention=False, attention_flops="causal")
    assert executed_attention_fraction(m, unfused_causal) == pytest.approx(8192 / 4097)
    full = _terms("llama3-8b", _deg(), seq_len=4096)
    causal = _terms("llama3-8b", _deg(), seq_len=4096, attention_flops="causal")
    assert full["compute_attention"] == pytest.approx(causal["compute_attention"])
    assert full["compute"] == pytest.approx(causal["compute"])


def test_eager_kernels_move_the_eager_elementwise_traffic():
    # kernels: eager charges eager_elementwise_bytes_per_h instead of elementwise_bytes_per_h
    # per token per layer; the loss and everything else is the same. By hand for llama3-8b
    # on one H100 (h 4096, 32 layers, bf16, 2048 tokens per micro-batch, 64 micro-batches).
    perf = PerfParams()
    fused = _terms("llama3-8b", _deg(devices=1, dp=1))
    eager = _terms("llama3-8b", _deg(devices=1, dp=1), kernels="eager")
    extra_bytes = ((perf.eager_elementwise_bytes_per_h - perf.elementwise_bytes_per_h)
                   * 4096 * 2 * 2048 * 32 * 64)
    hbm = load_hardware("h100-sxm").hbm_bandwidth_tb_per_s.value * 1e12
    assert eager["compute_memory"] - fused["compute_memory"] == pytest.approx(extra_bytes / hbm)
    assert eager["compute_gemm"] == fused["compute_gemm"]


def test_executed_attention_follows_windows_when_fused_and_s_when_unfused():
    # gemma3-27b: 5 sliding-window layers (w = 1024) to 1 global. A fused kernel executes
    # each layer's causal keys: (w(w+1)/2 + (s-w)w)/s for a windowed layer, (s+1)/2 for a
    # global one; an unfused one builds every layer's s x s scores and masks them.
    from planner.estimators.flops import executed_attention_fraction, keys_per_query
    m = load_model("gemma3-27b")
    s = 8192
    kinds = list(zip(m.layer_types, m.layer_attention_windows()))
    full = sum(keys_per_query(s, k, w, "full") for k, w in kinds)
    causal = 0.0
    for kind, w in kinds:
        causal += (s + 1) / 2 if w is None or w >= s else (w * (w + 1) / 2 + (s - w) * w) / s
    base = dict(tokens=1e9, seq_len=s, global_batch_size=8)
    assert executed_attention_fraction(m, TrainingSpec(**base)) == pytest.approx(causal / full)
    unfused = TrainingSpec(**base, flash_attention=False)
    assert executed_attention_fraction(m, unfused) == pytest.approx(s * m.num_layers / full)
    assert executed_attention_fraction(m, unfused) > 3  # most layers' full s x s, not w


def test_hsdp_replica_all_reduce_follows_the_framework():
    # HSDP on 64 H100 (8 nodes), shard groups of 8 (one node, NVLink 450 x 0.8 GB/s), 8
    # replicas over one NIC each (50 x 0.8 GB/s). Going from 1 to 4 micro-batches adds three
    # micro-batches of ZeRO-3 traffic inside the node (two weight gathers, 2 B, and one
    # gradient reduce-scatter, 2 B generic / 4 B under FSDP2's fp32 reduce_dtype: P x 7/8 of
    # each over NVLink); FSDP2's default also all-reduces the gradient shards across the
    # replicas in every backward (pytorch/pytorch#126166): 3 more of P x 4 / 8 x 2 x 7/8 over
    # the NIC. The generic convention all-reduces once per step.
    P = count_params(load_model("llama3-8b")).total

    def dp_total(framework, batch):
        deg = _deg(devices=64, dp=64, zero_stage=3, dp_shard=8, framework=framework,
                   global_batch_size=batch)
        return _terms("llama3-8b", deg, global_batch_size=batch)["dp_comm_total"]

    nvlink, nic = 450e9 * 0.8, 50e9 * 0.8
    for framework, g_b, replica_every_mb in ((0, 2, False), (2, 4, True)):
        added = dp_total(framework, 256) - dp_total(framework, 64)
        z3_mb = P * (2 * 2 + g_b) * 7 / 8 / nvlink
        across = P * g_b / 8 * 2 * 7 / 8 / nic
        assert added == pytest.approx(3 * z3_mb + 3 * across * replica_every_mb, rel=1e-9)


def test_replica_all_reduce_shares_the_backward_with_the_reduce_scatter_on_the_nics():
    # 64 H100, ZeRO-3 HSDP in shard groups of 16 (two nodes) x 4 replicas, one micro-batch.
    # Each layer's backward carries its weight gather, its gradient reduce-scatter (both
    # through the NICs, the group leaving the node) and then the replica all-reduce of the
    # shards (NICs too): the three hide behind that layer's backward compute together. They
    # had each been hidden behind all of it. Per layer (no latency): gather = reduce = g
    # (2-byte weights and gradients, the same collective), across = P_layer x 2 / 16 x
    # 2 x 3/4 over one NIC (50 x 0.8 GB/s); exposed = the first layer's and every layer's
    # excess, forward (g against f) and backward (2g + across against b).
    m = load_model("llama3-8b")
    L = m.num_layers
    t = _terms("llama3-8b", _deg(devices=64, dp=64, zero_stage=3, dp_shard=16),
               global_batch_size=64, seq_len=1024)
    P = count_params(m)
    layer = (P.total) / L  # the dense parameters spread over the blocks, as data_parallel
    across = layer * 2 / 16 * 2 * 3 / 4 / (50e9 * 0.8)
    g = (t["dp_comm_total"] - L * across) / (3 * L)
    f = t["compute"] / 3 / L
    b = t["compute"] * 2 / 3 / L
    expect = (g + L * max(0.0, g - f)) + (2 * g + across + L * max(0.0, 2 * g + across - b))
    assert 2 * g + across > b  # the case where hiding them one by one was wrong
    assert t["dp_comm"] == pytest.approx(expect, rel=1e-9)


def test_pipelined_fsdp2_syncs_its_replicas_once_per_step():
    # torch.distributed.pipelining's schedules sync gradients once per step, whatever the
    # shard group (also dp_shard 1, which keeps_unsharded_across_micro_batches does not cover)
    def dp_total(batch):
        deg = _deg(devices=64, tp=8, pp=2, dp=4, zero_stage=3, dp_shard=1, framework=2,
                   global_batch_size=batch)
        return _terms("llama3-8b", deg, global_batch_size=batch)["dp_comm_total"]

    assert dp_total(256) == pytest.approx(dp_total(4))  # 64 micro-batches or 1



@pytest.mark.parametrize("hw", ["tpu-v5p", "gaudi3"])
def test_fp8_is_never_slower_than_bf16_where_the_peaks_are_equal(hw):
    # These profiles list the same FP8 and BF16 peak: FP8 at fp8_gemm_ratio of it would be
    # slower than the 16-bit path (review), so the linears run at the 16-bit rate there
    h = load_hardware(hw)
    assert h.peak_flops_per_s("fp8") == h.peak_flops_per_s("bf16")
    steps = [step_seconds(_terms("llama3-8b", _deg(devices=64, dp=64, zero_stage=1), hw=hw,
                                 seq_len=4096, global_batch_size=64, precision=p))
             for p in ("bf16", "fp8")]
    assert steps[1] == pytest.approx(steps[0])


def test_fp8_without_a_bf16_peak_uses_the_fp16_one():
    # peak_dense_bf16_tflops is optional: FP8's 16-bit parts (attention, the output layer)
    # then run at the FP16 peak, not crash on a missing one (review)
    base = load_hardware("h100-sxm")
    no_bf16 = base.model_copy(update={"peak_dense_bf16_tflops": None})
    m, p = load_model("llama3-8b"), count_params(load_model("llama3-8b"))
    t = TrainingSpec(tokens=1e9, seq_len=4096, global_batch_size=64, precision="fp8")
    deg = _deg(devices=64, dp=64, zero_stage=1)
    a = step_time_terms(m, t, deg, base, p, flops_inputs(m, t, p))
    b = step_time_terms(m, t, deg, no_bf16, p, flops_inputs(m, t, p))
    assert base.peak_flops_per_s("fp16") == base.peak_flops_per_s("bf16")
    assert step_seconds(b) == pytest.approx(step_seconds(a))


def test_a_frozen_output_layer_costs_four_v_h_under_fp8():
    # LoRA freezes the head: forward and input gradient, 4 V h a token, run at the BF16
    # peak; the 6 V h of a trained head had moved block FLOPs to the BF16 rate (review)
    from planner.estimators.step_time import _head_flops_per_token
    from planner.specs.finetune import FinetuneSpec
    p = count_params(load_model("llama3-8b"))
    lora = TrainingSpec(tokens=1e9, seq_len=4096, global_batch_size=64, precision="fp8",
                        finetune=FinetuneSpec(mode="lora"))
    full = TrainingSpec(tokens=1e9, seq_len=4096, global_batch_size=64, precision="fp8")
    assert _head_flops_per_token(lora, p) == 4 * p.vocab_times_width
    assert _head_flops_per_token(full, p) == 6 * p.vocab_times_width


def test_replica_all_reduce_inside_one_node_shares_nvlink_with_the_shard_group():
    # 8 H100 in one node, ZeRO-3 in shard groups of 4 x 2 replicas: both collectives run on
    # NVLink, so the replica all-reduce hides with the gather and reduce-scatter behind each
    # layer's backward, as on the NICs (review). Per layer, no latency: gather = reduce = g,
    # across = P_layer x 2 / 4 x 2 x 1/2 over NVLink (450 x 0.8 GB/s).
    m = load_model("llama3-8b")
    L = m.num_layers
    t = _terms("llama3-8b", _deg(devices=8, dp=8, zero_stage=3, dp_shard=4),
               seq_len=1024, global_batch_size=8)
    layer = count_params(m).total / L
    across = layer * 2 / 4 * 2 * 1 / 2 / (450e9 * 0.8)
    g = (t["dp_comm_total"] - L * across) / (3 * L)
    f, b = t["compute"] / 3 / L, t["compute"] * 2 / 3 / L
    expect = (g + L * max(0.0, g - f)) + (2 * g + across + L * max(0.0, 2 * g + across - b))
    assert 2 * g + across > b
    assert t["dp_comm"] == pytest.approx(expect, rel=1e-9)
