"""Memory per device against ZeRO, Korthikanti and the worked example (formulas.md §3, §8)."""

import pytest

from planner.catalog.catalog import load_model
from planner.estimators.memory import MemoryDefaults, layer_activation_bytes, memory_per_device
from planner.estimators.model_state import model_state_bytes
from planner.estimators.params import count_params
from planner.specs import ParallelismSpec, TrainingSpec

GIB = 2**30
NO_OVERHEAD = MemoryDefaults(runtime_overhead_bytes=0, fragmentation_fraction=0,
                             logits_bytes_per_element=0)


def _train(**kw):
    base = dict(tokens=1e12, seq_len=8192, global_batch_size=512, recompute="none")
    return TrainingSpec(**{**base, **kw})


@pytest.mark.parametrize("stage,expected_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_example(stage, expected_gb):
    # Rajbhandari et al. 2020 Fig. 1: Psi = 7.5B, N_d = 64, mixed-precision Adam (K = 12).
    total = sum(model_state_bytes(7.5e9, "adamw", "bf16", stage, 64))
    assert total / 1e9 == pytest.approx(expected_gb, abs=0.05)


def test_state_recipes_bytes_per_param():
    # formulas.md §3.1 table.
    cases = {("adamw", "bf16"): 16, ("adamw", "fp32"): 16, ("adamw_pure_bf16", "bf16"): 12,
             ("adamw_all_bf16", "bf16"): 8, ("adamw_8bit", "bf16"): 10,
             ("adamw_fp8", "fp8"): 13, ("sgd_momentum", "bf16"): 12, ("sgd_momentum", "fp32"): 12}
    for (opt, prec), per_param in cases.items():
        assert sum(model_state_bytes(1, opt, prec, 0, 1)) == per_param, opt


def test_llama_layer_activations_are_41_sbh():
    # formulas.md §3.3: s b h (12 + 4 g/a + 8 f/h) = 41 sbh bytes for Llama-3-8B, plus the
    # fp32 log-sum-exp of fused attention (4 a s b bytes).
    m = load_model("llama3-8b")
    s, b, h, a = 8192, 1, 4096, 32
    got = layer_activation_bytes(m, _train(), ParallelismSpec(devices=1), moe_layer=False)
    assert got == s * b * (41 * h + 4 * a)


def test_score_matrix_without_flash_attention():
    # formulas.md §3.3: + 2 a s^2 b bytes without FlashAttention; selective recompute drops it.
    m = load_model("llama3-8b")
    par = ParallelismSpec(devices=1)
    flash = layer_activation_bytes(m, _train(), par, False)
    plain = layer_activation_bytes(m, _train(flash_attention=False), par, False)
    sel = layer_activation_bytes(m, _train(flash_attention=False, recompute="selective"), par,
                                 False)
    assert plain - flash == 2 * 32 * 8192**2 - 4 * 32 * 8192
    assert sel == flash - 4 * 32 * 8192


def test_tensor_and_sequence_parallel_scaling():
    # Korthikanti §4.2: TP divides all but the norm and block inputs; TP+SP divides all.
    m = load_model("llama3-70b")
    one = layer_activation_bytes(m, _train(), ParallelismSpec(devices=8), False)
    sp = layer_activation_bytes(m, _train(), ParallelismSpec(devices=8, tp=8), False)
    nosp = layer_activation_bytes(
        m, _train(), ParallelismSpec(devices=8, tp=8, sequence_parallel=False), False)
    assert sp == pytest.approx(one / 8)
    replicated = 8192 * 2 * (2 + 2) * 8192  # two norm inputs + two block inputs, bf16
    assert nosp == pytest.approx(sp + replicated * (1 - 1 / 8))


def test_1f1b_first_stage_holds_all_layers_worth():
    # Korthikanti Eq. 5: the first stage holds p micro-batches of L/p layers = L layers' worth.
    m = load_model("llama2-7b")
    t = _train(seq_len=4096, global_batch_size=64)
    flat = memory_per_device(m, t, ParallelismSpec(devices=4), 80 * GIB, NO_OVERHEAD)
    piped = memory_per_device(m, t, ParallelismSpec(devices=4, pp=4), 80 * GIB, NO_OVERHEAD)
    assert piped.stage == "first" and piped.in_flight_micro_batches == 4
    assert piped.activations_bytes == pytest.approx(flat.activations_bytes)
    inter = memory_per_device(
        m, t, ParallelismSpec(devices=4, pp=4, pipeline_schedule="interleaved",
                              virtual_stages=2), 80 * GIB, NO_OVERHEAD)
    assert inter.activations_bytes == pytest.approx(flat.activations_bytes * (1 + 3 / 8))
    # "interleaved" with one model chunk per rank is plain 1F1B (the factor above would
    # give 1 + 3/4 at v = 1, almost twice what that schedule holds)
    one_chunk = memory_per_device(
        m, t, ParallelismSpec(devices=4, pp=4, pipeline_schedule="interleaved"), 80 * GIB,
        NO_OVERHEAD)
    assert one_chunk.activations_bytes == pytest.approx(piped.activations_bytes)


def test_worked_example_llama3_8b_fsdp_512():
    # formulas.md §8: states 0.25 GB, activations 44.0 GB, logits ~10 GB, total ~57-60 GB.
    # The loss buffers here are 12 B per logit element (measured on an H100,
    # docs/validation/2026-11-23-h100.md): 12 x 8192 x 128256 = 12.6 GB, so ~2.1 GB more.
    m = load_model("llama3-8b")
    r = memory_per_device(m, _train(), ParallelismSpec(devices=512, zero_stage=3), 80 * GIB)
    states = r.weights_bytes + r.gradients_bytes + r.optimizer_bytes
    assert states / 1e9 == pytest.approx(16 * 8.03e9 / 512 / 1e9, rel=0.01)
    assert r.activations_bytes / 1e9 == pytest.approx(44.0, abs=0.1)
    assert r.logits_bytes == 12 * 8192 * 128256
    assert 59 <= r.total_bytes / 1e9 <= 63
    assert r.fits


def test_full_recompute_keeps_block_inputs():
    # formulas.md §3.3 / Table 2: full recompute stores 2 s b h per layer (+ one rebuilt layer).
    m = load_model("llama3-8b")
    r = memory_per_device(m, _train(recompute="full"), ParallelismSpec(devices=64, zero_stage=3),
                          80 * GIB, NO_OVERHEAD)
    layer = layer_activation_bytes(m, _train(), ParallelismSpec(devices=64), False)
    assert r.activations_bytes == 32 * 2 * 8192 * 4096 + layer


def test_pipeline_places_embedding_and_head():
    m = load_model("llama3-8b")
    p = count_params(m)
    t = _train(global_batch_size=8)
    r = memory_per_device(m, t, ParallelismSpec(devices=2, pp=2, zero_stage=0), 80 * GIB,
                          NO_OVERHEAD)
    layer = p.dense_layer.total
    first = 16 * layer + p.embedding
    last = 16 * layer + p.lm_head + p.final_norm
    assert r.weights_bytes == 2 * (first if r.stage == "first" else last)


def test_expert_parallel_divides_experts():
    m = load_model("mixtral-8x7b")
    t = _train(seq_len=4096, global_batch_size=64)
    one = memory_per_device(m, t, ParallelismSpec(devices=8, zero_stage=0), 80 * GIB)
    ep8 = memory_per_device(m, t, ParallelismSpec(devices=8, ep=8, zero_stage=0), 80 * GIB)
    experts = 32 * 8 * 3 * 4096 * 14336
    assert one.weights_bytes - ep8.weights_bytes == pytest.approx(2 * experts * 7 / 8)


def test_does_not_fit_reports_negative_headroom():
    m = load_model("llama3-70b")
    r = memory_per_device(m, _train(), ParallelismSpec(devices=8), 80 * GIB)
    assert not r.fits and r.headroom_bytes < 0
