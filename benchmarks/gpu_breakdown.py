"""Where a training step's GPU time goes, beside what the step-time model charges for it.

Needs a CUDA GPU. Trains a preset a few steps under torch.profiler, sorts every CUDA kernel
into GEMM / attention / memory-bound / optimizer (planner.profiling.breakdown.part_of), and
prints one JSON object per configuration: measured milliseconds per step by part beside the
model's compute_gemm / compute_attention / compute_memory / optimizer terms, and the top
kernels. `planner validate --breakdown` gives the same split in its report; this script adds
the kernel names. (The 2026-11-23 data calls the memory-bound part "other".)

  python benchmarks/gpu_breakdown.py llama3.2-1b:4:2048 gpt2:8:1024 [--compile]
"""

from __future__ import annotations

import json
import sys

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from planner.catalog.catalog import load_hardware, load_model
from planner.profiling.breakdown import PARTS, part_of
from planner.profiling.model import build_model
from planner.profiling.probes import make_batch
from planner.profiling.validate import RunConfig, predicted_step, profile_for_gpu, training_spec

def breakdown(name: str, mb: int, seq: int, compiled: bool, steps: int = 3) -> dict:
    spec = load_model(name)
    cfg = RunConfig(micro_batch_size=mb, seq_len=seq, device="cuda", dtype="bf16")
    model = build_model(spec, "cuda", torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    run = torch.compile(model) if compiled else model
    tokens, targets = make_batch(spec.vocab_size, mb, seq, "cuda")

    def step():
        run(tokens, targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    end.record()
    torch.cuda.synchronize()
    measured = dict.fromkeys(PARTS, 0.0)
    top: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            ms = e.device_time_total / 1e3 / steps
            measured[part_of(e.name)] += ms
            top[e.name] = top.get(e.name, 0.0) + ms
    hw = load_hardware(profile_for_gpu(torch.cuda.get_device_name()) or "h100-sxm")
    _, _, terms = predicted_step(spec, training_spec(cfg), hw)
    predicted = {"gemm": terms["compute_gemm"] * 1e3, "attention": terms["compute_attention"] * 1e3,
                 "optimizer": terms["optimizer"] * 1e3, "memory": terms["compute_memory"] * 1e3}
    return {"model": name, "micro_batch": mb, "seq_len": seq, "compiled": compiled,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "wall_ms_per_step_profiled": start.elapsed_time(end) / steps,
            "kernel_ms_per_step": measured, "predicted_ms_per_step": predicted,
            "gemm_efficiency_predicted": terms["gemm_efficiency"],
            "top_kernels_ms": dict(sorted(top.items(), key=lambda kv: -kv[1])[:12])}


def main(argv: list[str]) -> None:
    compiled = "--compile" in argv
    for item in (a for a in argv if not a.startswith("--")):
        name, mb, seq = item.split(":")
        print(json.dumps(breakdown(name, int(mb), int(seq), compiled)), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])
