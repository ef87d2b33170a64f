"""`planner regions list|show`: grid carbon intensity and PUE by region."""

from __future__ import annotations

import dataclasses

import click

from planner.catalog.regions import grid_factor, known_regions
from planner.cli.options import format_option
from planner.report import render_rows


@click.group()
def regions() -> None:
    """Grid carbon intensity (g CO2e/kWh) and PUE for countries, US states, cloud regions."""


@regions.command("list")
@click.option("--provider", type=click.Choice(["aws", "gcp", "azure", "country", "us-state"]),
              help="Only one kind of region.")
@format_option
def list_regions(provider: str | None, fmt: str) -> None:
    """List every region the planner knows with its intensity and PUE."""
    rows = []
    for name in known_regions():
        kind = name.split(":")[0] if ":" in name else ("us-state" if name.startswith("US-")
                                                       else "country")
        if provider and kind != provider:
            continue
        rows.append(dataclasses.asdict(grid_factor(name)))
    click.echo(render_rows(rows, ["region", "location", "g_co2e_per_kwh", "pue"], fmt), nl=False)


@regions.command("show")
@click.argument("region")
@format_option
def show_region(region: str, fmt: str) -> None:
    """Show one region's grid intensity and PUE with their sources."""
    row = dataclasses.asdict(grid_factor(region))
    cols = ["region", "location", "g_co2e_per_kwh", "intensity_source", "pue", "pue_source"]
    click.echo(render_rows([row], cols, fmt, json_rows=[row]), nl=False)
