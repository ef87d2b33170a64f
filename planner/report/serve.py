"""Rendering `planner serve` answers: table, json, markdown, csv; one hardware in full,
several side by side (compare rows); a Pareto plot of $ per million tokens against TPOT."""

from __future__ import annotations

from planner.report.fmt import gib
from planner.report.tabular import dumps_json, flatten, render_rows
from planner.results_serving import ServeAnswer, ServeOption

COMPARE_COLUMNS = ["hardware", "layout", "replicas", "devices", "batch", "limited_by",
                   "ttft_p50_ms", "tpot_ms", "out_tok_s_per_device", "usd_per_m_input",
                   "usd_per_m_output", "price_tier", "wh_per_m_tokens", "g_co2e_per_m_tokens"]


def _ms(s: float) -> str:
    return f"{s * 1e3:,.1f}"


def _range_ms(sp) -> str:
    return f"{_ms(sp.expected)} ({_ms(sp.low)}-{_ms(sp.high)})"


def _usd(x: float) -> str:
    return f"${x:,.3f}" if x < 10 else f"${x:,.2f}"


def compare_rows(ans: ServeAnswer, fmt: str) -> list[dict]:
    """One row per hardware (numbers raw for csv/json, formatted for people)."""
    rows = []
    for o in ans.options:
        c = o.costs[0]
        raw = fmt in ("csv", "json")
        rows.append({
            "hardware": o.hardware, "layout": f"tp{o.tp} pp{o.pp} ep{o.ep}",
            "replicas": o.replicas, "devices": o.devices, "batch": o.batch,
            "limited_by": o.limited_by,
            "ttft_p50_ms": o.ttft_s.expected * 1e3 if raw else _range_ms(o.ttft_s),
            "tpot_ms": o.tpot_s.expected * 1e3 if raw else _range_ms(o.tpot_s),
            "out_tok_s_per_device": o.output_tokens_per_s_per_device if raw
            else f"{o.output_tokens_per_s_per_device:,.0f}",
            "usd_per_m_input": c.usd_per_m_input_tokens if raw else _usd(c.usd_per_m_input_tokens),
            "usd_per_m_output": c.usd_per_m_output_tokens if raw
            else _usd(c.usd_per_m_output_tokens),
            "price_tier": c.tier,
            "wh_per_m_tokens": o.energy_wh_per_m_tokens if raw
            else f"{o.energy_wh_per_m_tokens:,.0f}",
            "g_co2e_per_m_tokens": o.g_co2e_per_m_tokens if raw
            else f"{o.g_co2e_per_m_tokens:,.0f}",
        })
    return rows


def _memory_line(o: ServeOption, tokens: int) -> str:
    m = o.memory
    ctx = "no limit (every layer windowed)" if m.max_context_tokens is None else \
        f"{m.max_context_tokens:,.0f} tokens"
    return (f"per device: weights {gib(m.weights_bytes)}, workspace {gib(m.workspace_bytes)}, "
            f"runtime {gib(m.runtime_bytes)}, KV cache {gib(m.kv_free_bytes)} of "
            f"{gib(m.usable_bytes)} usable ({gib(m.capacity_bytes)}); "
            f"{m.kv_bytes_per_token / 1024:,.0f} KiB/token, {m.max_sequences:,} sequences of "
            f"{tokens:,} tokens fit, KV room for one context of {ctx}")


def _step_line(o: ServeOption) -> str:
    s = o.step
    draft = f" + drafts {_ms(s.draft_s)}" if s.draft_s else ""
    gain = f"; {s.tokens_per_step:.2f} tokens per step" if s.tokens_per_step != 1 else ""
    return (f"{_ms(s.iteration_s)} ms = max(weights {_ms(s.weights_s)} + KV {_ms(s.kv_s)}, "
            f"compute {_ms(s.decode_compute_s)}) + comm {_ms(s.comm_s)} + overhead "
            f"{_ms(s.overhead_s)}{draft} + prefill chunks {_ms(s.prefill_s)} ms ({s.bound}-"
            f"bound decode{gain})")


def _option_lines(o: ServeOption, ans: ServeAnswer) -> list[tuple[str, str]]:
    return [
        ("Replica", f"{o.hardware}, {o.precision} weights, {o.kv_precision} KV: tp {o.tp} x "
                    f"pp {o.pp} x ep {o.ep} = {o.devices_per_replica} devices; batch {o.batch} "
                    f"sequences (limited by {o.limited_by})"),
        ("Fleet", f"{o.replicas} replica(s) = {o.devices} devices, load at "
                  f"{o.utilization:.0%} of capacity"),
        ("Memory", _memory_line(o, ans.input_tokens + ans.output_tokens)),
        ("Step", _step_line(o)),
        ("Latency", f"TTFT p50 {_range_ms(o.ttft_s)} ms"
                    + (f" (of it {_ms(o.ttft_queue_s)} ms waiting for a slot)"
                       if o.ttft_queue_s else "")
                    + f", TPOT {_range_ms(o.tpot_s)} ms (expected, best-worst)"),
        ("Rates", f"{o.output_tokens_per_s_per_replica:,.0f} output tokens/s per replica "
                  f"({o.output_tokens_per_s_per_device:,.0f} per device), "
                  f"{o.input_tokens_per_s_per_replica:,.0f} input tokens/s, "
                  f"{o.requests_per_s_per_replica:,.2f} requests/s per replica"),
        ("Energy", f"{o.energy_wh_per_m_tokens:,.1f} Wh and {o.g_co2e_per_m_tokens:,.1f} g CO2e "
                   f"per million tokens (input + output; {o.power_per_device_w:,.0f} W per "
                   "device before PUE)"),
    ]


def _cost_rows(o: ServeOption, raw: bool) -> list[dict]:
    f = (lambda x: x) if raw else _usd
    return [{"tier": c.tier, "usd_per_device_hour": c.usd_per_device_hour,
             "per_m_input": f(c.usd_per_m_input_tokens),
             "per_m_output": f(c.usd_per_m_output_tokens), "per_m_all": f(c.usd_per_m_tokens)}
            for c in o.costs]


def _assumption_lines(ans: ServeAnswer) -> list[str]:
    out, previous = [], None
    for a in ans.assumptions:
        tag = "default" if a.defaulted else "yours"
        val = f"{a.value:g}" if isinstance(a.value, float) else str(a.value)
        source = "(same source)" if a.source == previous else a.source
        out.append(f"  {a.name} = {val} {a.unit}".rstrip() + f"  [{tag}] {source}")
        previous = a.source
    return out


def _head(ans: ServeAnswer) -> list[tuple[str, str]]:
    m = ans.model
    t = ans.targets
    targets = ", ".join(x for x in (
        f"TTFT p50 <= {t['ttft_p50_s'] * 1e3:g} ms" if t["ttft_p50_s"] is not None else "",
        f"TPOT <= {t['tpot_s'] * 1e3:g} ms" if t["tpot_s"] is not None else "") if x)
    return [("Model", f"{m.name}: {m.params_total / 1e9:.1f}B params ({m.params_active / 1e9:.1f}B "
                      f"active), {m.attention}, {m.num_layers} layers; {ans.input_tokens:,} input "
                      f"+ {ans.output_tokens:,} output tokens per request"),
            ("Question", ans.question + (f" ({targets})" if targets else ""))]


def _text(ans: ServeAnswer) -> str:
    lines = _head(ans)
    if len(ans.options) == 1:
        lines += _option_lines(ans.options[0], ans)
    width = max(len(k) for k, _ in lines)
    out = [f"{k.ljust(width)}  {v}" for k, v in lines]
    if len(ans.options) == 1:
        out += ["", "Cost per million tokens:",
                render_rows(_cost_rows(ans.options[0], False),
                            ["tier", "usd_per_device_hour", "per_m_input", "per_m_output",
                             "per_m_all"], "table").rstrip()]
    else:
        out += ["", render_rows(compare_rows(ans, "table"), COMPARE_COLUMNS, "table").rstrip()]
    out += [f"warning: {w}" for w in ans.warnings]
    out += ["", "Assumptions (ranges: best case - worst case):", *_assumption_lines(ans)]
    return "\n".join(out) + "\n"


def _markdown(ans: ServeAnswer) -> str:
    out = [f"## {ans.model.name} served on {', '.join(o.hardware for o in ans.options)}", ""]
    out += [f"- **{k}**: {v}" for k, v in _head(ans)]
    for o in ans.options:
        out += ["", f"### {o.hardware}", ""]
        out += [f"- **{k}**: {v}" for k, v in _option_lines(o, ans)]
        out += ["", render_rows(_cost_rows(o, False), ["tier", "usd_per_device_hour",
                                                       "per_m_input", "per_m_output",
                                                       "per_m_all"], "markdown")]
    if len(ans.options) > 1:
        out += ["### Side by side", "", render_rows(compare_rows(ans, "markdown"),
                                                    COMPARE_COLUMNS, "markdown")]
    out += [f"> warning: {w}" for w in ans.warnings]
    out += ["### Assumptions", "", render_rows(
        [{"assumption": a.name, "value": a.value, "unit": a.unit,
          "from": "default" if a.defaulted else "you", "source": a.source}
         for a in ans.assumptions], ["assumption", "value", "unit", "from", "source"],
        "markdown")]
    return "\n".join(out)


def render_serve(ans: ServeAnswer, fmt: str) -> str:
    """A serving answer in one of: table, json, markdown, csv (one row per hardware)."""
    if fmt == "json":
        return dumps_json(ans.to_dict()) + "\n"
    if fmt == "csv":
        rows = []
        for o in ans.options:
            d = o.to_dict()
            d["costs"] = {c["tier"]: {k: v for k, v in c.items() if k != "tier"}
                          for c in d["costs"]}
            rows.append(flatten({"model": ans.model.name, "input_tokens": ans.input_tokens,
                                 "output_tokens": ans.output_tokens, **d}))
        cols = list(dict.fromkeys(k for r in rows for k in r))
        return render_rows(rows, cols, "csv")
    if fmt == "markdown":
        return _markdown(ans)
    return _text(ans)


def plot_serve(ans: ServeAnswer, path: str) -> None:
    """Write a PNG or SVG: $ per million output tokens against TPOT, TPOT ranges as error
    bars, the Pareto front (no option both cheaper and faster) marked."""
    from planner.report.plot import pareto_front, plain, pyplot, save

    plt = pyplot()
    pts = [(o.tpot_s.expected * 1e3, o.costs[0].usd_per_m_output_tokens) for o in ans.options]
    front = set(pareto_front(pts))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, o in enumerate(ans.options):
        x, y = pts[i]
        xerr = [[x - o.tpot_s.low * 1e3], [o.tpot_s.high * 1e3 - x]]
        ax.errorbar(x, y, xerr=xerr, fmt="osD^vP*Xh"[i % 9], markersize=10 if i in front else 7,
                    capsize=4, color=f"C{i % 10}",
                    label=plain(f"{o.hardware}: {o.devices} devices, tp{o.tp} pp{o.pp}, "
                                f"batch {o.batch}" + ("  (Pareto)" if i in front else "")))
    if len(front) > 1:
        line = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in line], [p[1] for p in line], "--", color="black", linewidth=1)
    ax.set_xlabel("TPOT, ms per output token (bars: best to worst case)")
    ax.set_ylabel(f"USD per million output tokens ({ans.options[0].costs[0].tier})")
    ax.set_title(plain(f"{ans.model.name}: {ans.question}"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def render_serving_rows(ans: ServeAnswer, fmt: str) -> str:
    """A scenario's serving block: the question and one row per hardware (table/markdown)."""
    head = f"{'## ' if fmt == 'markdown' else ''}Serving: {ans.question}\n"
    if fmt == "table":
        head = "\n" + head
    return head + "\n" + render_rows(compare_rows(ans, fmt), COMPARE_COLUMNS, fmt)
