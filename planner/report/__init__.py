"""Rendering results as table (people), json (scripts), markdown (docs) or csv (spreadsheets)."""

from planner.report.estimate import render_estimate
from planner.report.tabular import flatten, render_rows

FORMATS = ("table", "json", "markdown", "csv")

__all__ = ["FORMATS", "flatten", "render_estimate", "render_rows"]
