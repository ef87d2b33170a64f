"""`planner backtest`: the planner's predictions against published training runs."""

from __future__ import annotations

from pathlib import Path

import click

from planner.cli.options import format_option


@click.command("backtest")
@click.option("--run", "run_ids", multiple=True, metavar="ID",
              help="Only this run (repeatable), e.g. --run llama3.1-405b.")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False),
              help="A runs YAML in the shipped format (default: planner/data/backtest/runs.yaml).")
@format_option
def backtest_cmd(run_ids: tuple[str, ...], dataset: str | None, fmt: str) -> None:
    """Predict published training runs and compare with what they reported.

    Each run is predicted from its model, tokens, hardware and device count (and its
    sequence length, batch and precision where published) with the default performance
    model: the best layout on that many devices. Energy and carbon use the run's own PUE
    and grid factor, cost its own price; a carbon arithmetic check multiplies the reported
    hours by the power, PUE and grid factor the source used. Prints predicted vs reported,
    the error, and the median and worst absolute error.
    """
    from planner.checks.backtest import run_backtest
    from planner.report.backtest import render_backtest

    result = run_backtest(Path(dataset) if dataset else None, run_ids)
    click.echo(render_backtest(result, fmt), nl=False)
