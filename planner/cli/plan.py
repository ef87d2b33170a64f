"""`planner plan` (sizing questions) and `planner compare` (hardware side by side)."""

from __future__ import annotations

import click

from planner.cli.common import (
    assumption_options, layout_options, model_options, split_cli_options, training_options,
)
from planner.cli.finetune_options import finetune_options
from planner.cli.options import COUNT, format_option, profiles_option
from planner.errors import InfeasibleError, SpecError


def _question_options(f):
    for opt in reversed([
        click.option("--devices", "-n", type=click.IntRange(min=1),
                     help="The best layout on exactly N devices."),
        click.option("--min-devices", is_flag=True,
                     help="The fewest devices on which the model trains at all."),
        click.option("--deadline-days", type=click.FloatRange(min=0, min_open=True),
                     help="The fewest devices that finish the tokens within D days."),
        click.option("--budget-usd", type=COUNT, help="The fastest plan within B USD (1M, 2.5e6)."),
        click.option("--max-devices", type=click.IntRange(min=1), default=65536,
                     show_default=True, help="Upper bound on devices for any question."),
        click.option("--objective", type=click.Choice(["time", "cost", "carbon"]),
                     default="time", show_default=True,
                     help="How to rank layouts that answer the question."),
        click.option("--confidence", type=click.Choice(["expected", "high"]),
                     default="expected", show_default=True,
                     help="Meet --deadline-days / --budget-usd in the expected case or in the "
                          "worst (high) case of the range."),
    ]):
        f = opt(f)
    return f


def _question(devices, min_devices, deadline_days, budget_usd, max_devices, objective,
              confidence="expected"):
    from planner.planning.sizing import question

    if min_devices and (devices or deadline_days or budget_usd):
        raise SpecError("ask one question at a time: --min-devices with another question")
    return question(devices, deadline_days, budget_usd, max_devices, objective, confidence)


@click.command("plan")
@model_options
@click.option("--hardware", "-H", help="Hardware profile name.")
@profiles_option
@_question_options
@training_options
@finetune_options
@layout_options
@assumption_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many layouts to list.")
@format_option
def plan_cmd(model, hardware, profiles_dirs, devices, min_devices, deadline_days, budget_usd,
             max_devices, objective, confidence, tokens, region, top, fmt, **opts) -> None:
    """Search every valid layout and answer a sizing question.

    Give one of --devices, --min-devices, --deadline-days or --budget-usd (default:
    --min-devices). Layout flags (--tp, --pp, --zero, --recompute, ...) fix those degrees.
    """
    from planner.planning.resolve import resolve
    from planner.report.plan import render_plan
    from planner.planning.sizing import answer

    q = _question(devices, min_devices, deadline_days, budget_usd, max_devices, objective,
                  confidence)
    shape, options = split_cli_options(opts)
    req = resolve(model, hardware, tokens, region, profiles_dirs, shape, **options)
    click.echo(render_plan(answer(req, q, top), fmt), nl=False)


@click.command("compare")
@model_options
@click.option("--hardware", "-H", "hardware_list", required=True,
              help="Comma-separated profiles: h100-sxm,h200,b200,mi300x,tpu-v5p")
@profiles_option
@_question_options
@training_options
@finetune_options
@layout_options
@assumption_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write cost vs time with ranges and the Pareto front (.png or .svg).")
@format_option
def compare_cmd(model, hardware_list, profiles_dirs, devices, min_devices, deadline_days,
                budget_usd, max_devices, objective, confidence, tokens, region, plot_path, fmt,
                **opts) -> None:
    """The best plan on each hardware for the same job, side by side."""
    from planner.planning.resolve import resolve
    from planner.report.plan import render_compare
    from planner.planning.sizing import answer

    q = _question(devices, min_devices, deadline_days, budget_usd, max_devices, objective,
                  confidence)
    names = [h.strip() for h in hardware_list.split(",") if h.strip()]
    if not names:
        raise SpecError("--hardware needs at least one profile name")
    shape, options = split_cli_options(opts)
    best, failed = [], []
    for name in names:
        try:
            req = resolve(model, name, tokens, region, profiles_dirs, shape, **options)
            best.append(answer(req, q, top=1).best)
        except InfeasibleError as e:  # one option that cannot do it does not stop the rest
            failed.append(f"{name}: {e}")
    if not best:
        raise InfeasibleError("no hardware option can answer it; " + "; ".join(failed))
    for line in failed:
        click.echo(f"warning: no plan on {line}", err=True)
    title = f"{best[0].model.name}: {q.describe()}"
    if plot_path:
        from planner.report.plot import plot_compare

        if not plot_path.endswith((".png", ".svg")):
            raise SpecError(f"--plot '{plot_path}': use a .png or .svg file name")
        plot_compare(best, plot_path, title, deadline_days, budget_usd)
    click.echo(render_compare(best, fmt, title), nl=False)
