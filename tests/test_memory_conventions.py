"""HSDP, reshard_after_forward, framework conventions and offload in the memory model,
each against a value derived by hand (docs/formulas.md §3.2; docs/performance-model.md)."""

import numpy as np
import pytest
from pydantic import ValidationError

from planner.catalog.catalog import load_model
from planner.estimators.memory import MemoryDefaults, memory_per_device, memory_terms
from planner.estimators.model_state import (
    framework_state_bytes, keeps_unsharded_across_micro_batches, model_state_bytes,
)
from planner.estimators.params import count_params
from planner.estimators.vec import Degrees
from planner.specs import ParallelismSpec, TrainingSpec

GIB = 2**30
BARE = MemoryDefaults(runtime_overhead_bytes=0, fragmentation_fraction=0,
                      logits_bytes_per_element=0)


def _train(**kw):
    return TrainingSpec(**{**dict(tokens=1e12, seq_len=4096, global_batch_size=512), **kw})


def _mem(model, training=None, **par):
    return memory_per_device(load_model(model), training or _train(),
                             ParallelismSpec(**par), 80 * GIB, BARE)


def test_hsdp_shards_states_over_the_shard_group_only():
    # llama3-8b on 64 devices, ZeRO-3 sharded within groups of 8 and replicated 8 times:
    # each device holds 16 B x N / 8 of states (not N / 64).
    n = count_params(load_model("llama3-8b")).total
    full = _mem("llama3-8b", devices=64, zero_stage=3)
    hsdp = _mem("llama3-8b", devices=64, zero_stage=3, dp_shard=8)
    assert hsdp.weights_bytes == pytest.approx(2 * n / 8)
    assert hsdp.gradients_bytes == pytest.approx(2 * n / 8)
    assert hsdp.optimizer_bytes == pytest.approx(12 * n / 8)
    assert full.optimizer_bytes == pytest.approx(12 * n / 64)
    assert hsdp.activations_bytes == full.activations_bytes
    # with cp, the shard group is dp_shard x cp: 4 x 2 = 8 ranks again
    cp = _mem("llama3-8b", devices=64, zero_stage=3, cp=2, dp_shard=4)
    assert cp.optimizer_bytes == pytest.approx(12 * n / 8)
    # dp_shard = 1 is plain replication: no sharding and no gather buffer
    one = _mem("llama3-8b", devices=64, zero_stage=3, dp_shard=1)
    assert one.optimizer_bytes == pytest.approx(12 * n) and one.fsdp_buffer_bytes == 0


def test_no_reshard_after_forward_keeps_every_layer_gathered():
    # FSDP2 reshard_after_forward=False: all of the stage's parameters stay unsharded from
    # forward to backward, at the gather dtype (bf16: 2 B), instead of 2 layers' worth.
    m = load_model("llama3-8b")
    p = count_params(m)
    raf = _mem("llama3-8b", devices=64, zero_stage=3)
    keep = _mem("llama3-8b", devices=64, zero_stage=3, reshard_after_forward=False)
    assert raf.fsdp_buffer_bytes == 2 * 2 * p.dense_layer.total
    assert keep.fsdp_buffer_bytes == pytest.approx(2 * p.total)  # 16.06 GB
    assert keep.fsdp_buffer_bytes / 1e9 == pytest.approx(16.06, abs=0.01)
    # ZeRO 1/2 keep whole weights anyway: no gather buffer either way
    z1 = _mem("llama3-8b", devices=64, zero_stage=1, reshard_after_forward=False)
    assert z1.fsdp_buffer_bytes == 0


def test_fsdp2_pipelining_accumulates_unsharded_fp32_gradients():
    # torchtitan with pp > 1: the pipeline schedule turns off reshard-after-backward and
    # gradient sync until the last micro-batch, so each stage keeps its parameters gathered
    # (bf16) and fp32 gradients unsharded across the 16 micro-batches.
    t = _train()  # 512 sequences / (dp 32 x b 1) = 16 micro-batches
    r = _mem("llama3-8b", t, devices=64, pp=2, zero_stage=3, framework="fsdp2")
    n_stage = r.weights_bytes * 32 / 4  # fsdp2 keeps fp32 sharded parameters
    assert r.fsdp_buffer_bytes == pytest.approx(2 * n_stage)
    assert r.gradients_bytes == pytest.approx(4 * n_stage / 32 + 4 * n_stage)
    # without a pipeline, torchtitan reduce-scatters every micro-batch: nothing extra
    flat = _mem("llama3-8b", t, devices=64, zero_stage=3, framework="fsdp2")
    n = count_params(load_model("llama3-8b")).total
    assert flat.gradients_bytes == pytest.approx(4 * n / 64)
    # one micro-batch per step: nothing to accumulate
    one = _mem("llama3-8b", _train(global_batch_size=32), devices=64, pp=2, zero_stage=3,
               framework="fsdp2")
    assert one.gradients_bytes == pytest.approx(4 * (one.weights_bytes * 32 / 4) / 32)


def test_megatron_fp32_main_grads_cost_4_gib_on_llama2_70b_tp8_pp4():
    # Issue 12: Megatron keeps fp32 main-grads with --bf16, ~4 GiB/GPU more on Llama-2-70B
    # at tp8 pp4 than 2 bytes/param. 69.0e9 / 32 ~ 2.16e9 local parameters x 2 B = 4.0 GiB.
    par = dict(devices=256, tp=8, pp=4, zero_stage=1)
    gen = _mem("llama2-70b", **par)
    meg = _mem("llama2-70b", **par, framework="megatron")
    assert meg.gradients_bytes == pytest.approx(2 * gen.gradients_bytes)
    extra = (meg.gradients_bytes - gen.gradients_bytes) / GIB
    assert extra == pytest.approx(4.0, abs=0.05)
    # distributed optimizer, bf16 params + fp32 grads: 6 + 12/d bytes per parameter
    n_local = gen.weights_bytes / 2
    states = meg.weights_bytes + meg.gradients_bytes + meg.optimizer_bytes
    assert states == pytest.approx(n_local * (6 + 12 / 8))


def test_megatron_fused_swiglu_saves_three_ffn_width_tensors():
    # Llama-2-70B layer, f = 28672, tp 8 + SP, s = 4096, b = 1: one FFN-width bf16 tensor
    # less per layer = 4096 x 28672 x 2 / 8 bytes, times the 20 layers x 4 in-flight
    # micro-batches of the first 1F1B stage.
    par = dict(devices=256, tp=8, pp=4, zero_stage=1)
    t = _train(recompute="none")
    gen = _mem("llama2-70b", t, **par)
    meg = _mem("llama2-70b", t, **par, framework="megatron")
    per_layer = 4096 * 28672 * 2 / 8
    assert gen.stage == meg.stage == "first" and gen.in_flight_micro_batches == 4
    assert gen.activations_bytes - meg.activations_bytes == pytest.approx(20 * 4 * per_layer)


def test_framework_state_bytes_by_hand():
    # generic / deepspeed: ZeRO's 2 + 2 + 12; megatron bf16: fp32 grads (2 + 4 + 12 = 18);
    # megatron fp16: fp32 main grads in the optimizer (2 + 2 + 16 = 20); fsdp2: fp32
    # sharded params and grads, fp32 m, v (4 + 4 + 8 = 16) gathered in bf16.
    assert framework_state_bytes("adamw", "bf16", 0) == (2, 2, 12, 2)
    assert framework_state_bytes("adamw", "bf16", 3) == (2, 2, 12, 2)
    assert framework_state_bytes("adamw", "bf16", 1) == (2, 4, 12, 2)
    assert framework_state_bytes("adamw", "fp16", 1) == (2, 2, 16, 2)
    assert framework_state_bytes("adamw", "fp32", 1) == (4, 4, 8, 4)
    assert framework_state_bytes("adamw", "bf16", 2) == (4, 4, 8, 2)
    assert framework_state_bytes("adamw_all_bf16", "bf16", 2) == (2, 2, 4, 2)
    # Megatron distributed optimizer table: fp16 4 + 16/d
    assert sum(model_state_bytes(1, "adamw", "fp16", 1, 8, 1)) == pytest.approx(4 + 16 / 8)
    # arrays of framework codes, as the search passes them
    w, g, o, gathered = framework_state_bytes("adamw", "bf16", np.array([0, 1, 2, 3]))
    assert list(g) == [2, 4, 4, 2] and list(w) == [2, 2, 4, 2] and list(o) == [12, 12, 8, 12]


def test_grad_dtype_sets_the_gradient_bytes_by_hand():
    # Megatron's distributed-optimizer docs, bytes per parameter without a distributed
    # optimizer: "fp16 param, fp16 grads" 20, "bf16 param, fp32 grads" 18. --fp16 with
    # --accumulate-allreduce-grads-in-fp32 is the 18-byte one: fp32 main_grad, and the
    # optimizer steps on it directly (no fp32 copy).
    assert framework_state_bytes("adamw", "fp16", 1, "fp32") == (2, 4, 12, 2)
    assert framework_state_bytes("adamw", "fp16", 1, "fp16") == (2, 2, 16, 2)
    assert framework_state_bytes("adamw", "bf16", 1, "fp32") == (2, 4, 12, 2)
    # Megatron-core --grad-reduce-in-bf16: bf16 main_grad, fp32 main grads at the step
    assert framework_state_bytes("adamw", "bf16", 1, "bf16") == (2, 2, 16, 2)
    # DeepSpeed grad_accum_dtype fp32 / generic: 2 + 4 + 12
    assert framework_state_bytes("adamw", "bf16", 0, "fp32") == (2, 4, 12, 2)
    assert framework_state_bytes("adamw", "bf16", 3, "bf16") == (2, 2, 12, 2)
    # FSDP2 as torchtitan runs it: fp32 gradients whatever is given
    assert framework_state_bytes("adamw", "bf16", 2, "fp32") == (4, 4, 8, 2)
    # arrays of framework codes
    _, g, o, _ = framework_state_bytes("adamw", "fp16", np.array([0, 1, 2, 3]), "fp32")
    assert list(g) == [4, 4, 4, 4] and list(o) == [12, 12, 8, 12]
    # the memory model follows: Llama-2-70B at tp8 pp4, generic with fp32 gradients holds
    # Megatron's bf16 gradient bytes
    par = dict(devices=256, tp=8, pp=4, zero_stage=1)
    meg = _mem("llama2-70b", **par, framework="megatron")
    gen32 = _mem("llama2-70b", _train(grad_dtype="fp32"), **par)
    assert gen32.gradients_bytes == pytest.approx(meg.gradients_bytes)


def test_grad_dtype_names_the_resolved_dtype():
    from planner.estimators.model_state import grad_dtype_of
    assert grad_dtype_of("adamw", "bf16", 1) == "fp32"
    assert grad_dtype_of("adamw", "fp16", 1) == "fp16"
    assert grad_dtype_of("adamw", "fp16", 1, "fp32") == "fp32"
    assert grad_dtype_of("adamw", "bf16", 0) == "bf16"
    assert grad_dtype_of("adamw", "fp8", 0) == "bf16"
    assert grad_dtype_of("adamw", "bf16", 2) == "fp32"
    assert grad_dtype_of("adamw", "fp32", 0) == "fp32"
    # recipes that keep bf16 gradients under fp32 weights are labelled so (not "fp32"/"tf32")
    assert grad_dtype_of("adamw_pure_bf16", "fp32", 0) == "bf16"
    assert grad_dtype_of("adamw_8bit", "tf32", 0) == "bf16"


@pytest.mark.parametrize("optimizer, precision, grad, valid", [
    ("adamw", "bf16", "fp16", "fp32 or bf16"), ("adamw", "fp16", "bf16", "fp32 or fp16"),
    ("adamw", "fp32", "bf16", "fp32"), ("adamw", "fp8", "fp16", "fp32 or bf16"),
    ("adamw_pure_bf16", "fp32", "fp16", "fp32 or bf16")])
def test_grad_dtype_must_be_fp32_or_the_recipes_own(optimizer, precision, grad, valid):
    from planner.estimators.model_state import grad_dtype_error
    why = grad_dtype_error(optimizer, precision, 0, grad)
    assert why.startswith(f"--grad-dtype {grad} with --precision {precision}: ")
    assert f"valid --grad-dtype: {valid} (" in why
    for ok in valid.split(" or "):
        assert grad_dtype_error(optimizer, precision, 0, ok) is None


def test_giving_the_default_grad_dtype_changes_nothing():
    # Every recipe, precision and framework: --grad-dtype set to the dtype the convention
    # already has gives the same bytes (a reviewer found megatron fp16 with the no-master
    # recipes, and fsdp2's bf16 recipes, answering differently).
    from planner.estimators.model_state import grad_dtype_error, grad_dtype_of
    from planner.vocab import OPTIMIZERS, PRECISIONS
    for opt in OPTIMIZERS:
        for prec in PRECISIONS:
            for fw in range(4):
                own = grad_dtype_of(opt, prec, fw)
                assert grad_dtype_error(opt, prec, fw, own) is None, (opt, prec, fw)
                assert framework_state_bytes(opt, prec, fw, own) == \
                    framework_state_bytes(opt, prec, fw), (opt, prec, fw, own)
                assert own in ("fp32", "bf16", "fp16"), (opt, prec, fw, own)


def test_fsdp2_keeps_its_sharded_parameters_dtype():
    from planner.estimators.model_state import grad_dtype_error, grad_dtype_of
    assert grad_dtype_of("adamw", "bf16", 2) == "fp32"
    assert grad_dtype_of("adamw_pure_bf16", "bf16", 2) == "bf16"
    assert "keeps fp32 gradients" in grad_dtype_error("adamw", "bf16", 2, "bf16")
    assert "keeps bf16 gradients" in grad_dtype_error("adamw_pure_bf16", "bf16", 2, "fp32")
    assert grad_dtype_error("adamw_pure_bf16", "bf16", 2, "bf16") is None


def test_deepspeed_is_zero_accounting():
    a = _mem("llama3-8b", devices=64, zero_stage=3)
    b = _mem("llama3-8b", devices=64, zero_stage=3, framework="deepspeed")
    assert a == b


def test_offload_moves_optimizer_and_gradients_to_the_host():
    # ZeRO-Offload: optimizer states on the host, gradients sent there as each layer's are
    # reduced (one layer's gradients stay as the bucket); with parameters too, the device
    # holds only the streamed layers (2 x largest layer in bf16).
    p = count_params(load_model("llama3-8b"))
    layer = p.dense_layer.total
    none = _mem("llama3-8b", devices=8, zero_stage=3)
    opt = _mem("llama3-8b", devices=8, zero_stage=3, offload="optimizer")
    both = _mem("llama3-8b", devices=8, zero_stage=3, offload="optimizer_params")
    assert opt.optimizer_bytes == 0 and opt.gradients_bytes == 0
    assert opt.weights_bytes == none.weights_bytes == 2 * p.total / 8
    assert opt.fsdp_buffer_bytes == none.fsdp_buffer_bytes + 2 * layer
    assert both.weights_bytes == 0 and both.fsdp_buffer_bytes == opt.fsdp_buffer_bytes
    # a single GPU (no ZeRO sharding) streams its parameters too when they are on the host
    # (DeepSpeed runs single-GPU ZeRO-Offload as stage 2: one rank holds every shard)
    single = _mem("llama3-8b", devices=1, zero_stage=2, offload="optimizer_params")
    assert single.weights_bytes == 0 and single.fsdp_buffer_bytes == 2 * 2 * layer + 2 * layer
    assert none.activations_bytes == opt.activations_bytes


def test_memory_terms_take_arrays_of_the_new_degrees():
    # One call over four layouts equals four scalar calls (the search's contract).
    m, t = load_model("llama3-8b"), _train()
    cols = dict(devices=64, tp=1, pp=2, cp=1, ep=1, dp=32, zero_stage=3, micro_batch_size=1,
                recompute=1, sequence_parallel=0, pipeline_schedule=0, virtual_stages=1,
                global_batch_size=512)
    arr = dict(dp_shard=np.array([32, 8, 32, 4]), reshard_after_forward=np.array([1, 0, 1, 1]),
               framework=np.array([0, 1, 2, 2]), offload=np.array([0, 0, 1, 2]))
    many = memory_terms(m, t, Degrees(**cols, **arr), BARE)["total"]
    for i in range(4):
        one = memory_terms(m, t, Degrees(**cols, **{k: int(v[i]) for k, v in arr.items()}),
                           BARE)["total"]
        assert many[i] == pytest.approx(one)
    assert keeps_unsharded_across_micro_batches(Degrees(**cols, framework=2)) == 1


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([1, 2, 8]), pp=st.sampled_from([1, 2, 4]),
       zero=st.sampled_from([0, 1, 2, 3]), shard_div=st.sampled_from([1, 2, 4]),
       framework=st.sampled_from(["generic", "megatron", "fsdp2", "deepspeed"]))
def test_properties_of_the_execution_choices(tp, pp, zero, shard_div, framework):
    # Offloading never needs more device memory than not (one layer's gradient bucket is
    # less than the gradients it replaces); a smaller shard group never needs less; keeping
    # gathered parameters never needs less.
    base = dict(devices=64, tp=tp, pp=pp, zero_stage=zero, framework=framework)
    dp = 64 // (tp * pp)
    offloads = {"opt": {"offload": "optimizer"}, "both": {"offload": "optimizer_params"}}
    hsdp = {"hsdp": {"dp_shard": max(1, dp // shard_div)}}
    total = {k: _mem("llama3-8b", **base, **kw).total_bytes for k, kw in {
        # offload and a shard group below dp need ZeRO 1-3 (refused at 0)
        "none": {}, **(offloads if zero else {}), **(hsdp if zero else {}),
        "keep": {"reshard_after_forward": False},
    }.items()}
    if zero:
        assert total["both"] <= total["opt"] <= total["none"] + 1
        assert total["hsdp"] >= total["none"] - 1
    assert total["keep"] >= total["none"] - 1


def test_offload_without_zero_is_refused_and_the_search_skips_it():
    # DeepSpeed's offload_optimizer is valid for ZeRO stages 1-3 only; FSDP CPUOffload is ZeRO-3
    with pytest.raises(ValidationError, match="--offload optimizer needs --zero 1, 2 or 3"):
        ParallelismSpec(devices=8, zero_stage=0, offload="optimizer")
    from planner.planning.answer import estimate_plan

    est = estimate_plan("llama3-8b", "h100-sxm", 8, "1B", offload="optimizer")
    assert est.layout.zero_stage >= 1
