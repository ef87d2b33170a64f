"""The `planner` command line: a thin layer that parses, loads, calls and renders."""

from __future__ import annotations

import sys

import click

from planner import __version__
from planner.errors import PlannerError


class PlannerGroup(click.Group):
    """A group whose errors are one line on stderr: `error: ...`, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "planner"
            click.echo(f"error: {e.format_message()} (see '{where} --help')", err=True)
            code = 2
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            code = e.exit_code
        except PlannerError as e:
            click.echo(f"error: {e}", err=True)
            code = 1
        except (click.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=PlannerGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="planner")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Compute, cost and carbon planning for deep-learning training.

    Every number comes with its formula inputs, assumptions and sources.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _register() -> None:
    from planner.cli.backtest import backtest_cmd
    from planner.cli.estimate import estimate_cmd
    from planner.cli.hardware import hardware
    from planner.cli.measure import measure_cmd, runs
    from planner.cli.models import models
    from planner.cli.plan import compare_cmd, plan_cmd
    from planner.cli.regions import regions
    from planner.cli.run import budget_cmd, run_cmd
    from planner.cli.validate import calibration_group, validate_cmd

    for cmd in (models, hardware, regions, estimate_cmd, plan_cmd, compare_cmd, run_cmd,
                budget_cmd, backtest_cmd, validate_cmd, calibration_group, measure_cmd, runs):
        cli.add_command(cmd)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
