"""Rendering an Estimate: a readable report, JSON, markdown or one CSV row."""

from __future__ import annotations


from planner.report.tabular import flatten, render_rows
from planner.results import Estimate
from planner.report.fmt import carbon, energy, gib, money
from planner.units import fmt_count
from planner.vocab import KEPT_WEIGHTS, layout_extras, shard_group
from planner.report.tabular import dumps_json


_gib, _money, _energy, _carbon = gib, money, energy, carbon


def _summary_lines(e: Estimate) -> list[tuple[str, str]]:
    m, lay, f, mem, th = e.model, e.layout, e.flops, e.memory_per_device, e.throughput
    active = f" ({fmt_count(m.params_active)} active)" if m.moe else ""
    tokens_per_step = lay.global_batch_size * lay.seq_len
    fits = "fits" if mem.fits else "DOES NOT FIT"
    free = "free" if mem.fits else "over"
    tuned = [] if m.finetune is None else [
        ("Fine-tune", f"{m.finetune}: {fmt_count(m.params_trainable)} trainable, "
                      f"{fmt_count(m.params_frozen)} frozen")]
    workspace = f", dequantisation {_gib(mem.dequant_workspace_bytes)}" \
        if mem.dequant_workspace_bytes else ""
    return [
        ("Model", f"{m.name}: {fmt_count(m.params_total)} params{active}, {m.attention}, "
                  f"{m.num_layers} layers, d_model {m.d_model}"),
        *tuned,
        ("Hardware", f"{lay.devices} x {e.hardware.name} ({e.hardware.display_name}), "
                     f"{e.hardware.precision} peak {e.hardware.peak_tflops:g} TFLOP/s"),
        ("Layout", f"dp {lay.dp} x tp {lay.tp} x pp {lay.pp} x cp {lay.cp} (ep {lay.ep}), "
                   f"ZeRO-{lay.zero_stage}{_hsdp(lay)}, SP "
                   f"{'on' if lay.sequence_parallel else 'off'}, {lay.pipeline_schedule}"
                   f"{f' (v {lay.virtual_stages})' if lay.virtual_stages > 1 else ''}, "
                   f"recompute {lay.recompute}"),
        ("", _execution_line(lay)),
        *_choice_lines(e),
        ("Batch", f"{lay.global_batch_size} x {lay.seq_len} = {fmt_count(tokens_per_step)} "
                  f"tokens/step, micro-batch {lay.micro_batch_size}, "
                  f"{lay.num_micro_batches} micro-batches per replica"),
        ("FLOPs", f"{f.per_token:.3e} per token (model, {f.convention}, attention "
                  f"{f.attention_fraction:.0%}); total {f.total:.3e}; executed with "
                  f"recompute {f.hardware_total:.3e}"),
        ("Memory", f"{_gib(mem.total_bytes)} of {_gib(mem.capacity_bytes)} per device "
                   f"({mem.stage} stage): {fits}, {_gib(abs(mem.headroom_bytes))} {free}"),
        ("", f"weights {_gib(mem.weights_bytes)}, grads {_gib(mem.gradients_bytes)}, "
             f"optimizer {_gib(mem.optimizer_bytes)}, activations {_gib(mem.activations_bytes)}"
             f" ({mem.in_flight_micro_batches} micro-batch(es) in flight), logits "
             f"{_gib(mem.logits_bytes)}, FSDP buffers {_gib(mem.fsdp_buffer_bytes)}, "
             f"runtime {_gib(mem.runtime_overhead_bytes)}, fragmentation "
             f"{_gib(mem.fragmentation_bytes)}{workspace}"),
        ("Throughput", f"{th.tflops_per_device:.0f} TFLOP/s per device executed, MFU "
                       f"{th.mfu:.1%}, HFU {th.hfu:.1%}, {th.tokens_per_s_per_device:,.0f} "
                       f"tokens/s per device, step {e.time.step_time_s:.2f} s"),
        ("Step", _step_line(e)),
        ("Power", _power_line(e)),
        *_reliability_lines(e),
    ]


def _execution_line(lay) -> str:
    onoff = {True: "on", False: "off"}
    return (f"framework {lay.framework}, TP comm overlap {onoff[lay.tp_comm_overlap]}, "
            f"DP comm overlap {onoff[lay.dp_comm_overlap]}, "
            f"offload {lay.offload}, dropout {onoff[lay.dropout]}, {lay.kernels} kernels, "
            f"{_grads(lay)}, {lay.attention_kernel} attention kernel")


def _grads(lay) -> str:
    """The gradients' dtype: LoRA adapters' own, and the base weights' where any train."""
    if lay.adapter_grad_dtype is None:
        return f"{lay.grad_dtype} gradients"
    if not lay.base_grads:
        return f"{lay.adapter_grad_dtype} adapter gradients"
    if lay.adapter_grad_dtype == lay.grad_dtype:
        return f"{lay.grad_dtype} adapter and base-weight gradients"
    return f"{lay.adapter_grad_dtype} adapter and {lay.grad_dtype} base-weight gradients"


def _power_line(e: Estimate) -> str:
    en = e.energy
    pue = f" x PUE {en.pue:g}" if en.scope == "facility" else ""
    return (f"{en.power_per_device_w:,.0f} W per device slot ({en.scope} scope){pue}; grid "
            f"{e.carbon.grid_g_co2e_per_kwh:,.0f} g CO2e/kWh ({e.carbon.region})")


def _duration(s: float) -> str:
    if s < 0.1:  # a LoRA checkpoint writes in milliseconds: '0.017 s', not '0.0 s'
        return f"{s:.2g} s"
    return f"{s:,.1f} s" if s < 120 else f"{s / 60:,.1f} min" if s < 7200 else \
        f"{s / 3600:,.1f} h" if s < 172_800 else f"{s / 86_400:,.1f} days"


def _reliability_lines(e: Estimate) -> list[tuple[str, str]]:
    r = e.reliability
    if r is None:
        return []
    # a fine-tune with frozen weights checkpoints what trains (reliability.checkpoint_bytes_for)
    what = "trainable weights" if e.model.params_frozen else "weights"
    size = f"{r.checkpoint_bytes / 1e9:,.0f} GB" if r.checkpoint_bytes >= 1e9 else \
        f"{r.checkpoint_bytes / 1e6:,.3g} MB"
    return [("Checkpoint", f"{size} ({what} + optimizer state), "
                           f"written in {_duration(r.checkpoint_write_s)} at "
                           f"{r.storage_gb_per_s:,.4g} GB/s aggregate, every "
                           f"{_duration(r.checkpoint_interval_s)} (Young/Daly)"),
            ("Failures", f"{r.interruptions:,.1f} interruptions expected, one every "
                         f"{_duration(r.mean_time_between_interruptions_h * 3600)}, "
                         f"{_duration(r.restart_s)} to restart each: goodput "
                         f"{r.model_goodput:.3f}"),
            ("Stalls", f"{r.stall_fraction:.1%} of wall clock lost to stragglers, data and "
                       f"evaluation pauses and hangs{_stall_span(e)}: goodput {r.goodput:.3f} "
                       f"in all{_goodput_given(e)}")]


def _stall_span(e: Estimate) -> str:
    """' (0-15.5% across the range)' when the cases differ (the defaults)."""
    best, worst = e.reliability.stall_range
    return "" if best == worst else f" ({best:.3g}-{worst:.1%} across the range)"


def _goodput_given(e: Estimate) -> str:
    """'; not used: --goodput given' when the user fixed the goodput."""
    a = next((x for x in e.assumptions if x.name == "goodput_expected"), None)
    return "; not used: --goodput given" if a is not None and not a.defaulted else ""


_FLAG = {"tp": "tp", "pp": "pp", "cp": "cp", "ep": "ep", "zero_stage": "zero",
         "micro_batch_size": "micro-batch", "recompute": "recompute",
         "virtual_stages": "virtual stages", "dp_shard": "ZeRO shard group",
         "reshard_after_forward": "reshard after forward"}


def _hsdp(lay) -> str:
    """' (HSDP: shard 8 x 16 replicas)' (ZeRO-3; ZeRO-1/2: ' (optimizer sharded over 8, 16
    replicas)') and/or ', weights kept from forward to backward' when they apply."""
    group = shard_group(lay.zero_stage, lay.dp, lay.dp_shard, lay.cp)
    out = f" ({group})" if group else ""
    if lay.zero_stage == 3 and not lay.reshard_after_forward:
        out += f", {KEPT_WEIGHTS}"
    return out


def _choice_lines(e: Estimate) -> list[tuple[str, str]]:
    """How the layout was decided, and the runners-up when asked for."""
    c = e.layout_choice
    if c is None:
        return [("", "every degree given (no search)")]
    given = ", ".join(f"{_FLAG[k]} {v}" for k, v in c.given.items()) or "none"
    chosen = ", ".join(_FLAG[k] for k in c.chosen)
    lines = [("", f"chosen by search: {chosen}; yours: {given} ({c.question}, ranked by "
                  f"{c.objective}: {c.fitting:,} fitting of {c.searched:,} layouts searched)")]
    for i, row in enumerate(c.alternatives, 2):
        lines.append(("", f"#{i}: tp {row['tp']} pp {row['pp']} cp {row['cp']} ep {row['ep']} "
                          f"dp {row['dp']}, ZeRO-{row['zero_stage']}, micro-batch "
                          f"{row['micro_batch_size']}, recompute {row['recompute']}, v "
                          f"{row['virtual_stages']}{_row_extras(row)}: {row['days']:,.1f} days, "
                          f"{row['memory_gib']:g} GiB"))
    return lines


def _row_extras(row: dict) -> str:
    """A runner-up's shard group (HSDP, or ZeRO-1/2's optimizer groups) and kept weights,
    which tell it apart from the best."""
    return "".join(f", {x}" for x in layout_extras(row))


def _step_line(e: Estimate) -> str:
    st = e.step
    parts = [("compute", st.compute_s), ("TP", st.tp_comm_s), ("CP", st.cp_comm_s),
             ("EP", st.ep_comm_s), ("PP p2p", st.pp_comm_s), ("bubble", st.bubble_s),
             ("DP", st.dp_comm_s), ("optimizer", st.optimizer_s)]
    shown = ", ".join(f"{k} {v:.3g} s" for k, v in parts if v > 0.0005 * st.step_time_s)
    used = {"flat efficiency": "; time uses your flat efficiency, the model predicts HFU "
                               f"{st.predicted_hfu:.1%}",
            "calibrated performance model": "; calibrated (see the calibration assumptions)",
            }.get(st.method, "")
    return (f"{st.step_time_s:.3g} s = {shown} (GEMM efficiency {st.gemm_efficiency:.0%}; "
            f"exposed communication only){used}")


def _range_rows(e: Estimate) -> list[dict]:
    r = e.range
    cases = {"low": r.low, "expected": r.expected, "high": r.high}

    def row(label, fn):
        return {"": label, **{k: fn(v) for k, v in cases.items()}}

    rows = [*_quantity_rows(e),
        row("efficiency x goodput", lambda o: f"{o.efficiency:.2f} x {o.goodput:.2f}"),
        row("wall clock", lambda o: f"{o.wall_clock_days:,.1f} days"),
        row("device-hours", lambda o: fmt_count(o.device_hours)),
        row(f"cost ({e.cost.tier}, ${e.cost.usd_per_device_hour:g}/h)",
            lambda o: _money(o.cost_usd)),
        row(f"energy ({e.energy.scope})", lambda o: _energy(o.energy_kwh)),
        row(f"carbon CO2e ({e.carbon.scope})", lambda o: _carbon(o.kg_co2e)),
    ]
    return rows


def _quantity_rows(e: Estimate) -> list[dict]:
    q = e.ranges
    if q is None:
        return []
    mfu_best, mfu_exp, mfu_worst = q.mfu
    return [
        {"": "MFU", "low": f"{mfu_best:.1%}", "expected": f"{mfu_exp:.1%}",
         "high": f"{mfu_worst:.1%}"},
        {"": "step time", **{k: f"{v:.3g} s" for k, v in
                             zip(("low", "expected", "high"), q.step_time_s)}},
        {"": "memory per device (+-5%)", **{k: _gib(v) for k, v in
                                           zip(("low", "expected", "high"), q.memory_bytes)}},
    ]


def _assumption_rows(e: Estimate) -> list[dict]:
    return [{"assumption": a.name, "value": a.value, "unit": a.unit,
             "from": "default" if a.defaulted else "you", "source": a.source}
            for a in e.assumptions]


def _text(e: Estimate) -> str:
    width = max(len(k) for k, _ in _summary_lines(e))
    out = [f"{k.ljust(width)}  {v}" for k, v in _summary_lines(e)]
    out += ["", render_rows(_range_rows(e), ["", "low", "expected", "high"], "table").rstrip()]
    if e.carbon.embodied_kg_co2e is not None:
        out.append(f"embodied carbon (amortised, not included above): "
                   f"{_carbon(e.carbon.embodied_kg_co2e)}")
    out += [f"warning: {w}" for w in e.warnings]
    out += ["", "Assumptions (low = best case, high = worst case of the ranges):"]
    previous = None
    for a in e.assumptions:
        tag = "default" if a.defaulted else "yours"
        val = f"{a.value:g}" if isinstance(a.value, float) else str(a.value)
        source = "(same source)" if a.source == previous else a.source
        out.append(f"  {a.name} = {val} {a.unit}".rstrip() + f"  [{tag}] {source}")
        previous = a.source
    return "\n".join(out) + "\n"


def _markdown(e: Estimate) -> str:
    out = [f"## {e.model.name} on {e.layout.devices} x {e.hardware.name}", ""]
    out += [f"- **{k}**: {v}" if k else f"  - {v}" for k, v in _summary_lines(e)]
    out += ["", render_rows(_range_rows(e), ["", "low", "expected", "high"], "markdown")]
    out += ["### Assumptions", "",
            render_rows(_assumption_rows(e), ["assumption", "value", "unit", "from", "source"],
                        "markdown")]
    return "\n".join(out)


def render_estimate(e: Estimate, fmt: str) -> str:
    """The estimate in one of: table, json, markdown, csv."""
    data = e.to_dict()
    if fmt == "json":
        return dumps_json(data) + "\n"
    if fmt == "csv":
        flat = flatten({k: v for k, v in data.items() if k != "assumptions"})
        flat.update(flatten({"assumption": e.to_dict()["assumptions"]}))
        return render_rows([flat], list(flat), "csv")
    if fmt == "markdown":
        return _markdown(e)
    return _text(e)
