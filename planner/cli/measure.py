"""`planner measure -- COMMAND` and `planner runs list|show|export|summary`.

The measurement code (and codecarbon, sqlite3) is imported inside the commands, so other
commands start no slower for these being registered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from planner.cli.common import layout_options, run_training_options
from planner.cli.options import COUNT, format_option, profiles_option
from planner.fileio import write_text_atomic
from planner.units import MAX_GRID_G_CO2E_PER_KWH

LEDGER_HELP = "Ledger file (default: $PLANNER_LEDGER, else ~/.local/share/planner/runs.sqlite)."
ledger_option = click.option("--ledger", type=click.Path(dir_okay=False), help=LEDGER_HELP)


class ExitError(click.ClickException):
    """A one-line error with its own exit code (127: command not found)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _output_path(output: str | None, ledger: Path | None) -> Path | None:
    """--output, checked before anything runs: a file planner can create and rename in its
    directory, not the ledger, not any SQLite file, not a directory or device."""
    from planner.errors import PlannerError
    from planner.fileio import check_writable, is_sqlite_file

    if output is None:
        return None
    path = Path(output).expanduser()
    if ledger is not None and (os.path.realpath(path) == os.path.realpath(ledger) or (
            path.exists() and ledger.exists() and os.path.samefile(path, ledger))):
        raise click.BadParameter(f"'{path}' is the run ledger; write the report to another "
                                 "file", param_hint="--output")
    if is_sqlite_file(path):
        raise click.BadParameter(f"'{path}' is an SQLite database (a run ledger?); planner "
                                 "will not replace it with a report", param_hint="--output")
    try:
        check_writable(path, "the report")
    except PlannerError as e:
        raise click.BadParameter(str(e), param_hint="--output") from None
    return path


@click.command("measure", context_settings={"allow_interspersed_args": False})
@click.option("--label", "-l", help="Name to group runs by (`planner runs summary`).")
@click.option("--region", "-r", help="FR, US-VA, aws:us-east-1, gcp:europe-west4, ...")
@click.option("--grid", "grid_g", type=click.FloatRange(min=0, max=MAX_GRID_G_CO2E_PER_KWH),
              help="Grid intensity, g CO2e/kWh (overrides --region's).")
@click.option("--grid-hourly", type=click.Path(dir_okay=False),
              help="Hourly grid intensity CSV (time, g CO2e/kWh) for the run's hours.")
@click.option("--grid-live", type=click.Choice(["electricitymaps"]),
              help="Ask ElectricityMaps for the run's hours (token: $ELECTRICITYMAPS_TOKEN; "
                   "the only network call planner measure makes, and only with this).")
@click.option("--grid-zone", help="ElectricityMaps zone (default: the --region country).")
@click.option("--pue", type=click.FloatRange(min=1, max=3),
              help="Facility PUE (default: the cloud provider's, else 1.0).")
@click.option("--hardware", help="Accelerator profile for the price (and the estimate).")
@profiles_option
@click.option("--price-tier", help="Price tier in the profile: on_demand (default), spot, ...")
@click.option("--price-per-hour", type=click.FloatRange(min=0, min_open=True),
              help="Your own USD per device-hour.")
@click.option("--devices", type=click.IntRange(min=0),
              help="Devices billed (default: the GPUs visible to the command).")
@click.option("--model", "-m", help="Model for the `planner estimate` beside the extrapolation, "
                                    "and recorded with the run's training flags below.")
@click.option("--tokens", "-t", type=COUNT, help="Tokens the measured run processes: 50M.")
@click.option("--steps", type=COUNT, help="Or optimizer steps the measured run takes.")
@click.option("--extrapolate-to", type=COUNT, help="Tokens (or steps) of the full run: 2T.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Sampling interval of the meters, seconds.")
@click.option("--meter", type=click.Choice(["auto", "host", "codecarbon", "cpu-time"]),
              default="auto", show_default=True,
              help="auto: host (codecarbon's methods on planner's counters, hardware detected "
                   "once per machine) when codecarbon is installed, else a CPU-time estimate; "
                   "codecarbon: its own tracker (1-2 s to start).")
@click.option("--redetect", is_flag=True,
              help="Detect this machine's hardware again (the host meter caches it).")
@click.option("--job", "job", help="Job ID the run belongs to (default: the launcher's: "
                                   "SLURM_JOB_ID, TORCHELASTIC_RUN_ID, PMIX_NAMESPACE).")
@ledger_option
@click.option("--no-ledger", is_flag=True, help="Do not record the run.")
@format_option
@click.option("--output", "-o", help="Write the report to FILE (atomically) instead of stderr; "
                                    "never the ledger or another SQLite file.")
@run_training_options
@layout_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def measure_cmd(command: tuple[str, ...], ledger: str | None, no_ledger: bool, fmt: str,
                output: str | None, **opts) -> int:
    """Run COMMAND and measure its energy, carbon and cost: planner measure -- CMD ARGS...

    The command's stdin, stdout and stderr pass through untouched; planner's report goes to
    stderr (or --output FILE) and the run is appended to the ledger. planner exits with the
    command's exit code (128+N if signal N killed it), also when the record cannot be
    written: then it goes to planner-run-ID.json in the current (else the temporary)
    directory, named on stderr. Every input, --output and the ledger are checked before the
    command starts. SIGINT, SIGTERM and SIGHUP are forwarded to the command and the run is
    still recorded, marked incomplete; before the command starts they end planner with
    128+N and nothing run. If planner is killed, the kernel kills the command too (Linux).
    """
    from planner.measurement.runner import SetupInterrupted, SignalGate, signal_name

    with SignalGate() as gate:  # from the first moment: a signal is never a traceback
        try:
            return _measure(gate, command, ledger, no_ledger, fmt, output, opts)
        except SetupInterrupted as e:
            raise ExitError(f"interrupted by {signal_name(e.signum)} before the command "
                            "started: nothing was run or recorded", e.exit_code) from None


def _measure(gate, command: tuple[str, ...], ledger: str | None, no_ledger: bool, fmt: str,
             output: str | None, opts: dict) -> int:
    from planner.measurement.context import MeasureOptions
    from planner.measurement.ledger import ledger_path
    from planner.measurement.runner import CommandError, resolve_command, run_child
    from planner.measurement.session import Session

    if not command:
        raise click.UsageError("no command to measure: put it after --, "
                               "e.g. planner measure -- python train.py")
    if ledger and no_ledger:
        raise click.UsageError("give --ledger or --no-ledger, not both")
    try:
        resolve_command(command)
    except CommandError as e:
        raise ExitError(str(e), e.exit_code) from None
    path = None if no_ledger else ledger_path(ledger)
    out_path = _output_path(output, path)
    options = MeasureOptions(
        label=opts["label"], region=opts["region"], grid_g_co2e_per_kwh=opts["grid_g"],
        pue=opts["pue"], hardware=opts["hardware"], profiles_dirs=opts["profiles_dirs"],
        price_tier=opts["price_tier"], price_per_hour=opts["price_per_hour"],
        devices=opts["devices"], model=opts["model"], tokens=opts["tokens"],
        steps=opts["steps"], extrapolate_to=opts["extrapolate_to"],
        interval_s=opts["interval"], meter=opts["meter"], redetect=opts["redetect"],
        job=opts["job"], grid_hourly=opts["grid_hourly"], grid_live=opts["grid_live"],
        grid_zone=opts["grid_zone"], training=_training(opts))
    session = Session(options, path)  # every input is checked here, before the command runs
    session.root_pid = lambda: gate.proc.pid if gate.proc is not None else None
    try:
        outcome = run_child(command, on_start=session.start, gate=gate)
    except CommandError as e:
        raise ExitError(str(e), e.exit_code) from None
    _record(session, gate, command, outcome, fmt, out_path, path)
    return outcome.exit_code


def _training(opts: dict) -> dict | None:
    """The run's training configuration as given (click names: model, steps, tokens, seq_len,
    tp, zero, ...), recorded for `planner calibration add`; None when no training flag was."""
    from planner.cli.common import LAYOUT_KEYS, RUN_TRAINING_KEYS

    given = {k: opts[k] for k in (*RUN_TRAINING_KEYS, *LAYOUT_KEYS) if opts[k] is not None}
    if not given:
        return None
    out = {k: opts[k] for k in ("model", "steps", "tokens") if opts[k] is not None} | given
    if out.get("model") and os.path.exists(out["model"]):  # a file or HF folder: found later
        out["model"] = os.path.abspath(out["model"])
    _check_training(opts, out)
    return out


def _check_training(opts: dict, training: dict) -> None:
    """The recorded training flags, checked now as an estimate would check them (before the
    command runs): the options always, the layout too where it is complete and the devices
    are known (on one node: in a multi-node job --devices are this node's). Needs --model and
    --hardware; without them the check waits for `calibration add`, but for the gradient
    dtype, which needs neither."""
    if training.get("grad_dtype") or training.get("attention_kernel"):
        from planner.planning.resolve import check_attention_kernel, check_grad_dtype
        from planner.vocab import api_training_options

        check_grad_dtype(api_training_options(training), training)
        hw = None
        if training.get("attention_kernel") and opts["hardware"]:
            from planner.catalog.catalog import load_hardware
            hw = load_hardware(opts["hardware"], opts["profiles_dirs"])
        check_attention_kernel(training, hw)
    if not (training.get("model") and opts["hardware"]):
        return
    from planner.measurement.job import detect_job

    job = detect_job(os.environ, opts["job"])
    one_node = job is None or (job.num_nodes or 1) == 1  # else --devices is this node's only
    from planner.planning.answer import layout_specs
    from planner.planning.resolve import resolve
    from planner.vocab import api_training_options

    options = api_training_options({k: v for k, v in training.items()
                                    if k not in ("model", "steps", "tokens")})
    req = resolve(training["model"], opts["hardware"], None, None, opts["profiles_dirs"], {},
                  use_calibration=False, devices=opts["devices"] or None, **options)
    if opts["devices"] and one_node and req.layout_complete(req.fixed_degrees()):
        layout_specs(req, opts["devices"])


def _record(session, gate, command, outcome, fmt: str, out_path: Path | None,
            path: Path | None) -> None:
    """Build, store and report the finished run; never raises: a record that cannot be
    written where asked goes to a fallback file, named in one line on stderr."""
    from planner.errors import PlannerError
    from planner.report.measurement import render_record
    from planner.measurement.session import command_line, save_fallback

    problems: list[str] = []
    try:
        record = session.build(command, command_line(command), outcome.exit_code,
                               outcome.signal, outcome.interrupted_by)
        data = record.to_dict()
    except Exception as e:  # noqa: BLE001 - a bug here must not lose the run's exit code
        data = {"id": None, "command": list(command), "command_line": command_line(command),
                "exit_code": outcome.exit_code, "signal": outcome.signal,
                "interrupted_by": outcome.interrupted_by, "complete": False,
                "error": f"planner could not build the record: {type(e).__name__}: {e}"}
        record = None
        problems.append(data["error"])
    if record is not None and path is not None:
        try:
            session.ledger.add(data, should_stop=lambda: bool(gate.held))
        except PlannerError as e:
            problems.append(str(e))
            path = None
    text = None
    if record is not None:
        try:
            text = render_record(data, fmt, str(path) if path else None)
        except Exception as e:  # noqa: BLE001 - as above
            problems.append(f"cannot render the report: {type(e).__name__}: {e}")
    written = False
    if text is not None and out_path is not None:
        try:
            write_text_atomic(out_path, text)
            written = True
        except PlannerError as e:
            problems.append(str(e))
    elif text is not None:
        click.echo(text, err=True, nl=False)
    if written and not problems:
        state = "complete" if record.complete else "incomplete"
        click.echo(f"planner measure: run {record.id} ({state}) written to {out_path}",
                   err=True)
    if getattr(session, "grid_note", None):
        click.echo(f"planner measure: hourly grid figures not used: {session.grid_note}",
                   err=True)
    if problems:  # one line: what failed, where the record is, the command's exit code
        where = save_fallback(data)
        kept = (f"the record is saved in {where}" if where else
                "the record could not be saved anywhere: " + json.dumps(data))
        report = f"; the report is in {out_path}" if written else ""
        click.echo(f"planner measure: run {data.get('id') or '(no id)'}: "
                   f"{'; '.join(problems)}; {kept}{report} (the command exited "
                   f"{outcome.exit_code})", err=True)


@click.group()
def runs() -> None:
    """The run ledger: every run `planner measure` recorded."""


def _ledger(path: str | None):
    from planner.measurement.ledger import Ledger, ledger_path
    return Ledger(ledger_path(path))


@runs.command("list")
@click.option("--label", help="Only runs with this label.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Only the newest N runs.")
@ledger_option
@format_option
def list_runs(label: str | None, limit: int | None, ledger: str | None, fmt: str) -> None:
    """List recorded runs, oldest first: energy, carbon, cost and how each was measured."""
    from planner.report.measurement import render_runs
    led = _ledger(ledger)
    records = led.runs(label=label, limit=limit)
    if not records:
        click.echo(f"no runs recorded in {led.path}", err=True)
    click.echo(render_runs(records, fmt), nl=False)


@runs.command("show")
@click.argument("run_id", required=False)
@click.option("--job", help="Every record of job ID, with the job's totals.")
@ledger_option
@format_option
def show_run(run_id: str | None, job: str | None, ledger: str | None, fmt: str) -> None:
    """Show one run (by id or a unique prefix of it) in full, or a job's records."""
    led = _ledger(ledger)
    if job is not None:
        if run_id is not None:
            raise click.UsageError("give a run ID or --job ID, not both")
        from planner.report.jobs import render_job_records
        records, summary = _job(led, job)
        click.echo(render_job_records(records, summary.to_dict(), fmt), nl=False)
        return
    if run_id is None:
        raise click.UsageError("give a run ID (see `planner runs list`) or --job ID")
    from planner.report.measurement import render_record
    click.echo(render_record(led.get(run_id), fmt, str(led.path)), nl=False)


def _job(led, job: str):
    """The job's records and summary; LedgerError naming the known jobs when it has none."""
    from planner.measurement.jobs import summarize_job
    from planner.measurement.ledger import LedgerError

    records = led.runs(job=job)
    if not records:
        known = sorted({(r.get("job") or {}).get("id") for r in led.runs()} - {None})
        hint = f"; jobs in it: {', '.join(known[:10])}" if known else "; it has no job records"
        raise LedgerError(f"no records of job '{job}' in the ledger {led.path}{hint}")
    return records, summarize_job(job, records)


@runs.command("export")
@click.option("--label", help="Only runs with this label.")
@ledger_option
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "markdown", "table"]),
              default="json", show_default=True, help="json: full records; csv: flattened.")
def export_runs(label: str | None, ledger: str | None, fmt: str) -> None:
    """Export every recorded run in full (json) or flattened (csv) to stdout."""
    from planner.report.measurement import render_export
    led = _ledger(ledger)
    records = led.runs(label=label)
    if not records:
        click.echo(f"no runs recorded in {led.path}", err=True)
    click.echo(render_export(records, fmt), nl=False)


@runs.command("summary")
@click.option("--job", help="One job's totals by node, without double counting.")
@ledger_option
@format_option
def summary_runs(job: str | None, ledger: str | None, fmt: str) -> None:
    """Total runs, time, energy, carbon and cost by label, or one job's by node."""
    if job is not None:
        from planner.report.jobs import render_job_summary
        _records, summary = _job(_ledger(ledger), job)
        click.echo(render_job_summary(summary.to_dict(), fmt), nl=False)
        return
    from planner.report.measurement import render_summary
    click.echo(render_summary(_ledger(ledger).summary(), fmt), nl=False)


@runs.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
@ledger_option
def merge_runs(sources: tuple[str, ...], ledger: str | None) -> None:
    """Copy the runs of other ledgers (e.g. one per node) into this one, each run once.

    Safe while planner measure processes write to either side: each source is read in one
    snapshot and its runs are added in one transaction; runs already there are skipped."""
    from planner.measurement.ledger import Ledger, ledger_path

    dest = Ledger.open_for_writing(ledger_path(ledger))
    for src in sources:
        path = Path(src).expanduser()
        if os.path.exists(path) and os.path.exists(dest.path) and \
                os.path.samefile(path, dest.path):
            raise click.BadParameter(f"'{src}' is the destination ledger", param_hint="SOURCES")
        n = dest.merge_from(path)
        extra = (f", {n['conflicting']} with an id already used by another run (kept as "
                 "they were)" if n["conflicting"] else "")
        click.echo(f"{src}: {n['added']} run(s) added, {n['already']} already in "
                   f"{dest.path}{extra}", err=True)
