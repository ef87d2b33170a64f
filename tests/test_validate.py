"""The torch model and `planner validate`: exact counts, measured vs estimated, calibration."""

import builtins
import contextlib
import gc
import json
import os
import subprocess
import sys
import weakref

import pytest

torch = pytest.importorskip("torch")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from planner.planning.answer import estimate_plan  # noqa: E402
from planner.catalog.catalog import load_model, preset_paths  # noqa: E402
from planner.cli import cli  # noqa: E402
from planner.estimators.flops import training_flops  # noqa: E402
from planner.estimators.memory import saved_activation_bytes  # noqa: E402
from planner.estimators.step_time import PERF_MODEL_VERSION  # noqa: E402
from planner.estimators.params import count_params  # noqa: E402
from planner.catalog import calibrations as calibration  # noqa: E402
from planner.profiling import probes  # noqa: E402
from planner.profiling.model import (  # noqa: E402
    RMSNorm, _RMSNormFn, build_model, expanded_kv, rope,
)
from planner.profiling.breakdown import part_of  # noqa: E402
from planner.profiling.shrink import shrink  # noqa: E402
from planner.profiling.validate import RunConfig, training_spec  # noqa: E402
from planner.specs import ParallelismSpec  # noqa: E402


@pytest.mark.parametrize("name", sorted(preset_paths()))
def test_every_preset_shrunk_has_exactly_the_analytic_count(name):
    spec = shrink(load_model(name), 8e6)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_params(spec).total


@pytest.mark.parametrize("name", ["llama3-70b", "mixtral-8x7b", "deepseek-v2-lite",
                                  "falcon-180b", "gemma2-9b", "gpt3-175b", "olmo2-13b"])
def test_full_size_presets_on_meta_device(name):
    spec = load_model(name)
    model = build_model(spec, "meta")
    assert sum(p.numel() for p in model.parameters()) == count_params(spec).total


CASES = [("llama3-8b", "dense GQA SwiGLU"), ("gpt2", "MHA, LayerNorm, biases, learned pos"),
         ("mixtral-8x7b", "MoE top-2"), ("deepseek-v2-lite", "MoE + shared + dense + MLA"),
         ("gemma2-9b", "4 norms, GeGLU"), ("olmo2-7b", "QK-norm"),
         ("falcon-180b", "parallel block, plain MLP")]


@pytest.mark.parametrize("name,what", CASES, ids=[c[0] for c in CASES])
def test_flops_equal_flopcounter(name, what):
    # formulas.md §2.9: FlopCounterMode with the MATH SDPA backend counts exactly
    # 6 N_mm T + 12 L a s^2 d per sequence; MoE experts see only their routed tokens.
    spec = shrink(load_model(name), 6e6)
    cfg = RunConfig(micro_batch_size=2, seq_len=64)
    model = build_model(spec)
    tokens, targets = probes.make_batch(spec.vocab_size, 2, 64, "cpu")
    expected = training_flops(spec, training_spec(cfg)).model_per_token * 2 * 64
    counted = probes.count_flops(model, tokens, targets)
    assert counted.total == expected and not counted.fused_attention_backward


@pytest.mark.parametrize("name", ["llama3-8b", "gpt2", "mixtral-8x7b", "gemma2-9b", "olmo2-7b",
                                  "falcon-180b", "qwen2-7b"])
def test_saved_activations_within_one_percent(name):
    spec = shrink(load_model(name), 6e6)
    cfg = RunConfig(micro_batch_size=2, seq_len=128)
    model = build_model(spec)
    tokens, targets = probes.make_batch(spec.vocab_size, 2, 128, "cpu")
    measured = probes.saved_activation_bytes(model, tokens, targets)
    predicted = saved_activation_bytes(spec, training_spec(cfg), ParallelismSpec(devices=1))
    assert predicted == pytest.approx(measured, rel=0.01)


def test_activation_probe_frees_the_graph_it_inspected():
    # Found on an H100 (docs/validation/2026-11-23-h100.md): when the pack hook returned the
    # tensor itself, ops that save their own output (exp, log_softmax, ...) made a cycle
    # output -> grad_fn -> saved output, and the probe's whole forward stayed alive, adding
    # the activation bytes to the peak measured after it.
    class SavesItsOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.out = torch.nn.Parameter(torch.ones(64)), None

        def forward(self, tokens, targets):
            y = torch.exp(tokens.float()[..., None] * self.w)  # exp saves its result
            self.out = weakref.ref(y)
            return y.sum()

    model = SavesItsOutput()
    tokens = torch.zeros(4, 16, dtype=torch.long)
    # exp saves y (fp32 [4, 16, 64]); the product saves the fp32 tokens (its weight is excluded)
    assert probes.saved_activation_bytes(model, tokens, tokens) == 4 * 16 * 64 * 4 + 4 * 16 * 4
    gc.collect()
    assert model.out() is None


def test_expanded_kv_counts_the_same_flops_and_loss():
    # On a GPU the FLOP count repeats GQA's K/V (the fused kernels' counter formulas need
    # equal heads); it must not change the FLOPs (attention included: MATH backend, which
    # the counter sees through) or the function.
    spec = shrink(load_model("llama3-8b"), 4e6)
    assert spec.kv_heads < spec.num_heads
    model = build_model(spec)
    tokens, targets = probes.make_batch(spec.vocab_size, 2, 32, "cpu")
    counts, losses = [], []
    for expand in (contextlib.nullcontext(), expanded_kv()):
        with FlopCounterMode(display=False) as c, sdpa_kernel(SDPBackend.MATH), expand:
            loss = model(tokens, targets)
            loss.backward()
        counts.append(c.get_total_flops())
        losses.append(loss.detach())
        model.zero_grad(set_to_none=True)
    expected = training_flops(spec, training_spec(RunConfig(micro_batch_size=2, seq_len=32)))
    assert counts[0] == counts[1] == expected.model_per_token * 2 * 32
    assert torch.allclose(losses[0], losses[1])


def test_gqa_model_compiles_without_graph_breaks():
    # The counting switch must not break torch.compile's graph (a ContextVar did: one
    # break per attention layer, and slow compiled timings on the H100).
    spec = shrink(load_model("llama3-8b"), 3e6)
    tokens, targets = probes.make_batch(spec.vocab_size, 2, 32, "cpu")
    explained = torch._dynamo.explain(build_model(spec))(tokens, targets)
    assert explained.graph_break_count == 0


class _FakeMeter:
    """A meter that says 2 Wh over 7.2 s."""

    def start(self):
        pass

    def stop(self):
        return 0.002, "fake meter: measured", 7.2


def test_energy_is_predicted_over_the_metered_window(monkeypatch):
    from planner.catalog.catalog import load_hardware
    from planner.profiling import validate

    # The CPU profile has no TDP; stand in a GPU profile (700 W) to get a prediction.
    h100 = load_hardware("h100-sxm")
    monkeypatch.setattr(validate, "_hardware", lambda cfg, dtype: (h100, "fake", "fake peak"))
    spec = shrink(load_model("llama3-8b"), 2e6)
    cfg = RunConfig(steps=2, warmup=1, micro_batch_size=2, seq_len=32)
    e = validate.run_validation(spec, cfg, energy=_FakeMeter()).get("energy_kwh")
    assert e.measured == 0.002 and "over 7.2 s metered" in e.method
    # 700 W x the 7.2 s window the meter covered (not the steps' own time): 1.4 Wh
    assert e.predicted == pytest.approx(700 * 7.2 / 3.6e6)
    assert e.error_pct == pytest.approx((1.4 - 2.0) / 2.0 * 100)


def test_custom_autograd_functions_are_correct():
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rope, (x,))
    norm = RMSNorm(8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    y = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, w: _RMSNormFn.apply(t, w, 1e-6),
                                    (y, norm.weight))


def test_shrink_keeps_character():
    base = load_model("mixtral-8x7b")
    small = shrink(base, 30e6)
    assert small.d_head == base.d_head
    assert small.num_heads // small.kv_heads == base.num_heads // base.kv_heads
    assert small.moe.num_experts == 8 and small.moe.experts_per_token == 2
    assert small.ffn_hidden_size / small.d_model == pytest.approx(3.5, rel=0.02)
    assert small.vocab_size <= 32768
    assert 15e6 < count_params(small).total < 90e6


def _validate(runner, *args):
    return runner.invoke(cli, ["validate", "--scale-to", "3M", "--steps", "2", "--warmup", "1",
                               "--seq-len", "64", "--micro-batch", "2", "--no-energy", *args])


def test_validate_cli_json(runner):
    result = _validate(runner, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"] == "cpu" and data["steps"] == 2 and data["model"]["num_layers"] >= 2
    by = {q["name"]: q for q in data["quantities"]}
    for name in ("params", "flops_per_step", "activation_bytes", "peak_memory_bytes",
                 "step_time_s", "mfu", "energy_kwh"):
        assert {"predicted", "measured", "error_pct", "unit", "method"} <= set(by[name])
    assert by["params"]["error_pct"] == 0 and by["flops_per_step"]["error_pct"] == 0
    assert abs(by["activation_bytes"]["error_pct"]) < 1
    assert by["step_time_s"]["measured"] > 0 and "median" in by["step_time_s"]["method"]
    assert by["energy_kwh"]["measured"] is None and by["energy_kwh"]["method"] == "not measured"
    assert "model used:" in result.stderr


def test_validate_breakdown_splits_the_step_by_the_models_parts(runner):
    result = _validate(runner, "--format", "json", "--breakdown")
    assert result.exit_code == 0, result.stderr
    by = {q["name"]: q for q in json.loads(result.stdout)["quantities"]}
    parts = [by[f"{p}_s"] for p in ("gemm", "attention", "memory", "optimizer")]
    assert all(p["predicted"] > 0 and p["measured"] > 0 for p in parts)
    assert all(p["verdict"] == "n/a" for p in parts)  # informational: no tolerance
    # CPU operator self time covers the step, apart from Python and dispatch overhead.
    assert 0.3 < sum(p["measured"] for p in parts) / by["step_time_s"]["measured"] < 1.5


@pytest.mark.parametrize("kernel,part", [
    # names from the H100 run (docs/validation/2026-11-23-h100/breakdown.jsonl)
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NTT", "gemm"),
    ("void cutlass::Kernel2<cutlass_75_tensorop_bf16_s1688gemm_bf16_128x128_tn_align1>", "gemm"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64", "attention"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::"
     "(anonymous namespace)::FusedOptimizerTensorListMetadata<4>", "optimizer"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxBackward<4, float>", "memory"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>",
     "memory"),
    ("aten::addmm", "gemm"), ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    ("aten::silu_backward", "memory"),
])
def test_breakdown_sorts_kernel_names_into_parts(kernel, part):
    assert part_of(kernel) == part


def test_validate_max_error_exit_codes(runner):
    ok = _validate(runner, "--max-error", "1e9")
    assert ok.exit_code == 0, ok.stderr
    strict = _validate(runner, "--max-error", "0")
    assert strict.exit_code == 1
    assert "more than 0% off" in strict.stderr and "params" in strict.stdout


def test_calibration_round_trip(runner, tmp_path):
    path = tmp_path / "cal.json"
    result = _validate(runner, "--calibrate", "--calibration", str(path))
    assert result.exit_code == 0, result.stderr
    stored = calibration.load(path)
    assert len(stored) == 1 and stored[0].hardware == "cpu" and 0 < stored[0].measured_hfu
    listed = runner.invoke(cli, ["calibration", "list", "--calibration", str(path)])
    assert "cpu" in listed.stdout
    # an estimate on calibrated hardware uses the stored efficiency and says so
    entry = calibration.Calibration(
        hardware="h100-sxm", precision="bf16", params=8_000_000_000, shape="llama3-8b",
        seq_len=8192, micro_batch_size=1, measured_mfu=0.31, measured_hfu=0.33,
        predicted_mfu=0.36, date="2026-11-23", device_name="NVIDIA H100 80GB HBM3",
        model_version=PERF_MODEL_VERSION)
    calibration.save(entry)  # the default path is this test's (conftest sets it)
    est = estimate_plan("llama3-8b", "h100-sxm", 64, "1T", zero_stage=3)
    plain = estimate_plan("llama3-8b", "h100-sxm", 64, "1T", zero_stage=3,
                          use_calibration=False)
    assert est.step.method == "calibrated performance model"
    # the run measured 0.31 MFU where the model predicted 0.36: compute constants x 0.861,
    # the layout's communication terms kept (a flat 0.33 HFU would have dropped them)
    scale = 0.31 / 0.36
    assert est.step.compute_s == pytest.approx(plain.step.compute_s / scale, rel=0.02)
    assert est.step.dp_comm_s == pytest.approx(plain.step.dp_comm_s, rel=0.5)
    src = {a.name: a.source for a in est.assumptions}["calibration"]
    assert src.startswith("calibrated on 2026-11-23 from a run of llama3-8b")
    assert "gemm_efficiency_max 0.74 -> 0.637" in src
    # a CPU calibration is never applied to a GPU estimate
    calibration.save(calibration.Calibration(
        hardware="cpu", precision="bf16", params=8_000_000_000, shape="cpu-run", seq_len=256,
        micro_batch_size=1, measured_mfu=0.01, measured_hfu=0.01, predicted_mfu=0.5,
        date="2026-11-23", device_name="cpu", model_version=PERF_MODEL_VERSION))
    again = estimate_plan("llama3-8b", "h100-sxm", 64, "1T", zero_stage=3)
    assert again.step.compute_s == pytest.approx(est.step.compute_s)
    cleared = runner.invoke(cli, ["calibration", "clear", "--calibration", str(path)])
    assert cleared.exit_code == 0 and calibration.load(path) == []


def test_validate_refuses_huge_models_on_cpu(runner):
    result = runner.invoke(cli, ["validate", "--model", "llama3-70b", "--no-energy"])
    assert result.exit_code == 1 and "--scale-to" in result.stderr


def test_torch_missing_names_the_extra(runner, monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "pip install torch==2.13.0" in result.stderr and "[profile]" in result.stderr


def _free_port() -> int:
    """A port no one listens on now (a fixed one collides with any other torchrun here)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_distributed_two_processes(strategy):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "planner", "validate",
         "--distributed", "--strategy", strategy, "--scale-to", "2M", "--steps", "2",
         "--warmup", "1", "--seq-len", "64", "--micro-batch", "2", "--format", "json"],
        capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout[out.stdout.index("{"):])
    assert data["world_size"] == 2 and data["bus_bandwidth_gb_per_s"] > 0
    by = {q["name"]: q for q in data["quantities"]}
    # DDP all-reduces every gradient once; ZeRO-3 moves 3x the parameters (ZeRO section 7)
    assert by["sync_bytes_per_step"]["error_pct"] == 0
    assert by["step_time_s"]["measured"] > 0


def test_max_error_judges_only_rows_with_a_tolerance():
    from planner.cli.validate import _check_max_error
    from planner.errors import PlannerError
    from planner.profiling.report import Quantity, ValidationReport

    rep = ValidationReport(device="cpu", device_name="x", torch_version="t", dtype="fp32",
                           model={}, steps=1, warmup=0, micro_batch_size=1, seq_len=8)
    rep.quantities += [Quantity("step_time_s", 1.01, 1.0, "s", "m", 25.0),
                       Quantity("memory_s", 0.2, 1.0, "s", "profiler", None)]  # -80%, shown
    _check_max_error(rep, 10.0)  # the informational -80% does not fail the run
    rep.quantities.append(Quantity("mfu", 0.5, 0.4, "fraction", "m", 25.0))  # +25%
    with pytest.raises(PlannerError, match="worst: mfu"):
        _check_max_error(rep, 10.0)


def test_validate_defaults_fill_a_gpu_and_stay_small_on_a_cpu():
    from planner.cli.validate import defaults_for

    assert defaults_for("cpu", None, None, None) == ("llama3-8b", 20e6, 256)
    assert defaults_for("cuda", None, None, None) == ("llama3.2-1b", None, 2048)
    # what the user gives is kept; a named model keeps the short default sequence
    assert defaults_for("cuda", "gpt2", None, None) == ("gpt2", None, 256)
    assert defaults_for("cuda", None, 50e6, 512) == ("llama3.2-1b", 50e6, 512)
    assert defaults_for("cpu", None, 5e6, 64) == ("llama3-8b", 5e6, 64)


@pytest.mark.parametrize("scale", ["1e30", "10B", "1B"])
def test_cpu_size_guard_applies_to_the_model_built(runner, monkeypatch, scale):
    import time

    import planner.profiling.model as model_mod

    def no_build(*a, **k):
        raise AssertionError("the guard must stop the run before a model is built")

    monkeypatch.setattr(model_mod, "build_model", no_build)
    t0 = time.monotonic()
    result = runner.invoke(cli, ["validate", "--device", "cpu", "--scale-to", scale,
                                 "--no-energy"])
    assert time.monotonic() - t0 < 10
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "too many to train on a CPU" in lines[0], result.stderr


def test_calibration_path_is_checked_before_the_run(runner, monkeypatch, tmp_path):
    import planner.profiling.validate as validate_mod

    def no_run(*a, **k):
        raise AssertionError("the calibration file must be checked before the run")

    monkeypatch.setattr(validate_mod, "run_validation", no_run)
    (tmp_path / "a-file").write_text("")
    for path, why in (("/proc/cal.json", "cannot write the calibration file"),
                      (str(tmp_path / "a-file" / "cal.json"), "is not a directory")):
        result = runner.invoke(cli, ["validate", "--device", "cpu", "--scale-to", "2M",
                                     "--no-energy", "--calibrate", "--calibration", path])
        assert result.exit_code == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0], result.stderr
    broken = tmp_path / "cal.json"
    broken.write_text("{not json")
    result = runner.invoke(cli, ["validate", "--device", "cpu", "--scale-to", "2M",
                                 "--no-energy", "--calibrate", "--calibration", str(broken)])
    assert result.exit_code == 1 and "not valid" in result.stderr
