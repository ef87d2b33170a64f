"""Figures for scenario reports: memory per device and cost / energy / carbon per option."""

from __future__ import annotations

import base64
import io

from planner.report.plot import compare_figure, plain, pyplot

MEMORY_PARTS = [("weights_bytes", "weights"), ("gradients_bytes", "gradients"),
                ("optimizer_bytes", "optimizer"), ("activations_bytes", "activations"),
                ("logits_bytes", "logits/loss"), ("fsdp_buffer_bytes", "FSDP buffers"),
                ("runtime_overhead_bytes", "runtime"), ("fragmentation_bytes", "fragmentation")]


def png_data_uri(fig) -> str:
    """The figure as a base64 PNG data URI (embedded: the report opens offline)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def memory_figure(plans: list):
    """Stacked bars of memory per device, by component, against each device's capacity."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.6 * len(plans)), dpi=110)
    names = [plain(f"{e.hardware.name} ({e.layout.devices})") for e in plans]
    left = [0.0] * len(plans)
    for i, (key, label) in enumerate(MEMORY_PARTS):
        vals = [getattr(e.memory_per_device, key) / 2**30 for e in plans]
        ax.barh(names, vals, left=left, label=label, color=f"C{i}")
        left = [a + b for a, b in zip(left, vals)]
    for y, e in enumerate(plans):
        cap = e.memory_per_device.capacity_bytes / 2**30
        ax.plot([cap, cap], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.set_xlabel("GiB per device (black line: device capacity)")
    ax.set_title("Memory per device on the most loaded pipeline stage", fontsize=10)
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    return fig


def breakdown_figure(plans: list):
    """Cost, energy (IT and PUE overhead) and carbon (operational and embodied) per option."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=110)
    names = [plain(e.hardware.name) for e in plans]
    x = range(len(plans))
    r = [e.range for e in plans]
    exp = [p.expected.cost_usd / 1e6 for p in r]
    err = [[a - p.low.cost_usd / 1e6 for a, p in zip(exp, r)],
           [p.high.cost_usd / 1e6 - a for a, p in zip(exp, r)]]
    axes[0].bar(x, exp, yerr=err, capsize=4, color="C0")
    axes[0].set_title("cost, million USD (bars: range)", fontsize=9)
    it = [e.energy.it_kwh / 1e3 for e in plans]
    pue = [(e.energy.kwh - e.energy.it_kwh) / 1e3 for e in plans]
    axes[1].bar(x, it, label="IT (devices + hosts)", color="C2")
    axes[1].bar(x, pue, bottom=it, label="facility overhead (PUE)", color="C8")
    axes[1].set_title("energy, MWh", fontsize=9)
    axes[1].legend(fontsize=7)
    op = [e.carbon.kg_co2e / 1e3 for e in plans]
    emb = [(e.carbon.embodied_kg_co2e or 0) / 1e3 for e in plans]
    axes[2].bar(x, op, label="operational (grid)", color="C3")
    axes[2].bar(x, emb, bottom=op, label="embodied (amortised)", color="C7")
    axes[2].set_title("carbon, t CO2e", fontsize=9)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.margins(y=0.12)
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def scenario_figures(result) -> dict[str, str]:
    """All report figures as data URIs."""
    return {
        "compare": png_data_uri(compare_figure(
            result.plans, result.scenario.title, result.scenario.constraints.deadline_days,
            result.scenario.constraints.budget_usd)),
        "memory": png_data_uri(memory_figure(result.plans)),
        "breakdown": png_data_uri(breakdown_figure(result.plans)),
    }
