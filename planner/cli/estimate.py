"""`planner estimate`: one plan's parameters, FLOPs, memory, time, cost, energy and carbon."""

from __future__ import annotations

import click

from planner.cli.common import (
    assumption_options, layout_options, model_options, split_cli_options, training_options,
)
from planner.cli.options import format_option, profiles_option
from planner.errors import InfeasibleError
from planner.units import GIB


def _fit_advice(est) -> str:
    mem, lay = est.memory_per_device, est.layout
    over = -mem.headroom_bytes / GIB
    tries = []
    if mem.activations_bytes > mem.weights_bytes + mem.optimizer_bytes and lay.recompute != "full":
        tries.append("--recompute full")
    if lay.zero_stage < 3 and lay.dp > 1:
        tries.append(f"--zero {lay.zero_stage + 1}")
    tries += ["a larger --tp or --pp", "more --devices", "`planner plan` to search layouts"]
    if lay.micro_batch_size > 1:
        tries.insert(0, "--micro-batch 1")
    return (f"layout does not fit: needs {mem.total_bytes / GIB:.1f} GiB per device "
            f"({mem.stage} stage) on {est.hardware.name} with {mem.capacity_bytes / GIB:.1f} "
            f"GiB, {over:.1f} GiB over; try {', '.join(tries)} (or --no-fit-check to see it)")


@click.command("estimate")
@model_options
@click.option("--hardware", "-H", help="Hardware profile name (see `planner hardware list`).")
@profiles_option
@click.option("--devices", "-n", type=click.IntRange(min=1), help="Number of devices.")
@training_options
@layout_options
@assumption_options
@click.option("--no-fit-check", is_flag=True, help="Print the estimate even if it does not fit.")
@format_option
def estimate_cmd(model, hardware, profiles_dirs, devices, tokens, region, no_fit_check, fmt,
                 **opts) -> None:
    """Estimate parameters, FLOPs, memory, time, cost, energy and carbon for one plan.

    With no options it runs a built-in plan (llama3-8b on 64 x h100-sxm, 1T tokens).
    Every default it fills in is listed under Assumptions.
    """
    from planner.planning.resolve import estimate_plan
    from planner.report import render_estimate

    shape, options = split_cli_options(opts)
    est = estimate_plan(model, hardware, devices, tokens, region, profiles_dirs, shape,
                        **options)
    if not est.memory_per_device.fits and not no_fit_check:
        raise InfeasibleError(_fit_advice(est))
    click.echo(render_estimate(est, fmt), nl=False)
