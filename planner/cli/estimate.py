"""`planner estimate`: one plan's parameters, FLOPs, memory, time, cost, energy and carbon."""

from __future__ import annotations

import click

from planner.cli.common import (
    assumption_options, layout_options, model_options, split_cli_options, training_options,
)
from planner.cli.finetune_options import finetune_options
from planner.cli.options import format_option, profiles_option


@click.command("estimate")
@model_options
@click.option("--hardware", "-H", help="Hardware profile name (see `planner hardware list`).")
@profiles_option
@click.option("--devices", "-n", type=click.IntRange(min=1), help="Number of devices.")
@training_options
@finetune_options
@layout_options
@assumption_options
@click.option("--alternatives", type=click.IntRange(min=0), default=0,
              help="Also list the next N layouts the search ranked (when it chose one).")
@click.option("--no-fit-check", is_flag=True, help="Print the estimate even if it does not fit.")
@format_option
def estimate_cmd(model, hardware, profiles_dirs, devices, tokens, region, alternatives,
                 no_fit_check, fmt, **opts) -> None:
    """Estimate parameters, FLOPs, memory, time, cost, energy and carbon for one plan.

    Layout degrees you do not give (--tp, --pp, --cp, --ep, --zero, --micro-batch,
    --recompute, --virtual-stages; with ZeRO, --dp-shard and --reshard-after-forward) are
    chosen by the same search `planner plan --devices N` runs; the output says which. With no options it runs the built-in plan (the
    `quickstart` scenario's: llama3-8b on 64 x h100-sxm, 1T tokens). Every default it
    fills in is listed under Assumptions.
    """
    from planner.planning.answer import estimate_plan
    from planner.report import render_estimate

    shape, options = split_cli_options(opts)
    est = estimate_plan(model, hardware, devices, tokens, region, profiles_dirs, shape,
                        top=alternatives, require_fit=not no_fit_check, **options)
    click.echo(render_estimate(est, fmt), nl=False)
