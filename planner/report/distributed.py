"""Rendering a distributed validation run (`planner validate --distributed`)."""

from __future__ import annotations

from planner.profiling.distributed import DistributedResult
from planner.report.tabular import dumps_json, render_rows


def render_distributed(r: DistributedResult, fmt: str) -> str:
    """The distributed check as a table (or json, markdown, csv)."""
    quantities, strategy, n, busbw, device = (r.quantities, r.strategy, r.world_size,
                                              r.bus_bandwidth_b_per_s, r.device)
    data = {"device": device, "strategy": strategy, "world_size": n,
            "bus_bandwidth_gb_per_s": busbw / 1e9,
            "quantities": [q.to_dict() for q in quantities]}
    if fmt == "json":
        return dumps_json(data) + "\n"
    rows = [q.to_dict() for q in quantities]
    head = (f"{strategy} on {n} ranks ({device}); measured all-reduce bus bandwidth "
            f"{busbw / 1e9:.2f} GB/s\n")
    return head + render_rows(rows, ["name", "predicted", "measured", "error_pct", "verdict",
                                     "unit", "method"], fmt)
