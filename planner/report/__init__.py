"""Rendering results as table (people), json (scripts), markdown (docs) or csv (spreadsheets)."""

from planner.report.tabular import flatten, render_rows

FORMATS = ("table", "json", "markdown", "csv")

__all__ = ["FORMATS", "flatten", "render_estimate", "render_rows"]


def __getattr__(name: str):
    # render_estimate loads when asked for: the estimate renderer pulls in the specs
    # (pydantic, ~0.1 s), which `planner measure` and the other commands do not need.
    if name == "render_estimate":
        from planner.report.estimate import render_estimate
        return render_estimate
    raise AttributeError(f"module 'planner.report' has no attribute {name!r}")
