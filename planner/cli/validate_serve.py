"""`planner validate --serve`: prefill and decode of a real torch model, timed, against the
serving estimators (planner/profiling/serve_bench.py)."""

from __future__ import annotations

import click

from planner.report.tabular import dumps_json


def validate_serve(spec, device: str, dtype: str, steps: int, warmup: int,
                   hardware: str | None, fmt: str) -> None:
    """Run the serving bench and print predicted beside measured."""
    import torch

    from planner.estimators.serving import ServePerf
    from planner.profiling.report import ValidationReport
    from planner.profiling.serve_bench import CPU_PERF, ServeBenchConfig, run_serve_bench

    if device == "cuda":
        from planner.catalog.catalog import load_hardware
        from planner.errors import SpecError
        from planner.profiling.validate import profile_for_gpu

        name = torch.cuda.get_device_name()
        prof = hardware or profile_for_gpu(name)
        if prof is None:
            raise SpecError(f"no hardware profile matches GPU '{name}'; pass --hardware NAME")
        hw, perf = load_hardware(prof), ServePerf(step_overhead_s=0.0)
        how = f"{prof} profile"
    else:
        from planner.profiling import probes
        from planner.profiling.cpu_profile import cpu_profile

        tdtype = torch.float32 if dtype == "fp32" else torch.bfloat16
        peak, bw = probes.cpu_matmul_peak(tdtype), probes.cpu_memory_bandwidth()
        hw, perf, name = cpu_profile(peak, bw), CPU_PERF, cpu_profile(peak, bw).display_name
        how = (f"measured: {peak / 1e9:.1f} GFLOP/s {dtype} matmul peak (90% reached), "
               f"{bw / 1e9:.1f} GB/s copy bandwidth")
    cfg = ServeBenchConfig(steps=steps, warmup=warmup, device=device, dtype=dtype)
    rep = ValidationReport(device=device, device_name=name, torch_version=torch.__version__,
                           dtype=dtype, model=spec.model_dump(mode="json"), steps=steps,
                           warmup=warmup, micro_batch_size=max(cfg.batches),
                           seq_len=max(cfg.contexts))
    run_serve_bench(spec, hw, cfg, perf, rep)
    if fmt == "json":
        click.echo(dumps_json({**rep.to_dict(), "hardware_basis": how}))
        return
    from planner.report.tabular import render_rows

    rows = [{**q.to_dict(), "error_pct": None if q.error_pct is None else f"{q.error_pct:+.1f}"}
            for q in rep.quantities]
    cols = ["name", "predicted", "measured", "error_pct", "verdict", "unit", "method"]
    if fmt == "csv":
        click.echo(render_rows(rows, cols, "csv"), nl=False)
        return
    head = (f"serving: device {device} ({name}), torch {torch.__version__}, {dtype}, {steps} "
            f"steps after {warmup} warm-up per row; predicted with {how}\n")
    click.echo(head + render_rows(rows, cols, fmt), nl=False)
