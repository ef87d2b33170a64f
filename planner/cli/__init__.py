"""The `planner` command line: a thin layer that parses, loads, calls and renders."""

from __future__ import annotations

import gc
import sys

import click

from planner import __version__
from planner.errors import PlannerError


# Command name -> (module, attribute). A command's module loads only when the command
# runs (or for --help), so `planner estimate` imports nothing the other commands need.
COMMANDS = {
    "models": ("planner.cli.models", "models"),
    "hardware": ("planner.cli.hardware", "hardware"),
    "regions": ("planner.cli.regions", "regions"),
    "estimate": ("planner.cli.estimate", "estimate_cmd"),
    "plan": ("planner.cli.plan", "plan_cmd"),
    "compare": ("planner.cli.plan", "compare_cmd"),
    "run": ("planner.cli.run", "run_cmd"),
    "budget": ("planner.cli.run", "budget_cmd"),
    "backtest": ("planner.cli.backtest", "backtest_cmd"),
    "validate": ("planner.cli.validate", "validate_cmd"),
    "calibration": ("planner.cli.calibration", "calibration_group"),
    "measure": ("planner.cli.measure", "measure_cmd"),
    "runs": ("planner.cli.measure", "runs"),
    "serve": ("planner.cli.serve", "serve_cmd"),
}


# Commands that end holding no subprocess, database or meter: for these, main() keeps the
# garbage collector off while the command's modules import (pydantic and the specs allocate
# ~10^5 objects and leave next to no cyclic garbage), and at exit freezes the heap so the
# interpreter's last collections do not walk it. Together ~35 ms of a cold `planner
# estimate` on the 2-core machine (docs/tests-and-benchmarks.md). Output is flushed, files
# closed and the other atexit handlers run as before.
QUICK_COMMANDS = frozenset({"estimate", "plan", "compare", "run", "budget", "serve", "models",
                            "hardware", "regions", "backtest"})
_gc_paused = False


def _resume_gc() -> None:
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.enable()


class PlannerGroup(click.Group):
    """A group whose errors are one line on stderr: `error: ...`, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        import importlib

        from planner.cli.options import harden

        module, attr = COMMANDS[name]
        command = harden(getattr(importlib.import_module(module), attr))
        _resume_gc()  # start-up is over: the command runs with the collector on
        return command

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
            code = 130  # Ctrl-C: quiet, as a shell expects (no traceback, no message)
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


def main() -> None:
    """Console-script entry point (and ``python -m planner``).

    Ctrl-C at any point, even while a command's modules are still importing, exits 130
    without a traceback; so does a closed output pipe (``planner ... | head``), quietly.
    """
    global _gc_paused
    quick = next((a for a in sys.argv[1:] if not a.startswith("-")), None) in QUICK_COMMANDS
    if quick:
        import atexit

        atexit.register(gc.freeze)  # at exit, after the other atexit handlers have run
        if gc.isenabled():
            _gc_paused = True
            gc.disable()
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        import os

        # stdout is gone: point it at devnull so the interpreter's final flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    finally:
        _resume_gc()
